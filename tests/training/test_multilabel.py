"""Multi-label sound event detection (tasks/multilabel.py) through the shared training and serving code."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score

import tasks
from common import contract
from serving import inference
from standins.synthetic import clip, make_multilabel_folder
from tasks import multilabel
from training import audiofolder, train

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
TASK = tasks.load("multilabel")


# --- the metrics -----------------------------------------------------------------------------------------


def test_lwlrap_matches_the_value_computed_by_hand_and_differs_from_the_unweighted_one():
    # Given two clips: the first holds labels 0 and 2, the second label 1 (ranked second)
    truth = np.array([[1, 0, 1], [0, 1, 0]])
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.9]])
    # When lwlrap is computed
    value = multilabel.lwlrap(truth, scores)
    # Then it is the mean precision over the three positives: label 0 at rank 1 (1/1), label 2 at rank 3
    # with 2 positives up to it (2/3), label 1 at rank 2 with 1 positive (1/2); each label has 1 positive
    assert value == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # And scikit-learn's per-clip average (0.8333 and 0.5) is another number
    assert label_ranking_average_precision_score(truth, scores) == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert value != pytest.approx(label_ranking_average_precision_score(truth, scores))


def test_a_label_without_positives_is_left_out_of_the_mean_and_named():
    # Given a split where label "c" has no positive clip
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    scores = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.7, 0.6, 0.2]])
    # When the split is scored
    report = TASK.report(tasks.SplitScores(scores, targets, scores, targets), ["a", "b", "c"])
    # Then mAP averages a and b only (both ranked perfectly), and c is named
    assert report["map"] == pytest.approx(1.0)
    assert report["without_positives"] == ["c"]
    assert [entry["label"] for entry in report["per_label"]] == ["a", "b"]


def test_thresholds_maximize_each_labels_f1_on_validation_and_never_go_below_the_floor():
    # Given a label whose positives score 0.3 and 0.35 and negatives 0.1 and 0.32, and one that is all noise
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], dtype=np.float32)
    scores = np.array([[0.30, 0.01], [0.35, 0.02], [0.10, 0.03], [0.32, 0.01]])
    # When the thresholds are fitted
    fitted = TASK.fit(tasks.SplitScores(scores, targets, scores, targets), ["a", "b"])
    # Then a's decides as 0.30 does (both positives, one false positive: the best F1, 0.8), from the middle
    # of the stretch that decides so (above 0.10 up to 0.30); b's positive scores below the floor, where no
    # threshold may go, so every threshold decides alike (F1 0) and b's is the middle of them all
    a, b = fitted["thresholds"]
    assert a == pytest.approx(0.2)
    assert multilabel.THRESHOLD_FLOOR <= b <= multilabel.DEFAULT_THRESHOLD
    # And the configured task answers with them
    configured = TASK.configured(fitted)
    answer = configured.answer(np.array([0.25, 0.04]), ["a", "b"])
    assert [entry["label"] for entry in answer["labels"]] == ["a"]
    assert answer["scores"] == {"a": 0.25, "b": 0.04}


def test_cells_become_multi_hot_targets_and_an_empty_cell_is_no_event():
    # Given the labels of three clips' cells
    cells = ["horn;skid", "", " engine "]
    labels = TASK.labels(cells)
    # Then the vocabulary is every label once, and each clip's target marks its own
    assert labels == ["engine", "horn", "skid"]
    assert TASK.target("horn;skid", labels).tolist() == [0.0, 1.0, 1.0]
    assert TASK.target("", labels).tolist() == [0.0, 0.0, 0.0]


# --- the dataset layout ------------------------------------------------------------------------------


def test_a_listed_split_keeps_its_rows_and_names_the_bad_ones(tmp_path):
    # Given a metadata.csv with good rows, a path out of the folder, an absolute one, a missing file and a
    # duplicate
    make_multilabel_folder(tmp_path / "train", 4, seed=3)
    listing = tmp_path / "train" / contract.METADATA_FILE
    good = listing.read_text().splitlines()
    bad = ["../outside.wav,low", "/etc/passwd,low", "clips/missing.wav,low", good[1]]
    (tmp_path / "outside.wav").write_bytes((tmp_path / "train" / good[1].split(",")[0]).read_bytes())
    listing.write_text("\n".join([*good, *bad]) + "\n")
    # When the split is scanned
    split = audiofolder.scan("train", tmp_path / "train", audiofolder.DecodeCache(0))
    # Then the good clips are there with their cells as labels, and each bad row is skipped with a reason
    assert len(split.clips) == 4
    assert {clip.label for clip in split.clips} <= {row.split(",", 1)[1] for row in good[1:]}
    assert [(s.path, s.kind) for s in split.skipped] == [
        ("../outside.wav", audiofolder.UNLISTABLE),
        ("/etc/passwd", audiofolder.UNLISTABLE),
        ("clips/missing.wav", audiofolder.UNLISTABLE),
        (good[1].split(",")[0], audiofolder.UNLISTABLE),
    ]


# --- trained and served --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("multilabel")
    make_multilabel_folder(root / "train", 60, seed=1)
    make_multilabel_folder(root / "validation", 16, seed=2)
    make_multilabel_folder(root / "test", 16, seed=3)
    # fmt: off
    train.main([
        "--task", "multilabel",
        "--model_name_or_path", str(TINY_CONFIG),
        "--train_dir", str(root / "train"), "--validation_dir", str(root / "validation"),
        "--test_dir", str(root / "test"),
        "--model_dir", str(root / "model"), "--output_data_dir", str(root / "output"),
        "--max_length_seconds", "1", "--num_train_epochs", "6", "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "8", "--disable_tqdm", "true",
    ])
    # fmt: on
    return SimpleNamespace(
        root=root,
        model_dir=root / "model",
        metrics=json.loads((root / "output" / contract.METRICS_FILE).read_text()),
        report=json.loads((root / "output" / contract.EVALUATION_FILE).read_text()),
    )


def test_the_multilabel_job_reports_its_metrics_and_keeps_its_thresholds(trained):
    # Then every split reports mAP, micro and macro F1 and lwlrap, all fractions
    for split in ("eval", "test"):
        for name in TASK.metric_names:
            assert 0.0 <= trained.metrics[f"{split}_{name}"] <= 1.0, name
    # And the tones are learnt: test mAP well above what random scores reach (about the labels' frequency)
    assert trained.metrics["test_map"] > 0.7
    # And the model directory keeps the task, its labels and a threshold per label, chosen on validation
    meta = json.loads((trained.model_dir / contract.LABELS_FILE).read_text())
    assert meta[contract.TASK_KEY] == "multilabel" and meta[contract.LABELS_KEY] == ["high", "low", "mid"]
    thresholds = meta[contract.TASK_SETTINGS_KEY]["thresholds"]
    assert len(thresholds) == 3 and all(multilabel.THRESHOLD_FLOOR <= t < 1 for t in thresholds)
    # And the report lists each label's AP, worst first, and the picture exists
    per_label = trained.report["evaluation"]["test"]["per_label"]
    assert [e["average_precision"] for e in per_label] == sorted(e["average_precision"] for e in per_label)
    assert (trained.root / "output" / "average_precision_test.png").is_file()
    # And the job's code/ ships the multi-label task module
    assert (trained.model_dir / contract.CODE_DIR / contract.TASKS_DIR / "multilabel.py").is_file()


def test_the_endpoint_answers_every_label_above_its_threshold(trained, monkeypatch, tmp_path):
    # Given the model loaded as an endpoint worker loads it, and a clip mixing the low and high tones
    monkeypatch.setenv(contract.ENV_THREADS, "1")
    model = inference.model_fn(str(trained.model_dir))
    make_multilabel_folder(tmp_path / "ask", 12, seed=11)
    rows = [
        row.split(",", 1) for row in (tmp_path / "ask" / contract.METADATA_FILE).read_text().splitlines()[1:]
    ]
    answers = []
    for file_name, cell in rows:
        request = inference.input_fn((tmp_path / "ask" / file_name).read_bytes(), "audio/wav")
        answer = json.loads(inference.output_fn(inference.predict_fn(request, model), "application/json"))
        answers.append((set(multilabel.split_labels(cell)), answer))
    # Then each answer has the task's shape, passes the task's own check, and names mostly the right labels
    for _, answer in answers:
        assert TASK.check_answer(answer, ["high", "low", "mid"]) == []
    exact = sum({e["label"] for e in answer["labels"]} == truth for truth, answer in answers)
    assert exact >= len(answers) // 2


# --- events with times -------------------------------------------------------------------------------


def test_active_stretches_merge_into_events_across_short_gaps_and_short_ones_drop():
    # Given quarter-second stretches at 16 kHz: on, on, off, on (a 0.25 s gap), off, off, on (alone, 0.1 s)
    q = 4_000
    spans = [
        (0, q),
        (q, 2 * q),
        (2 * q, 3 * q),
        (3 * q, 4 * q),
        (4 * q, 5 * q),
        (5 * q, 6 * q),
        (6 * q, 6 * q + 1_600),
    ]
    active = [True, True, False, True, False, False, True]
    scores = [0.6, 0.9, 0.1, 0.7, 0.2, 0.1, 0.8]
    # When they are merged
    events = multilabel.merge_events(spans, active, scores, 16_000)
    # Then the gap closes into one event 0-1 s with its highest score, and the 0.1 s stretch is dropped
    assert events == [(0.0, 1.0, 0.9)]


def test_each_window_speaks_for_its_newest_audio():
    # Given 1 s windows every 0.25 s over 2 s (starts 0, 0.25, 0.5, 0.75, 1.0 s)
    starts = [0, 4_000, 8_000, 12_000, 16_000]
    # Then the stretches tile the recording, each from the previous window's end to its own (the first from 0)
    spans = multilabel.stretches(starts, 16_000, 32_000)
    assert spans[0] == (0, 16_000) and spans[-1][1] == 32_000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert spans[1] == (16_000, 20_000)  # the window at 0.25 s heard 1.0-1.25 s last


def test_event_f1_matches_onsets_within_the_collar_once_per_reference_event():
    reference = [("horn", 13.0, 13.5), ("skid", 12.5, 14.0)]
    # An onset 150 ms late matches; one 300 ms late does not; a second horn cannot match the same reference
    assert multilabel.event_f1(reference, [("horn", 13.15, 13.6), ("skid", 12.5, 14.0)]) == 1.0
    assert multilabel.event_f1(reference, [("horn", 13.3, 13.6), ("skid", 12.5, 14.0)]) == pytest.approx(0.5)
    assert multilabel.event_f1(reference, [("horn", 13.0, 13.2), ("horn", 13.1, 13.5)]) == pytest.approx(0.5)


def test_the_endpoint_answers_events_with_times_when_asked(trained, monkeypatch):
    # Given the model as an endpoint loads it, and 8 s of noise with the low tone from 2 to 4 s and the high
    # tone from 5 to 6.5 s
    monkeypatch.setenv(contract.ENV_THREADS, "1")
    model = inference.model_fn(str(trained.model_dir))
    rng = np.random.default_rng(5)
    recording = rng.normal(0.0, 0.02, 8 * 16_000).astype(np.float32)
    recording[2 * 16_000 : 4 * 16_000] += clip("low", 16_000, 2.0, rng)
    recording[5 * 16_000 : int(6.5 * 16_000)] += clip("high", 16_000, 1.5, rng)
    # When it is asked with segments
    answer = inference.predict_fn(inference.AudioRequest(recording, segments=True), model).to_json()
    events = answer[contract.SEGMENTS_KEY]
    # Then the segments are events: a label, a start and an end within the recording, a score
    assert events and all(set(event) == {"label", "start", "end", "score"} for event in events)
    assert all(0.0 <= event["start"] < event["end"] <= 8.0 for event in events)
    # And the low tone is found where it is, at a quarter-second resolution
    low = [event for event in events if event["label"] == "low"]
    assert any(event["start"] < 4.0 and event["end"] > 2.0 for event in low), events
    assert (
        all(
            round(event["start"] * 4, 6) == round(event["start"] * 4) or event["start"] == 0.0
            for event in low
        )
        or low
    )


# --- settings and request options ----------------------------------------------------------------------


def test_a_request_may_set_one_threshold_for_every_label_and_ask_for_the_top_k():
    # Given a configured task (tuned thresholds 0.6 and 0.7) and a clip's scores
    task = TASK.configured({"thresholds": [0.6, 0.7, 0.8]})
    scores = np.array([0.65, 0.5, 0.4])
    # When a request asks for threshold 0.45, then also top_k 1
    lowered = task.for_request({"threshold": "0.45"}).answer(scores, ["a", "b", "c"])
    top = task.for_request({"threshold": "0.45", "top_k": "1"}).answer(scores, ["a", "b", "c"])
    # Then the tuned thresholds answer only a; the lowered one a and b; top_k keeps the best one
    assert [e["label"] for e in task.answer(scores, ["a", "b", "c"])["labels"]] == ["a"]
    assert [e["label"] for e in lowered["labels"]] == ["a", "b"]
    assert [e["label"] for e in top["labels"]] == ["a"]
    # And other custom attributes (a caller's trace id) are left alone
    assert task.for_request({"trace": "1"}) is task


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": "1.5"}, "threshold='1.5' must be a number between 0 and 1"),
        ({"threshold": "nan"}, "must be a number between 0 and 1"),
        ({"top_k": "0"}, "top_k='0' must be a whole number of at least 1"),
        ({"top_k": "two"}, "must be a whole number"),
    ],
)
def test_a_bad_request_option_is_a_clear_400(trained, monkeypatch, options, message):
    # Given the endpoint, and a request carrying a bad option in its custom attributes
    monkeypatch.setenv(contract.ENV_THREADS, "1")
    model = inference.model_fn(str(trained.model_dir))
    header = "; ".join(f"{key}={value}" for key, value in options.items())

    class Context:
        class _Processor:
            def get_request_properties(self):
                return {contract.CUSTOM_ATTRIBUTES_HEADER.lower(): header}

        request_processor = [_Processor()]

    request = inference.input_fn(_silence_wav(), "audio/wav", Context())
    # When it is predicted / Then the handler answers a 400 naming the option and what it takes
    with pytest.raises(inference.BadRequest, match=message) as refused:
        inference.predict_fn(request, model)
    assert refused.value.status_code == 400


def _silence_wav() -> bytes:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16_000, dtype=np.float32), 16_000, format="WAV")
    return buffer.getvalue()


def test_settings_choose_the_pooling_and_weight_rare_labels():
    # Given mean pooling and positive weighting, and training targets where label b is rare
    task = TASK.configured({"pooling": "mean", "positive_weighting": True})
    targets = np.array([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    prepared = task.prepared(targets)
    # Then a clip pools its windows' mean, and b's positives weigh 3 (3 negatives / 1 positive), a's 1
    assert task.pool(np.array([[0.2, 0.1], [0.6, 0.3]])).tolist() == pytest.approx([0.4, 0.2])
    assert prepared.positive_weights == (1.0, 3.0)
    # And the endpoint keeps the pooling, not the weighting (it only trains)
    assert task.settings() == {"pooling": "mean"}


def test_unknown_or_bad_settings_stop_training_before_any_data_is_read():
    # When the settings are misspelt, or a value is wrong / Then one clear error names what is taken
    with pytest.raises(
        train.TrainingInputError, match="takes the settings thresholds, pooling, positive_weighting"
    ):
        train.parse_arguments(["--task", "multilabel", "--task_settings", '{"pool": "mean"}'])
    with pytest.raises(train.TrainingInputError, match="pooling must be one of max, mean"):
        train.parse_arguments(["--task", "multilabel", "--task_settings", '{"pooling": "median"}'])
    with pytest.raises(train.TrainingInputError, match="--task_settings is not JSON"):
        train.parse_arguments(["--task", "multilabel", "--task_settings", "{pooling: mean}"])


# --- mixing clips ------------------------------------------------------------------------------------


def test_mixed_crops_carry_the_union_of_both_clips_labels(tmp_path):
    # Given two listed clips, one with the low tone, one with the high tone, and mixing every crop
    folder = tmp_path / "train"
    make_multilabel_folder(folder, 6, seed=4)
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(2**26))
    labels = TASK.labels([clip.label for clip in split.clips])
    target = functools.partial(TASK.target, labels=labels)
    mixing = audiofolder.Mixing(TASK.mix, probability=1.0)
    crops = audiofolder.RandomCrops(split.clips, target, 16_000, featurize=lambda x: x, mixing=mixing)
    # When crops are drawn
    torch.manual_seed(0)
    items = [crops[i % len(crops)] for i in range(12)]
    # Then each target holds at least its own clip's labels, and the sum of two clips stays within [-1, 1]
    for i, item in enumerate(items):
        own = target(split.clips[i % len(crops)].label)
        assert (item["labels"] >= own).all()
        assert np.abs(item["input_values"]).max() <= 1.0 + 1e-6
    # And some draw brought labels its own clip lacks
    assert any(
        (item["labels"] > target(split.clips[i % len(crops)].label)).any() for i, item in enumerate(items)
    )


def test_a_task_whose_targets_have_no_union_cannot_mix():
    # Given classification (one label per clip) and --mix_probability
    args = train.parse_arguments(["--mix_probability", "0.5"])[1]
    # When the training crops are built / Then one clear error says so
    with pytest.raises(train.TrainingInputError, match="the classification task cannot mix clips"):
        train._mixing(tasks.load("classification"), args, 0)

"""train.py end to end: one real (tiny) training run through the SageMaker layout, checked many ways."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from transformers import AutoModelForAudioClassification

from common import audio, contract
from serving import inference
from standins.synthetic import TONES, clip, make_audiofolder
from training import audiofolder, curves, train

pytestmark = pytest.mark.slow

ROOT = Path(train.__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
LABELS = sorted(TONES)
EPOCHS = 8
# Enough for the tiny config to separate the tones; its random-init feature encoder trains by default.
HYPERPARAMETERS = [
    "--model_name_or_path", str(TINY_CONFIG),
    "--max_length_seconds", "1",
    "--num_train_epochs", str(EPOCHS),
    "--learning_rate", "3e-3",
    "--per_device_train_batch_size", "8",
]  # fmt: skip
METRIC_LINE = re.compile(r"^([a-z0-9_]+)=(\S+)$")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, source_dir: Path) -> SimpleNamespace:
    """One training job as SageMaker runs it: `python train.py` in the source dir, paths from SM_*."""
    root = tmp_path_factory.mktemp("job")
    train_dir = make_audiofolder(root / "train", per_class=20, seed=1, broken=True)
    test_dir = make_audiofolder(root / "test", per_class=6, seed=2)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(train_dir),
        "SM_CHANNEL_TEST": str(test_dir),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output"),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [sys.executable, "train.py", *HYPERPARAMETERS, "--export_onnx", "true"],
        cwd=source_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return SimpleNamespace(
        root=root,
        model_dir=root / "model",
        output_dir=root / "output",
        stdout=run.stdout,
        metrics=json.loads((root / "output" / contract.METRICS_FILE).read_text()),
        report=json.loads((root / "output" / contract.EVALUATION_FILE).read_text()),
    )


@pytest.fixture(scope="module")
def endpoint(trained: SimpleNamespace) -> Iterator[inference.AudioModel]:
    """The trained model directory as a worker of the endpoint loads it: the handler's ``model_fn``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(contract.ENV_THREADS, "1")  # read by model_fn, as a worker reads its environment
        yield inference.model_fn(str(trained.model_dir))


def _ask(model: inference.AudioModel, body: bytes, content_type: str) -> dict[str, Any]:
    """One request through the handler as the model server calls it, and the JSON the client gets."""
    request = inference.input_fn(body, content_type)
    return json.loads(inference.output_fn(inference.predict_fn(request, model), "application/json"))


# --- the training run ----------------------------------------------------------------------------


def test_training_learns_the_separable_task_well_above_chance(trained):
    # Given four classes (chance: 0.25) and a held-out test channel
    # When the job has trained
    # Then window- and clip-level accuracy on both validation and test are far above chance
    for name in ("eval_accuracy", "eval_clip_accuracy", "test_accuracy", "test_clip_accuracy"):
        assert trained.metrics[name] >= 0.75, (name, trained.metrics)
    assert trained.metrics["test_f1"] >= 0.7


def test_metric_lines_follow_every_epoch_and_the_final_evaluation(trained):
    # Given the job's stdout
    lines = [m.groups() for m in map(METRIC_LINE.match, trained.stdout.splitlines()) if m]
    names = [name for name, _ in lines]
    health_names = {name for name in names if name in contract.HEALTH_METRIC_NAMES}

    # Then the quality metrics printed are exactly the contract's, and the rest are health metrics
    assert set(names) - health_names == set(contract.METRIC_NAMES)
    # And every value is one the job's regex for its name reads whole
    for name, value in lines:
        assert re.fullmatch(contract.metric_regex(name), f"{name}={value}"), (name, value)
    # And every epoch printed the eval metrics, and the end printed the final values once more
    for name in ("eval_loss", "eval_accuracy", "eval_f1"):
        assert names.count(name) == EPOCHS + 1
    for name in ("train_loss", "test_loss", "test_accuracy", "test_f1", "test_clip_accuracy"):
        assert names.count(name) == 1


def test_each_evaluated_health_rule_prints_its_flag_and_value_once_and_writes_them(trained):
    # Given the health section of the report, the printed lines and metrics.json
    rules = trained.report[contract.HEALTH_REPORT]["rules"]
    printed = dict(m.groups() for m in map(METRIC_LINE.match, trained.stdout.splitlines()) if m)
    evaluated = [rule for rule in contract.HEALTH_RULES if rules[rule]["status"] != "not_evaluated"]
    # Then the rules this run can judge were judged; the GPU rules were not, on a CPU
    assert {"overfit", "overtraining", "vanishing_gradient", "exploding_gradient", "nonfinite_loss"} <= set(
        evaluated
    )
    assert rules["gpu_utilization"]["reason"] == rules["gpu_memory"]["reason"] == "no GPU"
    # And each evaluated rule printed its flag and value, which metrics.json holds, and nothing else did
    expected = {
        name: float(rules[rule]["status"] == "fired")
        if name == contract.health_metric(rule)
        else rules[rule]["value"]
        for rule in evaluated
        for name in (contract.health_metric(rule), contract.health_value_metric(rule))
    }
    assert {name for name in printed if name.startswith("health_")} == set(expected)
    assert {name: trained.metrics[name] for name in expected} == expected
    assert set(trained.metrics) == set(contract.METRIC_NAMES) | {"eval_clip_f1", "test_clip_f1"} | set(
        expected
    )
    for name, value in expected.items():
        assert float(printed[name]) == pytest.approx(value, rel=1e-5), name
    # And a healthy run trips none of the rules that block promotion by default
    assert not any(rules[rule]["status"] == "fired" for rule in contract.DEFAULT_BLOCKING_HEALTH_RULES)


def test_metrics_json_is_flat_with_the_keys_the_promoter_reads(trained):
    # Then metrics.json maps names to floats, and the model directory carries the same file
    required = {"eval_accuracy", "eval_f1", "eval_clip_accuracy", "test_accuracy", "test_f1", "train_loss"}
    assert required <= trained.metrics.keys()
    assert all(isinstance(value, float) for value in trained.metrics.values())
    assert json.loads((trained.model_dir / contract.METRICS_FILE).read_text()) == trained.metrics


def test_model_directory_is_self_contained(trained):
    # Then the directory holds weights, config with labels, feature extractor, labels.json and code/
    model_dir = trained.model_dir
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        contract.ONNX_FILE,
        contract.ONNX_INT8_FILE,
    ):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == LABELS
    assert config["label2id"] == {label: i for i, label in enumerate(LABELS)}
    assert json.loads((model_dir / contract.LABELS_FILE).read_text()) == {
        "task": "classification",  # the task the endpoint answers for
        "labels": LABELS,
        "sampling_rate": 16_000,
        "max_length_seconds": 1.0,
        "window_hop_seconds": 0.5,  # the hop the evaluation used, which serving reads back
    }
    assert trained.report["window_hop_seconds"] == 0.5
    code = model_dir / contract.CODE_DIR
    for name in contract.SERVING_CODE:
        assert (code / name).read_bytes() == (ROOT / name).read_bytes(), name
    assert (code / contract.HANDLER_FILE).read_bytes() == (ROOT / contract.SERVING_ENTRY).read_bytes()
    assert (code / "requirements.txt").read_text() == (ROOT / contract.SERVING_REQUIREMENTS).read_text()
    # And of the tasks, only the model's own ships with it
    assert sorted(p.name for p in (code / contract.TASKS_DIR).glob("*.py")) == [
        "__init__.py",
        "classification.py",
    ]


def test_corrupt_and_empty_clips_are_skipped_and_listed(trained):
    # Given a train folder with a corrupt WAV, an empty FLAC and a README at its root
    train_data = trained.report["data"]["train"]
    # Then both bad files are listed with a reason, and every label kept its other clips
    skipped = {entry["path"]: entry["reason"] for entry in train_data["skipped"]}
    assert set(skipped) == {"low/corrupt.wav", "noise/empty.flac"}
    assert all(skipped.values())
    held_out = trained.report["data"]["validation"]["per_class"]
    assert {label: train_data["per_class"][label] + held_out[label] for label in LABELS} == {
        "high": 20,
        "low": 20,
        "mid": 20,
        "noise": 20,
    }


def test_evaluation_report_has_per_class_scores_and_confusion_matrices(trained):
    # Given the test split's report
    test = trained.report["evaluation"]["test"]
    # Then per-class precision/recall/F1 cover every label, at window and clip level
    assert set(test["clip"]["per_class"]) == set(LABELS)
    assert set(test["clip"]["per_class"]["mid"]) == {"precision", "recall", "f1", "support"}
    # And the clip-level confusion matrix counts every test clip once; window level counts more
    assert np.asarray(test["clip"]["confusion_matrix"]).sum() == 6 * len(LABELS)
    assert np.asarray(test["window"]["confusion_matrix"]).sum() > 6 * len(LABELS)
    assert test["clip"]["accuracy"] == pytest.approx(trained.metrics["test_clip_accuracy"])
    for split in ("validation", "test"):
        png = trained.output_dir / f"confusion_matrix_{split}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_training_curves_are_drawn_beside_the_report_and_tensorboard_gets_its_files(trained):
    # Given the run's reports (outside SageMaker: no SM_TRAINING_ENV, no --tensorboard_dir)
    png = trained.output_dir / curves.CURVES_FILE
    # Then the loss and objective curves are a PNG beside evaluation.json
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # And the TensorBoard event files are beside them where this environment can write them; else it says so
    events = sorted((trained.output_dir / curves.LOCAL_TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    if curves.tensorboard_available():
        assert events and "TensorBoard event files in" in trained.stdout
    else:
        assert not events and "the tensorboard package is not installed" in trained.stdout


def test_the_endpoint_recognises_new_clips_sent_as_a_client_sends_them(endpoint):
    # Given clips the model never saw, at an unusual rate and in stereo, encoded as WAV files
    rng = np.random.default_rng(7)
    correct = 0
    for label in LABELS:
        for _ in range(2):
            samples = clip(label, 22_050, 2.2, rng)
            buffer = io.BytesIO()
            sf.write(buffer, np.stack([samples, samples], axis=1), 22_050, format="WAV")
            # When each is posted to the handler loaded from the saved model directory
            answer = _ask(endpoint, buffer.getvalue(), "audio/wav")
            assert set(answer["probs"]) == set(LABELS)
            correct += answer["label"] == label
    # Then it recognises most of them
    assert correct >= 6


def test_the_endpoint_answers_the_test_channel_as_training_scored_it(trained, endpoint):
    # Given every file of the held-out test channel (WAV, FLAC and OGG; mono and stereo; 8 to 44.1 kHz)
    files = sorted((trained.root / "test").glob("*/*"))
    assert len(files) == 6 * len(LABELS)
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for path in files:
        # When each is sent as a client sends a file: its bytes, with its suffix's content type
        answer = _ask(endpoint, path.read_bytes(), contract.SUFFIX_CONTENT_TYPES[path.suffix])
        matrix[LABELS.index(path.parent.name), LABELS.index(answer["label"])] += 1
    # Then the endpoint's clip-level confusion matrix is the one training's evaluation reported
    assert matrix.tolist() == trained.report["evaluation"]["test"]["clip"]["confusion_matrix"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(trained.metrics["test_clip_accuracy"])


def test_the_report_says_how_the_model_was_trained(trained):
    # Given the evaluation report of a run from the config-only tiny model with the default arguments
    report = trained.report
    # Then it records the freeze decision, the padding, the augmentation, the filters and early stopping
    assert report["pretrained"] is False
    assert report["feature_encoder"] == {
        "frozen": False,
        "reason": "the model starts from random weights (the default for a config-only model)",
    }
    assert "by repeating shorter inputs, without a mask" in report["padding"]
    assert report["augmentation"]["noise_probability"] == 0.5
    assert report["augmentation"]["gain_db"] == 0.0  # the extractor normalizes: a gain would change nothing
    assert report["clip_seconds"] == {"min": 0.0, "max": 600.0}
    assert report["early_stopping"] == {"patience": 0, "stopped_early": False, "epochs_trained": EPOCHS}
    assert report["data"]["train"]["skipped_counts"] == {"corrupt": 2}


SHORT_CLIPS = 200


def test_short_clips_get_the_same_answer_at_their_own_length_as_padded_the_way_training_pads(trained):
    # Given the trained model as the endpoint loads it (1 s windows), and clips of 0.1 to 0.95 s
    classifier = inference.load_model(trained.model_dir, inference.Settings(threads=1))
    rng = np.random.default_rng(11)
    clips = [clip(LABELS[i % len(LABELS)], 16_000, rng.uniform(0.1, 0.95), rng) for i in range(SHORT_CLIPS)]
    window = classifier.window
    native_labels, padded_labels = [], []
    for samples in clips:
        # When each is run at its own length (what the endpoint does now: it pays for what it gets) ...
        native = classifier.normalize(audio.fit_window(samples, window)[None])
        # ... and padded to the whole window as a training batch pads it (no mask: by repeating it)
        padded = audiofolder.PadBatch(wrap=True)(
            [{"input_values": native[0], "labels": 0}, {"input_values": np.zeros(window), "labels": 0}]
        )["input_values"][:1].numpy()
        native_labels.append(int(classifier.backend(native).argmax()))
        padded_labels.append(int(classifier.backend(padded).argmax()))
    # Then the top-1 labels agree on at least 99% of them, and the model knows the clips
    agreement = np.mean(np.equal(native_labels, padded_labels))
    accuracy = np.mean([LABELS[p] == LABELS[i % len(LABELS)] for i, p in enumerate(native_labels)])
    assert agreement >= 0.99, f"native vs padded top-1 agreement {agreement:.3f}"
    assert accuracy >= 0.9, accuracy


def test_onnx_export_matches_pytorch_for_other_batch_sizes_and_lengths(trained):
    # Given the exported graph and the saved weights
    model = AutoModelForAudioClassification.from_pretrained(trained.model_dir).eval()
    onnx_file = str(trained.model_dir / contract.ONNX_FILE)
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    inputs = np.random.default_rng(0).normal(size=(3, 27_000)).astype(np.float32)
    # When both score a batch longer than the training window
    (onnx_logits,) = session.run(["logits"], {"input_values": inputs})
    with torch.no_grad():
        torch_logits = model(input_values=torch.from_numpy(inputs)).logits.numpy()
    # Then they agree
    assert onnx_logits.shape == (3, len(LABELS))
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


# --- resuming ------------------------------------------------------------------------------------


def test_training_resumes_from_the_last_checkpoint(trained, tmp_path):
    # Given a job stopped after two steps, its checkpoint kept (as managed spot training keeps it)
    common = [
        *HYPERPARAMETERS,
        "--train_dir", str(trained.root / "train"),
        "--validation_dir", str(trained.root / "test"),
        "--model_dir", str(tmp_path / "model"),
        "--output_data_dir", str(tmp_path / "output"),
        "--checkpoint_dir", str(tmp_path / "checkpoints"),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    first = train.main([*common, "--max_steps", "2"])
    assert first.start_step == 0
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir()

    # When the job starts again with the same checkpoint folder
    second = train.main([*common, "--max_steps", "4"])

    # Then the Trainer picked up at step 2 and finished the remaining steps
    assert second.resumed_from == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert (second.start_step, second.global_step) == (2, 4)
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_resuming_a_checkpoint_trained_on_other_labels_is_refused(trained, tmp_path):
    # Given a checkpoint whose labels differ from the data's
    checkpoint = tmp_path / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(json.dumps({"id2label": {"0": "cat", "1": "dog"}}))
    args = train.parse_arguments(["--output_dir", str(tmp_path / "checkpoints")])[2]
    # When / Then
    expected = r"checkpoint-3 was trained on labels \['cat', 'dog'\]"
    with pytest.raises(train.TrainingInputError, match=expected):
        train.find_resume_checkpoint(args, tmp_path / "checkpoints", LABELS)


# --- early stopping ------------------------------------------------------------------------------


def test_training_stops_after_patience_evaluations_without_a_better_metric(trained, tmp_path):
    # Given a run that cannot improve (learning rate 0) with 10 epochs and a patience of 2
    argv = [
        *HYPERPARAMETERS,
        "--train_dir", str(trained.root / "train"),
        "--validation_dir", str(trained.root / "test"),
        "--model_dir", str(tmp_path / "model"),
        "--output_data_dir", str(tmp_path / "output"),
        "--num_train_epochs", "10",
        "--learning_rate", "0",
        "--early_stopping_patience", "2",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    # When it trains
    outcome = train.main(argv)
    # Then it stopped after the first evaluation and two more without an improvement, and says so
    report = json.loads((tmp_path / "output" / contract.EVALUATION_FILE).read_text())
    assert report["early_stopping"] == {"patience": 2, "stopped_early": True, "epochs_trained": 3.0}
    steps_per_epoch = -(-sum(report["data"]["train"]["per_class"].values()) // 8)
    assert outcome.global_step == 3 * steps_per_epoch
    # And the overtraining rule, early stopping's own condition, fired at the step where it stopped
    overtraining = report[contract.HEALTH_REPORT]["rules"]["overtraining"]
    assert (overtraining["status"], overtraining["step"], overtraining["threshold"]) == (
        "fired",
        outcome.global_step,
        2,
    )
    assert report[contract.HEALTH_REPORT]["parameters"]["patience"] == {
        "value": 2,
        "from": "--early_stopping_patience",
    }
    assert (tmp_path / "model" / "model.safetensors").is_file()


# --- clear errors --------------------------------------------------------------------------------


def _run_in_process(train_dir: Path, tmp_path: Path) -> None:
    train.main(
        [
            *HYPERPARAMETERS,
            "--train_dir", str(train_dir),
            "--model_dir", str(tmp_path / "model"),
            "--output_data_dir", str(tmp_path / "output"),
        ]
    )  # fmt: skip


def test_a_single_class_is_a_clear_error(tmp_path):
    # Given a train folder with one label
    train_dir = make_audiofolder(tmp_path / "train", per_class=3, seed=0, labels=("low",))
    # When / Then
    with pytest.raises(audiofolder.DatasetLayoutError, match=rf"{re.escape(str(train_dir))} .*at least 2"):
        _run_in_process(train_dir, tmp_path)


def test_an_empty_folder_is_a_clear_error(tmp_path):
    # Given an empty train folder
    (tmp_path / "train").mkdir()
    # When / Then
    expected = r"train data folder .*/train has no label folders"
    with pytest.raises(audiofolder.DatasetLayoutError, match=expected):
        _run_in_process(tmp_path / "train", tmp_path)


def test_label_folders_without_usable_audio_are_a_clear_error(tmp_path):
    # Given label folders that hold only an unreadable file and a text file
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "broken.wav").write_bytes(b"nope")
    (tmp_path / "train" / "b").mkdir()
    (tmp_path / "train" / "b" / "notes.txt").write_text("no audio here")
    # When / Then
    expected = r"/train has no usable audio clips \(1 audio files found, 1 skipped\)"
    with pytest.raises(audiofolder.DatasetLayoutError, match=expected):
        _run_in_process(tmp_path / "train", tmp_path)


def test_audio_files_outside_label_folders_are_a_clear_error(tmp_path):
    # Given clips directly in the train folder, not in label folders
    (tmp_path / "train").mkdir()
    sf.write(tmp_path / "train" / "dog.wav", np.zeros(1600, dtype=np.float32), 16_000)
    # When / Then
    expected = r"/train holds audio files directly .*/train/<label>/dog.wav"
    with pytest.raises(audiofolder.DatasetLayoutError, match=expected):
        _run_in_process(tmp_path / "train", tmp_path)


def test_evaluation_labels_unknown_to_training_are_a_clear_error(tmp_path):
    # Given a test folder with a label the training data lacks
    make_audiofolder(tmp_path / "test", per_class=1, seed=0, labels=("low", "high"))
    split = audiofolder.scan("test", tmp_path / "test", audiofolder.DecodeCache(0))
    # When / Then
    expected = r"/test has labels the training data lacks: high"
    with pytest.raises(audiofolder.DatasetLayoutError, match=expected):
        audiofolder.check_labels(split, ["low", "mid"])


def test_missing_training_data_from_the_command_line_names_the_argument(tmp_path, source_dir):
    # Given no SM_CHANNEL_TRAIN and no --train_dir
    env = {key: value for key, value in os.environ.items() if not key.startswith("SM_")}
    env.pop("PYTHONPATH", None)
    # When the script runs as the container runs it
    run = subprocess.run(
        [sys.executable, "train.py", "--model_dir", str(tmp_path / "m"), "--output_data_dir", str(tmp_path)],
        cwd=source_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it exits with status 2 and one line that says what to pass, no traceback
    assert run.returncode == 2
    assert "error: no training data given: pass --train_dir or set SM_CHANNEL_TRAIN" in run.stderr
    assert "Traceback" not in run.stderr

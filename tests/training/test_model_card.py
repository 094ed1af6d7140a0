"""The model directory's Hugging Face model card (README.md): its metadata block, as huggingface_hub reads it
back, and a body written from the run's facts; one tiny training run writes it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import yaml
from huggingface_hub import ModelCard, ModelCardData

import tasks
from common import contract
from standins.synthetic import make_audiofolder
from training import model_card, train
from training.model_card import CardFacts, MetricFacts, SplitFacts

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
CLASSIFICATION = tasks.load("classification")
METRICS = tuple(MetricFacts(m.name, m.higher_is_better, m.description) for m in CLASSIFICATION.metrics)
REPORT = {
    "labels": ["dog_bark", "rain"],
    "clip": {
        "per_class": {
            "dog_bark": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 10},
            "rain": {"precision": 0.82, "recall": 0.91, "f1": 0.862, "support": 11},
        }
    },
}


def facts(**changes: Any) -> CardFacts:
    """A classification run fine-tuned from a Hub checkpoint on ESC-50, evaluated on validation and test."""
    base = CardFacts(
        model_name="acoustic-shield-dev-train-20260101-000000-1a2b3c4d",
        task="classification",
        task_summary=model_card.task_summary(CLASSIFICATION),
        pipeline_tag=model_card.pipeline_tag(CLASSIFICATION),
        architecture="Wav2Vec2ForSequenceClassification",
        model_type="wav2vec2",
        source="facebook/wav2vec2-base",
        pretrained=True,
        hub_model=True,
        feature_encoder="frozen: pretrained weights were loaded",
        labels=("dog_bark", "rain"),
        window_seconds=5.0,
        hop_seconds=2.5,
        splits=(
            SplitFacts("train", "/opt/ml/input/data/train", 1600, 8000.0, 2),
            SplitFacts("validation", "held out of the training clips", 200, 1000.0),
            SplitFacts("test", "/opt/ml/input/data/test", 21, 105.0),
        ),
        metrics={
            "train_loss": 0.4,
            "eval_loss": 0.5,
            "eval_accuracy": 0.8,
            "eval_f1": 0.79,
            "test_loss": 0.55,
            "test_accuracy": 0.857,
            "test_f1": 0.85,
            "test_clip_accuracy": 0.857,
            "test_clip_f1": 0.854,
        },
        task_metrics=METRICS,
        objective="f1",
        reports={"test": REPORT},
        dataset_name="esc50",
        hyperparameters={"learning_rate": 3e-5, "num_train_epochs": 4.0, "seed": 42, "precision": "bf16"},
        versions={"Transformers": "5.3.0"},
    )
    return dataclasses.replace(base, **changes)


def hub_card(text: str) -> ModelCardData:
    """The card's metadata as huggingface_hub reads it."""
    data = ModelCard(text).data
    assert isinstance(data, ModelCardData)
    return data


def front_matter(text: str) -> dict[str, Any]:
    """The YAML between the leading ``---`` lines, parsed strictly."""
    assert text.startswith("---\n")
    block, _, _ = text[4:].partition("\n---\n")
    parsed = yaml.safe_load(block)
    assert isinstance(parsed, dict)
    return parsed


# --- metadata ----------------------------------------------------------------------------------------


def test_the_metadata_block_is_the_hub_spec_and_huggingface_hub_reads_it_back() -> None:
    # Given a classification run on ESC-50 fine-tuned from a Hub checkpoint
    text = model_card.render(facts())
    # When the card's front matter is parsed as YAML and by huggingface_hub
    meta = front_matter(text)
    card = hub_card(text)
    # Then it has the standard fields, the license being ESC-50's
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "audio-classification"
    assert meta["license"] == "cc-by-nc-3.0"
    assert meta["base_model"] == "facebook/wav2vec2-base"
    assert meta["datasets"] == ["esc50"]
    assert meta["metrics"] == ["accuracy", "f1", "clip_accuracy", "clip_f1"]
    assert {"audio", "audio-classification", "wav2vec2"} <= set(meta["tags"])
    # And model-index has one result per evaluated split, with each task metric the split reported
    (index,) = meta["model-index"]
    assert index["name"] == facts().model_name
    by_split = {result["dataset"]["split"]: result for result in index["results"]}
    assert set(by_split) == {"validation", "test"}
    assert by_split["test"]["task"]["type"] == "audio-classification"
    assert by_split["test"]["dataset"] == {"name": "ESC-50", "type": "esc50", "split": "test"}
    test_values = {m["type"]: m["value"] for m in by_split["test"]["metrics"]}
    assert test_values == {"accuracy": 0.857, "f1": 0.85, "clip_accuracy": 0.857, "clip_f1": 0.854}
    assert {m["type"] for m in by_split["validation"]["metrics"]} == {"accuracy", "f1"}
    # And huggingface_hub reads the same results back as EvalResults
    assert card.license == "cc-by-nc-3.0"
    assert card.eval_results is not None
    assert len(card.eval_results) == 6
    assert card.model_name == facts().model_name


@pytest.mark.parametrize(
    ("dataset_name", "dataset_license", "license_id", "license_name"),
    [
        ("esc50", "", "cc-by-nc-3.0", None),
        ("fsd50k", "", "cc-by-4.0", None),
        ("librispeech", "", "cc-by-4.0", None),
        ("commonvoice", "", "cc0-1.0", None),
        ("ESC50", "", "cc-by-nc-3.0", None),  # the name as staging spells it, in any case
        ("esc50", "CC-BY-4.0", "cc-by-4.0", None),  # an explicit license wins
        ("my-clips", "", "unknown", None),
        ("", "", "unknown", None),
        ("", "Internal use only (ACME)", "other", "internal-use-only-acme"),
    ],
)
def test_the_license_is_the_training_datas(
    dataset_name: str, dataset_license: str, license_id: str, license_name: str | None
) -> None:
    # Given a run's dataset name and license arguments
    run = facts(dataset_name=dataset_name, dataset_license=dataset_license)
    # When the card's license is chosen / Then it is the known dataset's, the given one, or unknown
    assert model_card.card_license(run) == (license_id, license_name)
    meta = front_matter(model_card.render(run))
    assert meta["license"] == license_id
    assert meta.get("license_name") == license_name


def test_base_model_is_named_only_for_pretrained_hub_checkpoints() -> None:
    # Given a config-only random init, a local pretrained folder and a Hub checkpoint
    random_init = facts(source="training/configs/tiny-wav2vec2", pretrained=False, hub_model=False)
    local = facts(source="/opt/ml/input/data/model", pretrained=True, hub_model=False)
    # When their cards are rendered
    # Then only the Hub checkpoint is the base_model; the others are named in the body
    assert "base_model" not in front_matter(model_card.render(random_init))
    assert "base_model" not in front_matter(model_card.render(local))
    assert "random weights from the configuration `training/configs/tiny-wav2vec2`" in model_card.render(
        random_init
    )
    assert "the local checkpoint `/opt/ml/input/data/model`" in model_card.render(local)
    assert "started from random weights" in model_card.render(random_init)


def test_a_run_without_a_test_split_reports_validation_only_and_a_speech_model_is_asr() -> None:
    # Given a speech run evaluated on validation only, with its error-rate report
    asr = tasks.load("asr")
    report = {
        "utterances": 4,
        "wer": 0.25,
        "cer": 0.1,
        "words": 40,
        "substitutions": 6,
        "deletions": 3,
        "insertions": 1,
        "normalization": "lower case",
    }
    run = facts(
        task="asr",
        task_summary=model_card.task_summary(asr),
        pipeline_tag=model_card.pipeline_tag(asr),
        architecture="Wav2Vec2ForCTC",
        labels=("<pad>", "<unk>", "|", "a", "b"),
        task_metrics=tuple(MetricFacts(m.name, m.higher_is_better, m.description) for m in asr.metrics),
        metrics={"eval_loss": 40.0, "eval_wer": 0.25, "eval_cer": 0.1},
        reports={"validation": report},
        dataset_name="librispeech",
    )
    # When its card is rendered
    text = model_card.render(run)
    meta = front_matter(text)
    # Then it is a speech recognition card with validation results only
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    (index,) = meta["model-index"]
    assert [r["dataset"]["split"] for r in index["results"]] == ["validation"]
    assert {m["type"] for m in index["results"][0]["metrics"]} == {"wer", "cer"}
    assert "| wer | 0.2500 |" in text
    assert "Validation split: WER 0.2500, CER 0.1000 over 4 utterances and 40 words" in text
    assert "## Output vocabulary" in text and "a vocabulary of 5 tokens (CTC)" in text


# --- body --------------------------------------------------------------------------------------------


def test_the_body_says_what_the_run_did() -> None:
    # Given the classification run
    text = model_card.render(facts())
    # Then the body names the task, base model, data, metrics per split, per-class results, use and limits
    assert "# acoustic-shield-dev-train-20260101-000000-1a2b3c4d" in text
    assert "[`facebook/wav2vec2-base`](https://huggingface.co/facebook/wav2vec2-base)" in text
    assert "[ESC-50](https://github.com/karolpiczak/ESC-50)" in text
    assert "| validation | held out of the training clips | 200 | 16.7 min | 0 |" in text
    assert "| train | `/opt/ml/input/data/train` | 1600 | 2.22 h | 2 |" in text
    assert "| Metric | validation | test | Meaning |" in text
    assert "| accuracy | 0.8000 | 0.8570 |" in text
    assert "| clip_accuracy | - | 0.8570 |" in text
    assert "| dog_bark | 0.9000 | 0.8000 | 0.8470 | 10 |" in text
    assert "The model is the checkpoint with the best validation `f1`." in text
    for section in ("## Intended use", "## Limitations", "## Training procedure", "### Framework versions"):
        assert section in text
    assert "(non-commercial)" in text  # ESC-50's license, in the limitations
    assert "2 files of the data folders were skipped" in text
    assert "| learning_rate | 3e-05 |" in text


def test_table_cells_escape_pipes_and_newlines() -> None:
    # Given labels and a source path with markdown's table separator and a newline
    run = facts(
        labels=("a|b", "c"),
        splits=(SplitFacts("train", "/data/x|y\nz", 3, 1.0),),
        reports={"test": {"clip": {"per_class": {"a|b": {"precision": 1.0, "recall": 1.0, "f1": 1.0}}}}},
    )
    # When rendered / Then every table row keeps its columns
    text = model_card.render(run)
    assert "| a\\|b | 1.0000 | 1.0000 | 1.0000 | - |" in text
    assert "`/data/x\\|y z`" in text


def test_report_details_read_each_tasks_report_and_nothing_else() -> None:
    # Given a multilabel report, and a report of an unknown shape
    multilabel = {
        "per_label": [
            {"label": "Bark", "average_precision": 0.4, "threshold": 0.3, "positives": 5},
            {"label": "Rain", "average_precision": 0.9, "threshold": 0.5, "positives": 7},
        ],
        "without_positives": ["Siren"],
    }
    # When their details are rendered
    lines = model_card.report_details("test", multilabel)
    # Then the multilabel report gives each label's AP and threshold, and names what was left out
    assert "| Bark | 0.4000 | 0.3000 | 5 |" in lines
    assert lines[-1] == "Without a positive clip in this split (left out of the mean): 1 labels."
    assert model_card.report_details("test", {"something": 1}) == []


def test_the_staged_manifest_beside_the_training_folder_is_summarized(tmp_path: Path) -> None:
    # Given a staged dataset (train/ and test/ with manifest.jsonl above them, as staging writes it)
    entries = [
        {"path": "train/a/1.wav", "label": "a", "split": "train", "duration": 2.0, "sample_rate": 16000},
        {"path": "train/b/2.wav", "label": "b", "split": "train", "duration": 3.0, "sample_rate": 44100},
        {"path": "test/a/3.wav", "label": "a", "split": "test", "duration": 1.0, "sample_rate": 16000},
    ]
    manifest = tmp_path / contract.MANIFEST_FILE
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    (tmp_path / "train").mkdir()
    # When the training folder's manifest is read
    found = model_card.read_manifest(tmp_path / "train")
    # Then it is summarized with the manifest's digest; a folder of another name has none
    assert found is not None
    assert found.clips == {"train": 2, "test": 1}
    assert (found.seconds, found.sample_rates) == (6.0, (16000, 44100))
    assert found.sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert model_card.read_manifest(tmp_path / "clips") is None
    # And an unreadable manifest is left out
    manifest.write_text("not json\n")
    assert model_card.read_manifest(tmp_path / "train") is None


def test_a_card_that_cannot_be_written_is_logged_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given facts train.py never passes (no task, no model)
    with caplog.at_level(logging.ERROR, logger=model_card.logger.name):
        # When the card is written / Then nothing is raised, nothing written, and the error is logged
        assert model_card.write_card(tmp_path, about={}, metrics={}) is None
    assert not (tmp_path / model_card.CARD_FILE).exists()
    assert "README.md could not be written" in caplog.text


# --- one tiny run ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_training_run_leaves_a_card_in_the_model_directory(tmp_path: Path) -> None:
    # Given a staged dataset (train and test folders, the manifest above them) and a few steps of training
    dataset = tmp_path / "dataset"
    make_audiofolder(dataset / "train", per_class=6, seed=1)
    make_audiofolder(dataset / "test", per_class=2, seed=2)
    clips = sorted(p for p in dataset.rglob("*") if p.is_file())
    entries = [
        {
            "path": p.relative_to(dataset).as_posix(),
            "split": p.relative_to(dataset).parts[0],
            "duration": sf.info(p).duration,
            "sample_rate": sf.info(p).samplerate,
        }
        for p in clips
    ]
    (dataset / contract.MANIFEST_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    argv = [
        "--model_name_or_path", str(TINY_CONFIG),
        "--train_dir", str(dataset / "train"),
        "--test_dir", str(dataset / "test"),
        "--model_dir", str(tmp_path / "model"),
        "--output_data_dir", str(tmp_path / "output"),
        "--max_length_seconds", "1",
        "--max_steps", "2",
        "--report_to", "none",
        "--disable_tqdm", "true",
        "--dataset_name", "esc50",
    ]  # fmt: skip
    # When it trains
    train.main(argv)
    # Then the model directory has a card whose metadata huggingface_hub reads, with the run's facts
    text = (tmp_path / "model" / model_card.CARD_FILE).read_text()
    card = hub_card(text)
    assert card.license == "cc-by-nc-3.0"
    assert card.pipeline_tag == "audio-classification"
    assert card.base_model is None  # the tiny config starts from random weights
    assert {r.dataset_split for r in card.eval_results or []} == {"validation", "test"}
    metrics = json.loads((tmp_path / "output" / contract.METRICS_FILE).read_text())
    test_result = next(r for r in card.eval_results or [] if r.dataset_split == "test")
    assert test_result.metric_value == pytest.approx(metrics[f"test_{test_result.metric_type}"], abs=1e-6)
    assert "| validation | held out of the training clips |" in text
    assert "Per class, test split" in text
    digest = hashlib.sha256((dataset / contract.MANIFEST_FILE).read_bytes()).hexdigest()
    assert f"(sha256 `{digest}`) lists {len(clips)} clips" in text

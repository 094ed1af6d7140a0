"""The model directory's Hugging Face model card, ``README.md``: standard metadata and a body from the run's facts.

The metadata block (``---`` ... ``---``) is ``huggingface_hub.ModelCardData``'s YAML: ``library_name``,
``pipeline_tag``, ``tags``, ``license``, ``base_model`` (a pretrained Hub checkpoint only), ``datasets``,
``metrics`` and ``model-index`` with each evaluated split's results, as the Hub's model card spec lays them
out. The body says what the model does, what it was trained and evaluated on, per-class results where the
task's report has them, intended use, limitations and the training settings.

``render`` (facts -> text) and everything it calls are pure; ``write_card`` gathers the facts from train.py's
objects and writes the file, and a card that cannot be written is logged, never the end of a trained model.

The ``license`` field is the training data's: the known license of a staging source named by
``--dataset_name`` (``KNOWN_DATASETS``), else ``--dataset_license``, else ``unknown``. The training job cannot
read it from the data: its channels are the staged dataset's split folders, and the manifest (with each clip's
origin, no license) sits above them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from common import audio, contract

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
LIBRARY = "transformers"
AUDIO_CLASSIFICATION = "audio-classification"
SPEECH_RECOGNITION = "automatic-speech-recognition"
# A license the Hub knows that says nothing is known (the Hub's "other" is a named license of one's own).
UNKNOWN_LICENSE = "unknown"
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
# What evaluation.json and the metric names call each evaluated split.
SPLIT_PREFIXES = dict(
    zip((contract.VALIDATION_CHANNEL, contract.TEST_CHANNEL), contract.METRIC_SPLITS, strict=True)
)
# A manifest line's split, its duration and sample rate (staging.pipeline.CheckedClip.manifest_entry).
_MANIFEST_SPLIT, _MANIFEST_DURATION, _MANIFEST_RATE = "split", "duration", "sample_rate"
_MAX_LISTED_LABELS = 200


@dataclass(frozen=True)
class KnownDataset:
    """A dataset the staging tool fetches by name: its title, license (a Hub license id) and home."""

    title: str
    license: str
    url: str
    note: str = ""


KNOWN_DATASETS = {
    "esc50": KnownDataset(
        "ESC-50",
        "cc-by-nc-3.0",
        "https://github.com/karolpiczak/ESC-50",
        "CC BY-NC 3.0: non-commercial use only",
    ),
    "fsd50k": KnownDataset(
        "FSD50K",
        "cc-by-4.0",
        "https://zenodo.org/records/4060432",
        "CC BY 4.0 as a whole; each clip keeps its own Creative Commons license, some of them "
        "non-commercial (see the dataset's LICENSE and per-clip license files)",
    ),
    "librispeech": KnownDataset("LibriSpeech", "cc-by-4.0", "https://www.openslr.org/12", "CC BY 4.0"),
    "commonvoice": KnownDataset(
        "Common Voice", "cc0-1.0", "https://commonvoice.mozilla.org/datasets", "CC0 1.0 (public domain)"
    ),
}


@dataclass(frozen=True)
class SplitFacts:
    """One split the run read: where its clips came from, how many and how long, how many files were skipped."""

    name: str
    source: str
    clips: int
    seconds: float
    skipped: int = 0


@dataclass(frozen=True)
class ManifestFacts:
    """The staged dataset's manifest.jsonl, when the training folder sits in a staged dataset."""

    path: str
    sha256: str
    clips: Mapping[str, int]  # per split
    seconds: float
    sample_rates: tuple[int, ...]


@dataclass(frozen=True)
class MetricFacts:
    """A metric of the task, with its direction and what it measures."""

    name: str
    higher_is_better: bool
    description: str


@dataclass(frozen=True)
class CardFacts:
    """Everything the card says, gathered from one training run."""

    model_name: str
    task: str
    task_summary: str
    pipeline_tag: str
    architecture: str
    model_type: str
    source: str  # --model_name_or_path
    pretrained: bool
    hub_model: bool  # ``source`` is a Hugging Face model id, not a local folder
    feature_encoder: str
    labels: tuple[str, ...]
    window_seconds: float
    hop_seconds: float
    splits: tuple[SplitFacts, ...]
    metrics: Mapping[str, float]
    task_metrics: tuple[MetricFacts, ...]
    objective: str = ""  # the metric that picked the best checkpoint, e.g. eval_f1
    reports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # split -> the task's report
    dataset_name: str = ""
    dataset_license: str = ""
    manifest: ManifestFacts | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    health_fired: tuple[str, ...] = ()
    intended_use: str = ""  # the task's words (Task.card_use)
    task_limitation: str = ""  # the task's words (Task.card_limitation)
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def dataset(self) -> KnownDataset | None:
        return KNOWN_DATASETS.get(self.dataset_name.lower())

    @property
    def base_model(self) -> str | None:
        """The Hub checkpoint the model was fine-tuned from; None for a local folder or random weights."""
        return self.source if self.pretrained and self.hub_model else None

    @property
    def speech(self) -> bool:
        return self.pipeline_tag == SPEECH_RECOGNITION


# --- metadata ----------------------------------------------------------------------------------------


def card_license(facts: CardFacts) -> tuple[str, str | None]:
    """The ``license`` field (a Hub license id) and, for a license that is not an id, ``license_name``."""
    given = facts.dataset_license.strip()
    if not given:
        return (facts.dataset.license if facts.dataset else UNKNOWN_LICENSE), None
    if _LICENSE_ID.fullmatch(given.lower()):
        return given.lower(), None
    slug = re.sub(r"[^a-z0-9]+", "-", given.lower()).strip("-") or "custom"
    return "other", slug


def eval_results(facts: CardFacts) -> list[EvalResult]:
    """``model-index`` results: every task metric of each evaluated split (validation, test)."""
    known = facts.dataset
    dataset_type = facts.dataset_name or "audiofolder"
    dataset_title = known.title if known else facts.dataset_name or "staged audiofolder dataset"
    results = []
    for split, prefix in SPLIT_PREFIXES.items():
        for metric in facts.task_metrics:
            value = facts.metrics.get(f"{prefix}_{metric.name}")
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type=facts.pipeline_tag,
                    task_name=facts.task_summary.split(":")[0].strip() or facts.task,
                    dataset_type=dataset_type,
                    dataset_name=dataset_title,
                    dataset_split=split,
                    metric_type=metric.name,
                    metric_value=round(float(value), 6),
                    metric_name=f"{split} {metric.name}",
                )
            )
    return results


def metadata(facts: CardFacts) -> ModelCardData:
    """The card's metadata block, as huggingface_hub writes it."""
    license_id, license_name = card_license(facts)
    tags = list(dict.fromkeys(["audio", facts.pipeline_tag, facts.task, facts.model_type, "acoustic-shield"]))
    results = eval_results(facts)
    return ModelCardData(
        library_name=LIBRARY,
        pipeline_tag=facts.pipeline_tag,
        tags=[tag for tag in tags if tag],
        license=license_id,
        license_name=license_name,
        base_model=facts.base_model,
        datasets=[facts.dataset_name] if facts.dataset_name else None,
        metrics=[metric.name for metric in facts.task_metrics] or None,
        model_name=facts.model_name,
        eval_results=results or None,
    )


# --- body --------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A markdown table cell: pipes escaped, one line."""
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else _cell(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _overview(facts: CardFacts) -> list[str]:
    if facts.pretrained and facts.hub_model:
        base = f"[`{facts.source}`](https://huggingface.co/{facts.source}), pretrained weights"
    elif facts.pretrained:
        base = f"the local checkpoint `{facts.source}`, pretrained weights"
    else:
        base = f"random weights from the configuration `{facts.source}` (no pretrained weights)"
    outputs = (
        f"a vocabulary of {len(facts.labels)} tokens (CTC)" if facts.speech else f"{len(facts.labels)} labels"
    )
    license_id, license_name = card_license(facts)
    return [
        f"# {facts.model_name}",
        "",
        f"A `{facts.architecture}` model ({facts.model_type}) trained with AcousticShield for the `{facts.task}` "
        f"task, with {outputs}.",
        "",
        f"- **Task:** `{facts.task}`, {facts.pipeline_tag}. {facts.task_summary}".rstrip(),
        f"- **Base model:** {base}",
        f"- **Feature encoder:** {facts.feature_encoder}",
        f"- **Input:** {audio.TARGET_SAMPLE_RATE // 1000} kHz mono audio, read in windows of "
        f"{facts.window_seconds:g} s (hop {facts.hop_seconds:g} s)",
        f"- **License:** `{license_name or license_id}`, the training data's ({_license_source(facts)})",
    ]


def _license_source(facts: CardFacts) -> str:
    if facts.dataset_license.strip():
        return "--dataset_license"
    if facts.dataset:
        return f"{facts.dataset.title}: {facts.dataset.note}"
    return "not given: pass --dataset_license or a known --dataset_name"


def _labels(facts: CardFacts) -> list[str]:
    shown = [f"`{label}`" for label in facts.labels[:_MAX_LISTED_LABELS]]
    more = (
        f" and {len(facts.labels) - _MAX_LISTED_LABELS} more"
        if len(facts.labels) > _MAX_LISTED_LABELS
        else ""
    )
    what = "Output vocabulary" if facts.speech else "Labels"
    return ["## " + what, "", ", ".join(shown) + more]


def _training_data(facts: CardFacts) -> list[str]:
    known = facts.dataset
    if known:
        intro = f"[{known.title}]({known.url}) (`{facts.dataset_name}`), license {known.note}."
    elif facts.dataset_name:
        intro = f"`{facts.dataset_name}`."
    else:
        intro = "a staged audiofolder dataset (no --dataset_name given)."
    lines = ["## Training data", "", "Trained and evaluated on " + intro, ""]
    rows = [
        (split.name, f"`{split.source}`" if split.source.startswith("/") else split.source, split.clips,
         _duration(split.seconds), split.skipped)
        for split in facts.splits
    ]  # fmt: skip
    lines += _table(("Split", "Clips from", "Clips", "Duration", "Files skipped"), rows)
    lines.append("")
    manifest = facts.manifest
    if manifest is not None:
        per_split = ", ".join(f"{name} {count}" for name, count in manifest.clips.items())
        recorded = f", {_duration(manifest.seconds)}" if manifest.seconds else ""
        if manifest.sample_rates:
            recorded += ", recorded at " + ", ".join(f"{rate} Hz" for rate in manifest.sample_rates)
        lines.append(
            f"The staged dataset's manifest `{manifest.path}` (sha256 `{manifest.sha256}`) lists "
            f"{sum(manifest.clips.values())} clips ({per_split}){recorded}."
        )
    else:
        lines.append(
            "The clips came from the training job's channels (their S3 locations are in the training job's "
            "description and the model package's model card); no staged manifest was beside them."
        )
    return lines


def _evaluation(facts: CardFacts) -> list[str]:
    lines = ["## Evaluation", ""]
    evaluated = [split for split, prefix in SPLIT_PREFIXES.items() if f"{prefix}_loss" in facts.metrics]
    evaluated = evaluated or [
        split
        for split, prefix in SPLIT_PREFIXES.items()
        if any(f"{prefix}_{m.name}" in facts.metrics for m in facts.task_metrics)
    ]
    if facts.objective:
        lines += [f"The model is the checkpoint with the best validation `{facts.objective}`.", ""]
    rows = []
    for name, higher, description in [
        ("loss", False, "the training objective on the split"),
        *((m.name, m.higher_is_better, m.description) for m in facts.task_metrics),
    ]:
        values = [facts.metrics.get(f"{SPLIT_PREFIXES[split]}_{name}") for split in evaluated]
        if any(value is not None for value in values):
            direction = "higher is better" if higher else "lower is better"
            rows.append((name, *(_number(v) for v in values), f"{description} ({direction})"))
    lines += _table(("Metric", *evaluated, "Meaning"), rows)
    for split in reversed(evaluated):  # the test split's details, else validation's
        details = report_details(split, facts.reports.get(split) or {})
        if details:
            return [*lines, "", *details]
    return lines


def report_details(split: str, report: Mapping[str, Any]) -> list[str]:
    """What a task's report (evaluation.json) says beyond the metrics: per-class precision, recall and F1
    (classification, per clip), per-label average precision and threshold (multilabel), error counts
    (speech); nothing for a report of another shape."""
    per_class = (
        (report.get("clip") or {}).get("per_class") if isinstance(report.get("clip"), Mapping) else None
    )
    if isinstance(per_class, Mapping):
        rows = [
            (
                label,
                _number(v.get("precision")),
                _number(v.get("recall")),
                _number(v.get("f1")),
                _number(v.get("support")),
            )
            for label, v in per_class.items()
            if isinstance(v, Mapping)
        ]
        return [
            f"Per class, {split} split (clips, each answered from its windows as the endpoint answers):",
            "",
            *_table(("Label", "Precision", "Recall", "F1", "Clips"), rows),
        ]
    per_label = report.get("per_label")
    if isinstance(per_label, list):
        label_rows = [
            (
                e.get("label"),
                _number(e.get("average_precision")),
                _number(e.get("threshold")),
                _number(e.get("positives")),
            )
            for e in per_label
            if isinstance(e, Mapping)
        ]
        lines = [
            f"Per label, {split} split, worst average precision first (thresholds chosen on validation):",
            "",
            *_table(("Label", "Average precision", "Threshold", "Positive clips"), label_rows),
        ]
        missing = report.get("without_positives") or []
        if missing:
            lines += [
                "",
                f"Without a positive clip in this split (left out of the mean): {len(missing)} labels.",
            ]
        return lines
    if "words" in report and "wer" in report:
        return [
            f"{split.capitalize()} split: WER {_number(report.get('wer'))}, CER {_number(report.get('cer'))} over "
            f"{report.get('utterances')} utterances and {report.get('words')} words "
            f"({report.get('substitutions')} substituted, {report.get('deletions')} deleted, "
            f"{report.get('insertions')} inserted); text normalized: {report.get('normalization', 'as evaluated')}."
        ]
    return []


def _intended_use(facts: CardFacts) -> list[str]:
    use = facts.intended_use
    return ["## Intended use", "", use, "", "Load it with `transformers` like any checkpoint of its class."]


def limitations(facts: CardFacts) -> list[str]:
    """The card's list of limitations, from the task, the weights, the data and the run's health."""
    found = [facts.task_limitation] if facts.task_limitation else []
    evaluated = sum(split.clips for split in facts.splits if split.name in SPLIT_PREFIXES)
    found.append(
        f"The metrics describe the evaluated splits only ({evaluated} clips); other microphones, noise, "
        "rooms, speakers or clip lengths may score lower."
    )
    if not facts.pretrained:
        found.append(
            "It started from random weights: far weaker than a fine-tuned pretrained checkpoint, unless trained "
            "on a lot of data."
        )
    license_id, _ = card_license(facts)
    if license_id == UNKNOWN_LICENSE:
        found.append(
            "The training data's license was not given: check it before sharing or using this model."
        )
    else:
        found.append(
            f"The training data's license ({license_id}) may bind how the model can be used"
            + (" (non-commercial)" if "-nc" in license_id else "")
            + "; the card's license is the data's, not a grant of its own."
        )
    skipped = sum(split.skipped for split in facts.splits)
    if skipped:
        found.append(f"{skipped} files of the data folders were skipped (unreadable, too short or too long).")
    found += [f"Training health: {rule}." for rule in facts.health_fired]
    return ["## Limitations", "", *(f"- {item}" for item in found)]


def _training_procedure(facts: CardFacts) -> list[str]:
    lines = ["## Training procedure", "", "### Hyperparameters", ""]
    rows = [(name, f"{v:g}" if isinstance(v, float) else v) for name, v in facts.hyperparameters.items()]
    lines += _table(("Setting", "Value"), rows)
    if facts.versions:
        lines += ["", "### Framework versions", ""]
        lines += [f"- {name} {version}" for name, version in facts.versions.items()]
    return lines


def body(facts: CardFacts) -> str:
    sections = [
        _overview(facts),
        _labels(facts),
        _training_data(facts),
        _evaluation(facts),
        _intended_use(facts),
        limitations(facts),
        _training_procedure(facts),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def render(facts: CardFacts) -> str:
    """The whole README.md: the metadata block, then the body."""
    return f"---\n{metadata(facts).to_yaml()}\n---\n\n{body(facts)}"


# --- facts from a run ------------------------------------------------------------------------------------


def pipeline_tag(task: Any) -> str:
    """The Hub's pipeline tag of a task: speech recognition for a CTC model, else audio classification."""
    if getattr(task, "auto_model", "") == "AutoModelForCTC" or task.finetuning_task == SPEECH_RECOGNITION:
        return SPEECH_RECOGNITION
    return AUDIO_CLASSIFICATION


def task_summary(task: Any) -> str:
    """The first line of the task module's docstring (``tasks/classification.py``: what the task does)."""
    doc = (getattr(sys.modules.get(type(task).__module__), "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def read_manifest(train_root: Path) -> ManifestFacts | None:
    """The manifest of the staged dataset whose ``train`` folder is ``train_root``, summarized; None when there
    is none (a training job's channel: the manifest is not in it) or it cannot be read."""
    path = train_root.parent / contract.MANIFEST_FILE
    if train_root.name != contract.TRAIN_CHANNEL or not path.is_file():
        return None
    try:
        data = path.read_bytes()
        entries = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        clips = Counter(str(entry[_MANIFEST_SPLIT]) for entry in entries)
        seconds = sum(float(entry.get(_MANIFEST_DURATION) or 0.0) for entry in entries)
        rates = sorted({int(entry[_MANIFEST_RATE]) for entry in entries if entry.get(_MANIFEST_RATE)})
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("model card: the manifest %s is unreadable (%s); the card leaves it out", path, err)
        return None
    order = {name: i for i, name in enumerate(contract.DATASET_CHANNELS)}
    return ManifestFacts(
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        clips=dict(sorted(clips.items(), key=lambda item: order.get(item[0], len(order)))),
        seconds=seconds,
        sample_rates=tuple(rates),
    )


def split_facts(splits: Mapping[str, Any]) -> tuple[SplitFacts, ...]:
    """Each split the run read (``audiofolder.Split``: train, validation, test; background noise left out);
    a validation split held out of the training clips says so."""
    train = splits.get(contract.TRAIN_CHANNEL)
    found = []
    for name in contract.DATASET_CHANNELS:
        split = splits.get(name)
        if split is None:
            continue
        held_out = name != contract.TRAIN_CHANNEL and train is not None and split.root == train.root
        found.append(
            SplitFacts(
                name=name,
                source="held out of the training clips" if held_out else str(split.root),
                clips=len(split.clips),
                seconds=sum(clip.num_samples for clip in split.clips) / audio.TARGET_SAMPLE_RATE,
                skipped=len(split.skipped),
            )
        )
    return tuple(found)


_TRAINING_SETTINGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_ratio",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
)


def hyperparameters(training: Any, about: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that made the model: the Trainer's, precision and devices, and train.py's own (window,
    augmentation, early stopping) as evaluation.json records them."""
    found: dict[str, Any] = {}
    for name in _TRAINING_SETTINGS:
        value = getattr(training, name, None)
        if value is None or (name in ("max_steps", "warmup_steps") and not value):
            continue
        found[name] = getattr(value, "value", value)
    devices = int(getattr(training, "world_size", 1) or 1)
    found["devices"] = devices
    found["total_train_batch_size"] = (
        int(getattr(training, "per_device_train_batch_size", 0) or 0)
        * int(getattr(training, "gradient_accumulation_steps", 1) or 1)
        * devices
    )
    found["precision"] = (
        "bf16" if getattr(training, "bf16", False) else "fp16" if getattr(training, "fp16", False) else "fp32"
    )
    found["max_length_seconds"] = about.get(contract.WINDOW_SECONDS_KEY)
    clip_seconds = about.get("clip_seconds") or {}
    found["clip_seconds"] = f"{clip_seconds.get('min', 0):g} to {clip_seconds.get('max', 0):g}"
    augmentation = about.get("augmentation")
    found["augmentation"] = (
        ", ".join(f"{name} {value}" for name, value in sorted(augmentation.items()))
        if augmentation
        else "off"
    )
    if about.get("mix_probability"):
        found["mix_probability"] = about["mix_probability"]
    stopping = about.get("early_stopping") or {}
    if stopping.get("patience"):
        found["early_stopping_patience"] = stopping["patience"]
        found["stopped_early"] = str(bool(stopping.get("stopped_early"))).lower()
    found["epochs_trained"] = stopping.get("epochs_trained")
    found["global_step"] = about.get("global_step")
    if about.get("best_checkpoint"):
        found["best_checkpoint"] = about["best_checkpoint"]
    return {name: value for name, value in found.items() if value is not None}


def fired_health_rules(about: Mapping[str, Any]) -> tuple[str, ...]:
    """Each training-health rule that fired in the run, with its value, threshold and advice."""
    rules = ((about.get(contract.HEALTH_REPORT) or {}).get("rules")) or {}
    found = []
    for rule, outcome in rules.items():
        if isinstance(outcome, Mapping) and outcome.get("status") == "fired":
            details = ", ".join(
                f"{key} {_number(outcome[key])}"
                for key in ("value", "threshold", "step")
                if outcome.get(key) is not None
            )
            advice = f"; {outcome['advice']}" if outcome.get("advice") else ""
            found.append(f"{rule} fired ({details}){advice}" if details else f"{rule} fired{advice}")
    return tuple(found)


def versions() -> dict[str, str]:
    """The libraries that trained the model, those loaded."""
    found = {}
    for module, name in (
        ("transformers", "Transformers"),
        ("torch", "PyTorch"),
        ("huggingface_hub", "huggingface_hub"),
    ):
        version = getattr(sys.modules.get(module), "__version__", None)
        if version:
            found[name] = str(version)
    return found


def run_facts(
    *,
    about: Mapping[str, Any],
    metrics: Mapping[str, float],
    reports: Mapping[str, Any],
    splits: Mapping[str, Any],
    labels: Sequence[str],
    task: Any,
    training: Any,
    data: Any,
    model: Any,
) -> CardFacts:
    """The card's facts from train.py's objects: evaluation.json's account of the run (``about``), the metrics,
    each split's report (by evaluation prefix, ``eval`` and ``test``), the splits, the model's outputs, the
    task, the Trainer's and train.py's arguments and the model."""
    source = str(about.get("model_name_or_path", ""))
    encoder = about.get("feature_encoder") or {}
    train = splits.get(contract.TRAIN_CHANNEL)
    names = {prefix: split for split, prefix in SPLIT_PREFIXES.items()}
    return CardFacts(
        model_name=os.environ.get("TRAINING_JOB_NAME") or f"acoustic-shield-{about.get(contract.TASK_KEY)}",
        task=str(about.get(contract.TASK_KEY, "")),
        task_summary=task_summary(task),
        pipeline_tag=pipeline_tag(task),
        architecture=type(model).__name__,
        model_type=str(getattr(model.config, "model_type", "") or ""),
        source=source,
        pretrained=bool(about.get("pretrained")),
        hub_model=bool(source) and not Path(source).expanduser().exists(),
        feature_encoder=f"{'frozen' if encoder.get('frozen') else 'trained'}: {encoder.get('reason', '')}",
        labels=tuple(labels),
        window_seconds=float(about.get(contract.WINDOW_SECONDS_KEY) or 0.0),
        hop_seconds=float(about.get(contract.HOP_SECONDS_KEY) or 0.0),
        splits=split_facts(splits),
        metrics=dict(metrics),
        task_metrics=tuple(MetricFacts(m.name, m.higher_is_better, m.description) for m in task.metrics),
        objective=str(getattr(training, "metric_for_best_model", "") or "")
        if getattr(training, "load_best_model_at_end", False)
        else "",
        reports={names[prefix]: report for prefix, report in reports.items() if prefix in names},
        dataset_name=str(getattr(data, "dataset_name", "") or ""),
        dataset_license=str(getattr(data, "dataset_license", "") or ""),
        manifest=read_manifest(Path(train.root)) if train is not None else None,
        hyperparameters=hyperparameters(training, about),
        health_fired=fired_health_rules(about),
        intended_use=task.card_use(labels, _window_words(about)),
        task_limitation=task.card_limitation(labels),
        versions=versions(),
    )


def _window_words(about: Mapping[str, Any]) -> str:
    window = float(about.get(contract.WINDOW_SECONDS_KEY) or 0.0)
    hop = float(about.get(contract.HOP_SECONDS_KEY) or 0.0)
    return f"windows of {window:g} s (hop {hop:g} s)"


def write_card(model_dir: Path, **run: Any) -> Path | None:
    """Writes ``README.md`` into the model directory from the run's facts (``run_facts``' arguments); returns
    its path. A card that cannot be written is logged as an error and the model directory stays as it is:
    documentation never costs a trained model."""
    try:
        text = render(run_facts(**run))
        path = Path(model_dir) / CARD_FILE
        path.write_text(text, encoding="utf-8")
    except Exception:
        logger.exception("model card: README.md could not be written; the model directory has no card")
        return None
    logger.info("wrote the model card %s", path)
    return path

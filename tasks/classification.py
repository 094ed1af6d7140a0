"""Single-label audio classification: one label per clip, softmax over the labels.

Dataset: the audiofolder layout, a clip's label is its folder. Head: ``AutoModelForAudioClassification``
with cross-entropy. A clip's answer is the mean of its windows' probabilities. Metrics per split: accuracy
and macro F1 per window, and per clip (what the endpoint answers); the gate checks accuracy, F1 and clip
accuracy. Answer: ``{"label", "confidence", "probs"}``; a window's: ``{"label", "confidence"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import Metric, SplitScores, Task, is_probability

if TYPE_CHECKING:
    import numpy as np

# The answer's keys (tools/verify.py checks an endpoint's answer by them).
LABEL_KEY, CONFIDENCE_KEY, PROBS_KEY = "label", "confidence", "probs"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities from logits, in float64, numerically stable."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    # Macro-F1 over the labels present in truth or prediction: a class absent from a small split
    # would otherwise count as an F1 of zero.
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _level_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "count": len(y_true),
        **_scores(y_true, y_pred),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        # rows: true label, columns: predicted label, both in `labels` order
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def plot_confusion_matrix(matrix: list[list[int]], labels: Sequence[str], path: Path, title: str) -> None:
    """Writes the confusion matrix as a PNG (rows: true label, columns: predicted)."""
    import numpy as np
    from matplotlib.figure import Figure

    values = np.asarray(matrix)
    side = max(4.0, 0.6 * len(labels) + 2.5)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = values.max() / 2 if values.size else 0
    for (row, col), value in np.ndenumerate(values):
        ax.text(
            col, row, str(value), ha="center", va="center", color="white" if value > threshold else "black"
        )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


_SUM_TOLERANCE = 1e-3


def check_answer(response: dict[str, Any], labels: Sequence[str] | None) -> list[str]:
    """What is wrong with an answer ``{"label", "confidence", "probs"}`` (of the model with ``labels``,
    when known); empty when nothing is."""
    problems = []
    label, confidence, probs = response.get(LABEL_KEY), response.get(CONFIDENCE_KEY), response.get(PROBS_KEY)
    if not isinstance(label, str):
        problems.append(f"'label' is {label!r}, not a string")
    if not is_probability(confidence):
        problems.append(f"'confidence' is {confidence!r}, not a probability")
    if not (isinstance(probs, dict) and probs and all(is_probability(p) for p in probs.values())):
        problems.append(f"'probs' is {probs!r}, not an object of label probabilities")
        return problems
    if abs(sum(probs.values()) - 1.0) > _SUM_TOLERANCE:
        problems.append(f"'probs' sum to {sum(probs.values()):.4f}, not 1")
    if isinstance(label, str):
        problems += _label_against_probs(label, confidence, probs)
    if labels is not None:
        problems += _against_model_labels(label, probs, labels)
    return problems


def _label_against_probs(label: str, confidence: Any, probs: dict[str, Any]) -> list[str]:
    """The label must be the most probable one, and the confidence its probability."""
    if label not in probs:
        return [f"'label' {label!r} is not among the labels of 'probs'"]
    if probs[label] != max(probs.values()):
        return [f"'label' {label!r} is not the most probable label"]
    if isinstance(confidence, int | float) and abs(confidence - probs[label]) > _SUM_TOLERANCE:
        return [f"'confidence' {confidence} is not the probability of {label!r} ({probs[label]})"]
    return []


def _against_model_labels(label: Any, probs: dict[str, Any], labels: Sequence[str]) -> list[str]:
    """The answer's labels must be the model's: other ones mean the endpoint serves another model."""
    problems = []
    if isinstance(label, str) and label not in labels:
        problems.append(f"label {label!r} is not one of the model's labels ({', '.join(labels)})")
    if set(probs) != set(labels):
        problems.append(
            f"'probs' lists {sorted(probs)}, the model's labels are {sorted(labels)}: "
            "the endpoint serves another model"
        )
    return problems


class Classification(Task):
    name = "classification"
    metrics = (
        Metric("accuracy", True, "share of windows whose most probable label is the true one"),
        Metric("f1", True, "macro F1 over windows"),
        Metric("clip_accuracy", True, "share of clips answered right (windows averaged, as the endpoint)"),
        Metric("clip_f1", True, "macro F1 over clips"),
    )
    objective = "f1"
    gated = ("accuracy", "f1", "clip_accuracy")
    finetuning_task = "audio-classification"

    def labels(self, clip_labels: Sequence[str]) -> list[str]:
        return sorted(set(clip_labels))

    def target(self, label: str, labels: Sequence[str]) -> int:
        return list(labels).index(label)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def pool(self, window_scores: np.ndarray) -> np.ndarray:
        """The mean of the windows' probabilities, renormalized."""
        import numpy as np

        clip = np.asarray(window_scores, dtype=np.float64).mean(axis=0)
        return clip / clip.sum()

    def split_metrics(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, float]:
        window = _scores(scores.window_targets, scores.window.argmax(axis=-1))
        clip = _scores(scores.clip_targets, scores.clip.argmax(axis=-1))
        return {**window, "clip_accuracy": clip["accuracy"], "clip_f1": clip["f1"]}

    def report(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        """Scores, per-class precision/recall/F1 and confusion matrices, per window and per clip."""
        return {
            "labels": list(labels),
            "window": _level_report(scores.window_targets, scores.window.argmax(axis=-1), labels),
            "clip": _level_report(scores.clip_targets, scores.clip.argmax(axis=-1), labels),
        }

    def card_use(self, labels: Sequence[str], window: str) -> str:
        return (
            f"Telling which of the {len(labels)} labels a short audio clip belongs to, on recordings like the "
            f"training clips, over {window} whose scores are averaged, through the AcousticShield endpoint (the "
            "handler in the model directory's `code/`), which answers the label, its confidence and every "
            "label's probability."
        )

    def card_limitation(self, labels: Sequence[str]) -> str:
        return (
            "It always answers one of its labels: a sound outside them gets the closest one. There is no "
            '"none of these" answer; use the confidence to refuse uncertain clips.'
        )

    def plot(self, report: dict[str, Any], directory: Path, split: str) -> Path:
        """The clip-level confusion matrix: ``confusion_matrix_<split>.png``."""
        path = directory / f"confusion_matrix_{split}.png"
        plot_confusion_matrix(
            report["clip"]["confusion_matrix"], report["labels"], path, f"{split}: clip level"
        )
        return path

    def answer(self, clip_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        best = int(clip_scores.argmax())
        return {
            LABEL_KEY: labels[best],
            CONFIDENCE_KEY: float(clip_scores[best]),
            PROBS_KEY: {label: float(p) for label, p in zip(labels, clip_scores, strict=True)},
        }

    def check_answer(self, answer: dict[str, Any], labels: Sequence[str] | None) -> list[str]:
        return check_answer(answer, labels)

    def window_answer(self, window_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        best = int(window_scores.argmax())
        return {LABEL_KEY: labels[best], CONFIDENCE_KEY: float(window_scores[best])}


TASK = Classification()

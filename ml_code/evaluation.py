"""Window-level and clip-level classification metrics, the evaluation report and its plot.

Window level scores each evaluation window on its own; clip level averages the window probabilities
of each clip first, which is what the endpoint answers. For clips no longer than one window the two
are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

if __package__:
    from . import inference
else:  # run from the source dir, as the SageMaker containers do
    import inference  # type: ignore[no-redef]


def clip_probabilities(logits: np.ndarray, clip_ids: np.ndarray, num_clips: int) -> np.ndarray:
    """Each clip's answer as the endpoint computes it: (n_windows, C) window logits -> (num_clips, C).

    A clip without windows (none in practice: every clip has at least one) gets all zeros.
    """
    probs = inference.softmax(logits)
    clips = np.zeros((num_clips, probs.shape[1]))
    for clip in np.unique(clip_ids):
        clips[clip] = inference.clip_probabilities(probs[clip_ids == clip])
    return clips


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    # Macro-F1 over the labels present in truth or prediction: a class absent from a small split
    # would otherwise count as an F1 of zero.
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def summary(
    logits: np.ndarray, window_labels: np.ndarray, clip_ids: np.ndarray, clip_labels: np.ndarray
) -> dict[str, float]:
    """``accuracy``/``f1`` per window and ``clip_accuracy``/``clip_f1`` per clip."""
    window = _scores(window_labels, logits.argmax(axis=-1))
    clip_pred = clip_probabilities(logits, clip_ids, len(clip_labels)).argmax(axis=-1)
    clip = _scores(clip_labels, clip_pred)
    return {**window, "clip_accuracy": clip["accuracy"], "clip_f1": clip["f1"]}


def _level_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
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


def report(
    logits: np.ndarray,
    window_labels: np.ndarray,
    clip_ids: np.ndarray,
    clip_labels: np.ndarray,
    labels: list[str],
) -> dict[str, Any]:
    """The full report of one split: scores, per-class precision/recall/F1 and confusion matrices."""
    clip_pred = clip_probabilities(logits, clip_ids, len(clip_labels)).argmax(axis=-1)
    return {
        "labels": labels,
        "window": _level_report(window_labels, logits.argmax(axis=-1), labels),
        "clip": _level_report(clip_labels, clip_pred, labels),
    }


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    """Writes the confusion matrix as a PNG (rows: true label, columns: predicted)."""
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

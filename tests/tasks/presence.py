"""A task defined only in the tests: is a tone present, or only noise?

It differs from classification wherever a task can: one output with a sigmoid and binary cross-entropy
(float targets), windows pooled by their maximum, a lower-is-better metric that the gate checks, and its own
answer. The shared training, gate and serving code run it without knowing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tasks import Metric, SplitScores, Task

ABSENT = "noise"  # the audiofolder label of clips without a tone (noise alone)


class Presence(Task):
    name = "presence"
    metrics = (
        Metric("error_rate", False, "share of windows whose presence is answered wrong"),
        Metric("clip_error_rate", False, "share of clips answered wrong"),
    )
    objective = "error_rate"
    gated = ("error_rate",)
    finetuning_task = "audio-presence"

    def labels(self, clip_labels: Sequence[str]) -> list[str]:
        return ["present"]

    def target(self, label: str, labels: Sequence[str]) -> np.ndarray:
        return np.array([0.0 if label == ABSENT else 1.0], dtype=np.float32)

    def config_fields(self, labels: Sequence[str]) -> dict[str, Any]:
        return {**super().config_fields(labels), "problem_type": "multi_label_classification"}

    def loss(self) -> Callable[[Any, Any], Any]:
        """Binary cross-entropy on the float targets (the audio heads' own loss is cross-entropy)."""
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits

    def scores(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))

    def pool(self, window_scores: np.ndarray) -> np.ndarray:
        return np.asarray(window_scores, dtype=np.float64).max(axis=0)

    def split_metrics(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, float]:
        return {
            "error_rate": float(np.mean((scores.window > 0.5) != (scores.window_targets > 0.5))),
            "clip_error_rate": float(np.mean((scores.clip > 0.5) != (scores.clip_targets > 0.5))),
        }

    def report(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        return {
            "labels": list(labels),
            **self.split_metrics(scores, labels),
        }

    def answer(self, clip_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return {"present": bool(clip_scores[0] > 0.5), "probability": float(clip_scores[0])}

    def window_answer(self, window_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return self.answer(window_scores, labels)


TASK = Presence()

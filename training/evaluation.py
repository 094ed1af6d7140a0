"""Evaluating one split as the endpoint answers it, for any task.

Window level scores each evaluation window on its own; clip level pools each clip's window scores with the
task's rule (``Task.pool``), which is the endpoint's: the clip-level metrics score what the endpoint answers.
For clips no longer than one window the two are the same. The metrics and the report are the task's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks import Task


def clip_scores(task: Task, window_scores: np.ndarray, clip_ids: np.ndarray, num_clips: int) -> np.ndarray:
    """Each clip's scores from its windows': (n_windows, outputs) -> (num_clips, outputs).

    A clip without windows (none in practice: every clip has at least one) gets all zeros.
    """
    clips = np.zeros((num_clips, *window_scores.shape[1:]))
    for clip in np.unique(clip_ids):
        clips[clip] = task.pool(window_scores[clip_ids == clip])
    return clips


@dataclass(frozen=True)
class SplitScores:
    """One split's scores per window and per clip, with the targets they are compared with."""

    window: np.ndarray
    window_targets: np.ndarray
    clip: np.ndarray
    clip_targets: np.ndarray

    @classmethod
    def of(
        cls,
        task: Task,
        logits: np.ndarray,
        window_targets: np.ndarray,
        clip_ids: np.ndarray,
        clip_targets: np.ndarray,
    ) -> SplitScores:
        window = task.scores(logits)
        return cls(
            window, window_targets, clip_scores(task, window, clip_ids, len(clip_targets)), clip_targets
        )

    def metrics(self, task: Task, labels: list[str]) -> dict[str, float]:
        return task.split_metrics(self.window, self.window_targets, self.clip, self.clip_targets, labels)

    def report(self, task: Task, labels: list[str]) -> dict[str, Any]:
        return task.report(self.window, self.window_targets, self.clip, self.clip_targets, labels)

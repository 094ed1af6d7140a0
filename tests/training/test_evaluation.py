"""Window-level and clip-level metrics of the classification task, on the tasks' shared split scores."""

from __future__ import annotations

import numpy as np
import pytest

import tasks
from tasks.classification import plot_confusion_matrix

TASK = tasks.load("classification")


def _scores(logits: np.ndarray, clip_ids: np.ndarray, clip_labels: np.ndarray) -> tasks.SplitScores:
    return tasks.SplitScores.of(TASK, logits, clip_labels[clip_ids], clip_ids, clip_labels)


def test_clip_level_averages_window_probabilities_per_clip():
    # Given clip 0 (label 0) with three windows, one of them wrong but unsure, and clip 1 (label 1)
    logits = np.log(
        np.array(
            [
                [0.9, 0.1],  # clip 0
                [0.45, 0.55],  # clip 0: wrong window, barely
                [0.8, 0.2],  # clip 0
                [0.3, 0.7],  # clip 1
            ]
        )
    )
    clip_ids = np.array([0, 0, 0, 1])
    clip_labels = np.array([0, 1])
    # When scored
    scores = _scores(logits, clip_ids, clip_labels)
    metrics = TASK.split_metrics(scores, ["a", "b"])
    # Then the window level counts the wrong window, the clip level does not
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["clip_accuracy"] == 1.0
    assert metrics["clip_f1"] == 1.0
    # And the clip's scores are its windows' mean probabilities, as the endpoint answers
    assert scores.clip[0] == pytest.approx([(0.9 + 0.45 + 0.8) / 3, (0.1 + 0.55 + 0.2) / 3])
    # And every metric the task declares is reported, nothing else
    assert set(metrics) == set(TASK.metric_names)


def test_report_lists_every_label_even_one_absent_from_the_split():
    # Given predictions that never involve label 2
    logits = np.eye(3)[[0, 1, 1]] * 5
    clip_ids = np.arange(3)
    labels = np.array([0, 1, 0])
    # When the report is made
    report = TASK.report(_scores(logits, clip_ids, labels), ["a", "b", "c"])
    # Then label c is there with zero support and the matrix is 3x3 in label order
    assert report["clip"]["per_class"]["c"]["support"] == 0
    assert report["clip"]["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert report["clip"]["per_class"]["a"]["recall"] == 0.5


def test_confusion_matrix_png_is_written(tmp_path):
    # When a matrix is plotted
    plot_confusion_matrix([[3, 1], [0, 4]], ["dog", "cat"], tmp_path / "cm.png", title="test")
    # Then a PNG file exists
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_the_task_draws_each_splits_confusion_matrix_under_its_name(tmp_path):
    # Given a split's report
    report = TASK.report(_scores(np.eye(2)[[0, 1]] * 3, np.arange(2), np.array([0, 1])), ["a", "b"])
    # When the task draws it for the validation split / Then the file is named after the split
    assert TASK.plot(report, tmp_path, "validation") == tmp_path / "confusion_matrix_validation.png"
    assert (tmp_path / "confusion_matrix_validation.png").read_bytes()[:4] == b"\x89PNG"

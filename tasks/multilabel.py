"""Multi-label sound event detection: any number of labels per clip, one sigmoid per label.

Dataset: a split folder's ``metadata.csv`` (``file_name,labels``; labels separated by ``;``, an empty cell
is a clip without any event). Head: ``AutoModelForAudioClassification`` with the multi-label problem type,
trained with binary cross-entropy (the audio heads' own loss is cross-entropy over one label). A clip's
scores are the maximum of its windows' (an event anywhere in the clip is in the clip).

Metrics, per clip (what the endpoint answers): macro mAP (average precision per label, over the labels with
a positive clip in the split), micro and macro F1 at the decision thresholds, and lwlrap (label-weighted
label-ranking average precision, the Freesound/DCASE metric). The best model has the highest validation
mAP; the gate checks mAP and micro F1. After training, each label's threshold is the one that maximizes its
F1 on the validation clips, never below ``THRESHOLD_FLOOR`` (a label without a positive validation clip
keeps ``DEFAULT_THRESHOLD``); the model directory keeps them and the endpoint answers with them.

Answer: ``{"labels": [{"label", "score"}, ...], "scores": {label: score}}``: the labels at or above their
threshold, highest first, and every label's score. Asked for segments, it adds events with times,
``{"label", "start", "end", "score"}``, read from windows every 0.25 s (``segments``); event accuracy is
event-based F1 with a 200 ms onset collar (``event_f1``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import contract
from tasks import Metric, OptionError, SplitScores, Task, TaskError, is_probability

if TYPE_CHECKING:
    import numpy as np

# Events with times: windows every EVENT_HOP_SECONDS when a request asks for segments, each speaking for
# its newest audio (``stretches``); a label's stretches at or above its threshold merge into events (gaps up
# to MERGE_GAP_SECONDS closed), and events shorter than MIN_EVENT_SECONDS dropped.
EVENT_HOP_SECONDS = 0.25
MERGE_GAP_SECONDS = 0.25
MIN_EVENT_SECONDS = 0.25
EVENT_ONSET_COLLAR_SECONDS = 0.2  # event-based F1 (DCASE): an onset within 200 ms of the reference's
DEFAULT_THRESHOLD = 0.5
THRESHOLD_FLOOR = 0.05  # a tuned threshold never goes below this: a label is not answered on noise alone
# The answer's keys.
LABELS_KEY, SCORES_KEY, LABEL_KEY, SCORE_KEY = "labels", "scores", "label", "score"
THRESHOLDS_SETTING, POOLING_SETTING, WEIGHTING_SETTING = "thresholds", "pooling", "positive_weighting"
SETTINGS = (THRESHOLDS_SETTING, POOLING_SETTING, WEIGHTING_SETTING)
POOLINGS = ("max", "mean")
MAX_POSITIVE_WEIGHT = 100.0
# A request's custom attributes the answer takes (``threshold=0.3; top_k=2``).
THRESHOLD_OPTION, TOP_K_OPTION = "threshold", "top_k"


def split_labels(cell: str) -> list[str]:
    """A ``labels`` cell's labels: separated by ``;``, blanks dropped; an empty cell has none."""
    return [label.strip() for label in cell.split(contract.LABEL_SEPARATOR) if label.strip()]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def average_precisions(targets: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """Each label's average precision over the clips; None for a label without a positive clip."""
    from sklearn.metrics import average_precision_score

    return [
        float(average_precision_score(targets[:, c], scores[:, c])) if targets[:, c].any() else None
        for c in range(targets.shape[1])
    ]


def lwlrap(targets: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (the Freesound Audio Tagging / DCASE metric).

    For each positive (clip, label): the share of the labels ranked at or above it in that clip that are
    positive; averaged per label, the labels weighted by their share of all positives. scikit-learn's
    ``label_ranking_average_precision_score`` averages per clip instead (unweighted by label).
    """
    import numpy as np

    targets = np.asarray(targets) > 0
    precisions = np.zeros(targets.shape, dtype=np.float64)
    for row, (truth, score) in enumerate(zip(targets, np.asarray(scores, dtype=np.float64), strict=True)):
        positives = np.flatnonzero(truth)
        if positives.size == 0:
            continue
        ranks = np.empty(score.size, dtype=np.int64)
        ranks[np.argsort(-score, kind="stable")] = np.arange(score.size)
        hits = np.zeros(score.size, dtype=bool)
        hits[ranks[positives]] = True
        cumulative = np.cumsum(hits)
        precisions[row, positives] = cumulative[ranks[positives]] / (1.0 + ranks[positives])
    per_label = targets.sum(axis=0)
    if per_label.sum() == 0:
        return 0.0
    weights = per_label / per_label.sum()
    return float(np.sum(precisions.sum(axis=0) / np.maximum(1, per_label) * weights))


def f1_scores(targets: np.ndarray, decisions: np.ndarray) -> tuple[float, float]:
    """Micro and macro F1 of the decisions (macro over the labels with a positive or a decision)."""
    from sklearn.metrics import f1_score

    micro = float(f1_score(targets, decisions, average="micro", zero_division=0))
    present = (targets.sum(axis=0) + decisions.sum(axis=0)) > 0
    macro = (
        float(f1_score(targets[:, present], decisions[:, present], average="macro", zero_division=0))
        if present.any()
        else 0.0
    )
    return micro, macro


def best_threshold(targets: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximizes one label's F1 over the clips, never below the floor.

    Every threshold between two neighbouring scores decides alike, so the best ones form a stretch: from
    just above the score below the lowest best candidate up to the highest best candidate. The threshold is
    its middle, which leaves the most room on unseen clips both ways (the stretch's top, the highest score
    that still decides best, would miss every positive scoring a little lower).
    """
    import numpy as np

    if not targets.any():
        return DEFAULT_THRESHOLD
    candidates = sorted({*np.round(scores, 6).tolist(), DEFAULT_THRESHOLD})
    f1s = [_f1_at(targets, scores, max(THRESHOLD_FLOOR, c)) for c in candidates]
    best = max(f1s)
    winners = [i for i, f1 in enumerate(f1s) if f1 == best]
    low = candidates[winners[0] - 1] if winners[0] > 0 else THRESHOLD_FLOOR
    return round(max(THRESHOLD_FLOOR, (low + candidates[winners[-1]]) / 2), 6)


def _f1_at(targets: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    decided = scores >= threshold
    positives = targets > 0
    tp = float((decided & positives).sum())
    total = float(decided.sum() + positives.sum())
    return 2 * tp / total if total else 0.0


def stretches(starts: Sequence[int], window: int, total: int) -> list[tuple[int, int]]:
    """The stretch of the recording each window speaks for, in samples: its newest audio, from the previous
    window's end to its own (the first window from 0). A window hears an event once the event has entered it,
    so its evidence is of what just arrived: speaking for its centre instead put onsets a window's quarter or
    more too early (measured on the rehearsal's mixtures: event F1 at 200 ms 0.15 with centres, 0.22 so)."""
    ends = [min(start + window, total) for start in starts]
    return [(0 if i == 0 else ends[i - 1], end) for i, end in enumerate(ends)]


def merge_events(
    spans: Sequence[tuple[int, int]], active: Sequence[bool], scores: Sequence[float], rate: int
) -> list[tuple[float, float, float]]:
    """(start, end, score) in seconds of the runs of active stretches, gaps up to MERGE_GAP_SECONDS closed,
    runs shorter than MIN_EVENT_SECONDS dropped; an event's score is its stretches' highest."""
    runs: list[list[float]] = []
    for (lo, hi), on, score in zip(spans, active, scores, strict=True):
        if not on:
            continue
        if runs and lo - runs[-1][1] <= MERGE_GAP_SECONDS * rate:
            runs[-1][1], runs[-1][2] = hi, max(runs[-1][2], score)
        else:
            runs.append([lo, hi, score])
    return [
        (round(lo / rate, 3), round(hi / rate, 3), float(score))
        for lo, hi, score in runs
        if hi - lo >= MIN_EVENT_SECONDS * rate
    ]


def event_f1(
    reference: Sequence[tuple[str, float, float]],
    estimated: Sequence[tuple[str, float, float]],
    collar: float = EVENT_ONSET_COLLAR_SECONDS,
) -> float:
    """Event-based F1 (DCASE convention, onset only): an estimated event is right when an unmatched reference
    event of its label starts within ``collar`` seconds of it; each reference event matches once."""
    unmatched = list(reference)
    hits = 0
    for label, onset, _ in sorted(estimated, key=lambda event: event[1]):
        match = next(
            (ref for ref in unmatched if ref[0] == label and abs(ref[1] - onset) <= collar + 1e-9), None
        )
        if match is not None:
            unmatched.remove(match)
            hits += 1
    total = len(reference) + len(estimated)
    return 2 * hits / total if total else 1.0


@dataclasses.dataclass(frozen=True)
class MultiLabel(Task):
    """The multi-label task; ``thresholds``: each label's decision threshold (None: 0.5 each)."""

    thresholds: tuple[float, ...] | None = None
    pooling: str = "max"  # how a clip's windows pool (POOLINGS)
    positive_weighting: bool = False  # weight each label's positives by its rarity in the training clips
    positive_weights: tuple[float, ...] | None = None  # set from the training targets (``prepared``)
    threshold_override: float | None = None  # one request's threshold for every label
    top_k: int | None = None  # one request's most labels answered

    name = "multilabel"
    metrics = (
        Metric("map", True, "macro mean average precision over the labels with a positive clip"),
        Metric("micro_f1", True, "F1 over every (clip, label) decision at the thresholds"),
        Metric("macro_f1", True, "F1 per label at its threshold, averaged"),
        Metric("lwlrap", True, "label-weighted label-ranking average precision"),
    )
    objective = "map"
    gated = ("map", "micro_f1")
    staging_sources = ("fsd50k", "folder")
    finetuning_task = "audio-multi-label-classification"
    segment_hop_seconds = EVENT_HOP_SECONDS

    # --- dataset columns and head ------------------------------------------------------------------------
    def labels(self, clip_labels: Sequence[str]) -> list[str]:
        return sorted({label for cell in clip_labels for label in split_labels(cell)})

    def target(self, label: str, labels: Sequence[str]) -> np.ndarray:
        import numpy as np

        target = np.zeros(len(labels), dtype=np.float32)
        index = {name: i for i, name in enumerate(labels)}
        for name in split_labels(label):
            target[index[name]] = 1.0
        return target

    def mix(self, target: Any, other: Any) -> Any:
        """Two clips laid over each other hold both clips' labels."""
        import numpy as np

        return np.maximum(target, other)

    def config_fields(self, labels: Sequence[str]) -> dict[str, Any]:
        return {**super().config_fields(labels), "problem_type": "multi_label_classification"}

    def loss(self) -> Callable[[Any, Any], Any]:
        """Binary cross-entropy per label; with positive weighting each label's positives count
        ``negatives / positives`` times (from the training clips, at most MAX_POSITIVE_WEIGHT)."""
        import functools

        import torch

        if self.positive_weights is None:
            return torch.nn.functional.binary_cross_entropy_with_logits
        weights = torch.tensor(self.positive_weights, dtype=torch.float32)

        def weighted(logits: Any, targets: Any) -> Any:
            loss = functools.partial(
                torch.nn.functional.binary_cross_entropy_with_logits, pos_weight=weights.to(logits.device)
            )
            return loss(logits, targets)

        return weighted

    def prepared(self, train_targets: np.ndarray) -> MultiLabel:
        """With positive weighting: each label's weight, ``negatives / positives`` over the training clips."""
        import numpy as np

        if not self.positive_weighting:
            return self
        positives = np.asarray(train_targets).sum(axis=0)
        negatives = len(train_targets) - positives
        weights = np.clip(negatives / np.maximum(positives, 1), 1.0, MAX_POSITIVE_WEIGHT)
        return dataclasses.replace(self, positive_weights=tuple(round(float(w), 4) for w in weights))

    # --- outputs and settings ------------------------------------------------------------------------------
    def scores(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def pool(self, window_scores: np.ndarray) -> np.ndarray:
        """By default the loudest window decides (an event anywhere in the clip is in the clip); with
        ``pooling`` "mean", the windows' mean."""
        import numpy as np

        windows = np.asarray(window_scores, dtype=np.float64)
        return windows.mean(axis=0) if self.pooling == "mean" else windows.max(axis=0)

    def fit(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        """Each label's threshold: the best F1 over the validation clips (``best_threshold``)."""
        thresholds = [
            best_threshold(scores.clip_targets[:, c], scores.clip[:, c]) for c in range(len(labels))
        ]
        return {THRESHOLDS_SETTING: [round(t, 6) for t in thresholds]}

    def configured(self, settings: Mapping[str, Any]) -> MultiLabel:
        """``thresholds`` (one per label, from ``fit``), ``pooling`` (max or mean) and ``positive_weighting``
        (true or false); anything else is refused, naming what is taken."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TaskError(
                f"the multilabel task takes the settings {', '.join(SETTINGS)}; not {', '.join(unknown)}"
            )
        changes: dict[str, Any] = {}
        thresholds = settings.get(THRESHOLDS_SETTING)
        if thresholds is not None:
            if not (isinstance(thresholds, list | tuple) and all(_fraction(t) for t in thresholds)):
                raise TaskError(f"{THRESHOLDS_SETTING} must be numbers between 0 and 1, got {thresholds!r}")
            changes["thresholds"] = tuple(float(t) for t in thresholds)
        if POOLING_SETTING in settings:
            if settings[POOLING_SETTING] not in POOLINGS:
                raise TaskError(
                    f"{POOLING_SETTING} must be one of {', '.join(POOLINGS)}, got {settings[POOLING_SETTING]!r}"
                )
            changes["pooling"] = settings[POOLING_SETTING]
        if WEIGHTING_SETTING in settings:
            if not isinstance(settings[WEIGHTING_SETTING], bool):
                raise TaskError(
                    f"{WEIGHTING_SETTING} must be true or false, got {settings[WEIGHTING_SETTING]!r}"
                )
            changes["positive_weighting"] = settings[WEIGHTING_SETTING]
        return dataclasses.replace(self, **changes) if changes else self

    def settings(self) -> dict[str, Any]:
        """What the endpoint answers with: the thresholds and a pooling other than max (the weighting only
        trains)."""
        chosen: dict[str, Any] = {}
        if self.thresholds is not None:
            chosen[THRESHOLDS_SETTING] = list(self.thresholds)
        if self.pooling != POOLINGS[0]:
            chosen[POOLING_SETTING] = self.pooling
        return chosen

    def for_request(self, options: Mapping[str, str]) -> MultiLabel:
        """``threshold`` (one for every label, instead of the tuned ones) and ``top_k`` (at most that many
        labels answered) from a request's custom attributes."""
        changes: dict[str, Any] = {}
        if THRESHOLD_OPTION in options:
            raw = options[THRESHOLD_OPTION]
            value = _number(raw)
            if value is None or not 0 < value < 1:
                raise OptionError(
                    f"custom attribute {THRESHOLD_OPTION}={raw!r} must be a number between 0 and 1"
                )
            changes["threshold_override"] = value
        if TOP_K_OPTION in options:
            raw = options[TOP_K_OPTION]
            if not raw.isdigit() or int(raw) < 1:
                raise OptionError(
                    f"custom attribute {TOP_K_OPTION}={raw!r} must be a whole number of at least 1"
                )
            changes["top_k"] = int(raw)
        return dataclasses.replace(self, **changes) if changes else self

    def decision_thresholds(self, count: int) -> np.ndarray:
        import numpy as np

        if self.threshold_override is not None:
            return np.full(count, self.threshold_override)
        if self.thresholds is None:
            return np.full(count, DEFAULT_THRESHOLD)
        if len(self.thresholds) != count:
            raise ValueError(f"{len(self.thresholds)} thresholds for {count} labels")
        return np.asarray(self.thresholds)

    # --- metrics and report -------------------------------------------------------------------------------
    def split_metrics(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, float]:
        aps = [ap for ap in average_precisions(scores.clip_targets, scores.clip) if ap is not None]
        decisions = scores.clip >= self.decision_thresholds(len(labels))
        micro, macro = f1_scores(scores.clip_targets > 0, decisions)
        return {
            "map": sum(aps) / len(aps) if aps else 0.0,
            "micro_f1": micro,
            "macro_f1": macro,
            "lwlrap": lwlrap(scores.clip_targets, scores.clip),
        }

    def report(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        """The metrics, each label's AP (worst first) and threshold, and the labels left out of the mean."""
        aps = average_precisions(scores.clip_targets, scores.clip)
        thresholds = self.decision_thresholds(len(labels))
        per_label: list[dict[str, Any]] = [
            {
                LABEL_KEY: label,
                "average_precision": ap,
                "threshold": float(thresholds[i]),
                "positives": int(scores.clip_targets[:, i].sum()),
            }
            for i, (label, ap) in enumerate(zip(labels, aps, strict=True))
            if ap is not None
        ]
        per_label.sort(key=lambda entry: float(entry["average_precision"]))
        return {
            "labels": list(labels),
            "clips": len(scores.clip_targets),
            **self.split_metrics(scores, labels),
            "per_label": per_label,
            "without_positives": [label for label, ap in zip(labels, aps, strict=True) if ap is None],
        }

    def card_use(self, labels: Sequence[str], window: str) -> str:
        return (
            f"Tagging audio clips with every one of the {len(labels)} labels that applies, each at its own "
            f"threshold, over {window}, through the AcousticShield endpoint (the handler in the model "
            "directory's `code/`), which also answers per-segment labels when asked."
        )

    def card_limitation(self, labels: Sequence[str]) -> str:
        return "Each label's threshold was tuned on the validation split; other data may need others."

    def plot(self, report: dict[str, Any], directory: Path, split: str) -> Path | None:
        """Each label's average precision, worst first: ``average_precision_<split>.png``."""
        from matplotlib.figure import Figure

        entries = report["per_label"]
        if not entries:
            return None
        fig = Figure(figsize=(6.0, max(2.5, 0.3 * len(entries) + 1.0)))
        ax = fig.subplots()
        ax.barh([e[LABEL_KEY] for e in entries], [e["average_precision"] for e in entries], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("average precision")
        ax.set_title(f"{split}: mAP {report['map']:.3f}")
        fig.tight_layout()
        path = directory / f"average_precision_{split}.png"
        fig.savefig(path, dpi=120)
        return path

    # --- the handler's answer -----------------------------------------------------------------------------
    def answer(self, clip_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        thresholds = self.decision_thresholds(len(labels))
        present: list[dict[str, Any]] = [
            {LABEL_KEY: label, SCORE_KEY: float(score)}
            for label, score, threshold in zip(labels, clip_scores, thresholds, strict=True)
            if score >= threshold
        ]
        present.sort(key=lambda entry: -float(entry[SCORE_KEY]))
        return {
            LABELS_KEY: present[: self.top_k],
            SCORES_KEY: {label: float(s) for label, s in zip(labels, clip_scores, strict=True)},
        }

    def window_answer(self, window_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return self.answer(window_scores, labels)

    def segments(
        self,
        starts: Sequence[int],
        window_scores: np.ndarray,
        window: int,
        total: int,
        rate: int,
        labels: Sequence[str],
    ) -> list[dict[str, Any]]:
        """Events with times: ``{"label", "start", "end", "score"}``, by start, then label."""
        spans = stretches(starts, window, total)
        thresholds = self.decision_thresholds(len(labels))
        events = [
            {LABEL_KEY: label, "start": start, "end": end, SCORE_KEY: score}
            for c, label in enumerate(labels)
            for start, end, score in merge_events(
                spans, list(window_scores[:, c] >= thresholds[c]), window_scores[:, c].tolist(), rate
            )
        ]
        return sorted(events, key=lambda event: (event["start"], event[LABEL_KEY]))

    def check_answer(self, answer: dict[str, Any], labels: Sequence[str] | None) -> list[str]:
        """The answer's shape: present labels above their scores' order, every score a probability."""
        scores, present = answer.get(SCORES_KEY), answer.get(LABELS_KEY)
        if not (isinstance(scores, dict) and all(is_probability(s) for s in scores.values())):
            return [f"'{SCORES_KEY}' is {scores!r}, not an object of label probabilities"]
        if not (
            isinstance(present, list)
            and all(
                isinstance(e, dict) and e.get(LABEL_KEY) in scores and is_probability(e.get(SCORE_KEY))
                for e in present
            )
        ):
            return [f"'{LABELS_KEY}' is {present!r}, not a list of labels among the scores"]
        problems = []
        if labels is not None and set(scores) != set(labels):
            problems.append(f"'{SCORES_KEY}' lists {sorted(scores)}, the model's labels are {sorted(labels)}")
        if [e[SCORE_KEY] for e in present] != sorted((e[SCORE_KEY] for e in present), reverse=True):
            problems.append(f"'{LABELS_KEY}' is not ordered by score, highest first")
        return problems


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


TASK = MultiLabel()

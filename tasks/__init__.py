"""Tasks: what a model learns and answers, one module each, on the shared training and serving code.

A task module (``tasks/<name>.py``, or any importable module named by its dotted path) defines ``TASK``, an
instance of a ``Task`` subclass. The task owns everything that differs between tasks:

- its dataset columns: the label vocabulary of a training split and each clip's training target;
- its model head: the model configuration's fields (label maps, problem type) on the shared audio backbone;
- its outputs: window scores from logits, and a clip's scores from its windows' (the endpoint's rule, which
  training's clip-level metrics use too);
- its metrics, each with its direction, the one that picks the best model, and those the quality gate checks;
- its report and plots in the job's output;
- the handler's answer for a clip and for one window.

The shared code (``training.train``, ``training.evaluation``, ``serving.inference``) reads, windows, batches,
trains, evaluates, writes the model directory and serves; it asks the task, and names no task. The model
directory records its task (``labels.json``), so the endpoint answers as the model was trained.

Standard library only at import time: a task module imports numpy, torch or scikit-learn inside the functions
that need them, so the infrastructure can read a task's facts without them.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from common import contract

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

DEFAULT_TASK = "classification"


class TaskError(ValueError):
    """An unknown task, or a dataset the task cannot use; the message says which and what to do."""


class OptionError(TaskError):
    """A request's option (a custom attribute) the task cannot take; the message says what it takes."""


@dataclass(frozen=True)
class Metric:
    """A metric every evaluated split reports (``<split>_<name>``), with its direction."""

    name: str
    higher_is_better: bool
    description: str

    @property
    def direction(self) -> str:
        """SageMaker's word for it (a tuning objective's ``Type``)."""
        return "Maximize" if self.higher_is_better else "Minimize"


@dataclass(frozen=True)
class SplitScores:
    """One evaluated split: each window's scores and target, and each clip's (its windows' scores pooled by
    the task's rule, the endpoint's) with its target. Rows are windows or clips; targets are what the task's
    ``target`` returns, stacked."""

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
        """From the model's window logits, each window's clip (``clip_ids``) and the targets."""
        window = task.scores(logits)
        return cls(
            window, window_targets, clip_scores(task, window, clip_ids, len(clip_targets)), clip_targets
        )


@dataclass(frozen=True)
class Windows:
    """The windows the endpoint ran over one clip: their start offsets and scores (the task's ``scores``),
    each ``window`` samples long (the last one flush with the clip's end; a shorter clip is one window of its
    own length), the clip ``total`` samples long at ``rate``."""

    starts: Sequence[int]
    scores: np.ndarray
    window: int
    total: int
    rate: int


def clip_scores(task: Task, window_scores: np.ndarray, clip_ids: np.ndarray, num_clips: int) -> np.ndarray:
    """Each clip's scores from its windows' (the task's ``pool``): (n_windows, outputs) -> (num_clips,
    outputs). A clip without windows (none in practice: every clip has at least one) gets all zeros."""
    import numpy as np

    clips = np.zeros((num_clips, *window_scores.shape[1:]))
    for clip in np.unique(clip_ids):
        clips[clip] = task.pool(window_scores[clip_ids == clip])
    return clips


class Task:
    """The hooks a task implements. Arrays: window logits and scores are (windows, outputs); targets are
    what ``target`` returns, stacked (one row per window or clip)."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]  # every split's metrics (the loss aside), printed as metric lines
    objective: ClassVar[str]  # the metric that picks the best model and that tuning optimizes
    gated: ClassVar[tuple[str, ...]]  # the metrics the quality gate checks
    finetuning_task: ClassVar[str]  # the model configuration's finetuning_task
    # The metadata.csv column whose cell is a clip's label (a split folder without one: its folder's name).
    label_column: ClassVar[str] = contract.LABELS_COLUMN
    # The transformers auto class of the model (backbone and head), by name: training builds it, the
    # endpoint's PyTorch backend loads it.
    auto_model: ClassVar[str] = "AutoModelForAudioClassification"
    # The hop (seconds) of the windows that ``segments`` reads when a request asks for them; None: the
    # model's own windows, those the clip's answer comes from.
    segment_hop_seconds: ClassVar[float | None] = None
    # A target that describes its clip in time order (a transcript): training reads whole clips, never a
    # crop, a rotation or a repetition of one (each would cut words off their transcript or repeat them),
    # and evaluation runs each clip whole.
    whole_clips: ClassVar[bool] = False
    # The staging tool's sources that stage datasets for this task (``python -m staging <source>``); the
    # first is a deployment's default.
    staging_sources: ClassVar[tuple[str, ...]] = ("esc50", "fsd50k", "folder")

    def metric(self, name: str) -> Metric:
        """The metric called ``name`` (no split prefix)."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise TaskError(f"task {self.name} has no metric {name}; it has {', '.join(self.metric_names)}")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self.metrics)

    # --- dataset columns -------------------------------------------------------------------------------
    def labels(self, clip_labels: Sequence[str]) -> list[str]:
        """The model's outputs, in order, from the training clips' labels (the audiofolder label column)."""
        raise NotImplementedError

    def target(self, label: str, labels: Sequence[str]) -> Any:
        """A clip's training target from its label: what the model's loss compares its output with."""
        raise NotImplementedError

    def usable(self, label: str, labels: Sequence[str]) -> str | None:
        """Why a clip with ``label`` cannot be trained or evaluated on (training skips and counts it like a
        corrupt clip), or None when it can. Default: every clip can."""
        return None

    def unknown_labels(self, split_labels: Sequence[str], train_labels: Sequence[str]) -> list[str]:
        """An evaluation split's labels that the model trained on ``train_labels`` cannot answer (training
        stops on any); default: those outside the training clips' vocabulary (``labels``)."""
        return sorted(set(self.labels(split_labels)) - set(self.labels(train_labels)))

    def checkpoint_labels(self, source: str) -> list[str] | None:
        """The outputs a pretrained checkpoint (a Hub id or a folder) already has and keeps, in id order, or
        None when the task gives every model a fresh head from the training clips' ``labels``."""
        return None

    def describe_targets(self, clip_labels: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
        """What turning one split's labels into targets changed, for the report (JSON-ready); default: none."""
        return {}

    def batch_targets(self, targets: Sequence[Any], labels: Sequence[str]) -> Any:
        """One batch's targets as the tensor the model's loss takes: by default the targets stacked (class
        indices as int64, label vectors as float32)."""
        import numpy as np
        import torch

        return torch.from_numpy(np.stack([np.asarray(target) for target in targets]))

    def argument_defaults(self) -> dict[str, Any]:
        """train.py's defaults this task changes (any argument's name: the checkpoint, the window...)."""
        return {}

    def hop(self, window: int) -> int:
        """Samples between the starts of consecutive windows of ``window`` samples (training's evaluation
        windows and the endpoint's)."""
        return contract.window_hop(window)

    # --- model head --------------------------------------------------------------------------------------
    def config_fields(self, labels: Sequence[str]) -> dict[str, Any]:
        """The model configuration's task fields (num_labels, label maps, problem_type...)."""
        return {
            "num_labels": len(labels),
            "label2id": {label: i for i, label in enumerate(labels)},
            "id2label": dict(enumerate(labels)),
            "finetuning_task": self.finetuning_task,
        }

    def model_files(self, labels: Sequence[str]) -> dict[str, str]:
        """Files the model directory gets besides the weights and labels.json (name -> text), such as a
        tokenizer's; default: none."""
        return {}

    def loss(self) -> Callable[[Any, Any], Any] | None:
        """The training loss, ``loss(logits, targets) -> scalar tensor``, when the model's own is not the
        task's (audio classification heads always use cross-entropy); None: the model's own."""
        return None

    def prepared(self, train_targets: np.ndarray) -> Task:
        """This task ready to train on clips with these targets (stacked): what it derives from them, such as
        per-label weights; default: itself."""
        return self

    def mix(self, target: Any, other: Any) -> Any | None:
        """The target of two clips laid over each other (training's ``--mix_probability``); None: this task's
        targets have no union (one label per clip), so it does not mix."""
        return None

    def outputs(self, labels: Sequence[str]) -> int:
        """How many numbers the model answers per window."""
        return len(labels)

    # --- outputs ---------------------------------------------------------------------------------------
    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Window scores from window logits, float64."""
        raise NotImplementedError

    def pool(self, window_scores: np.ndarray) -> np.ndarray:
        """One clip's scores from its windows' scores: (windows, outputs) -> (outputs,)."""
        raise NotImplementedError

    # --- what the task learns on validation --------------------------------------------------------------
    def fit(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        """Settings chosen on the validation split's scores after training (per-class decision thresholds,
        say), JSON-ready; the model directory keeps them and the endpoint answers with them. Default: none."""
        return {}

    def configured(self, settings: Mapping[str, Any]) -> Task:
        """This task with ``settings`` (what ``fit`` chose); default: itself (it has none)."""
        return self

    def settings(self) -> dict[str, Any]:
        """The settings this task answers with (what ``configured`` was given), JSON-ready."""
        return {}

    def for_request(self, options: Mapping[str, str]) -> Task:
        """This task answering one request with ``options`` (the request's custom attributes, lowercase keys);
        default: itself. A task ignores the options it does not take (a caller's trace id, say) and raises
        ``OptionError`` for a value it cannot use."""
        return self

    # --- metrics and report ------------------------------------------------------------------------------
    def split_metrics(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, float]:
        """Every metric of ``metrics`` for one split (no prefix)."""
        raise NotImplementedError

    def report(self, scores: SplitScores, labels: Sequence[str]) -> dict[str, Any]:
        """One split's full report for evaluation.json (it starts with ``labels``)."""
        raise NotImplementedError

    def plot(self, report: dict[str, Any], directory: Path, split: str) -> Path | None:
        """A picture of one split's report (a PNG in ``directory``, named after ``split``); None when the task
        draws none."""
        return None

    def group_report(
        self, scores: SplitScores, labels: Sequence[str], groups: Sequence[str]
    ) -> dict[str, Any]:
        """The split's report per group of clips (``groups``: each clip's, such as its speaker; "" unknown);
        empty when the task reports none or no group is known."""
        return {}

    # --- the model card -----------------------------------------------------------------------------------
    def card_use(self, labels: Sequence[str], window: str) -> str:
        """What a model of the task is for, and what the endpoint answers, for its model card (``window``: the
        windows it reads, in words)."""
        return (
            f"Scoring audio clips against its {len(labels)} labels over {window}, through the AcousticShield "
            "endpoint (the handler in the model directory's `code/`)."
        )

    def card_limitation(self, labels: Sequence[str]) -> str:
        """What a model of the task cannot do by its nature, for its model card; empty: nothing to say."""
        return ""

    # --- the handler's answer ---------------------------------------------------------------------------
    def clip_answer(self, windows: Windows, labels: Sequence[str]) -> dict[str, Any]:
        """The endpoint's answer for a whole clip from its windows: by default ``answer`` of their pooled
        scores."""
        return self.answer(self.pool(windows.scores), labels)

    def answer(self, clip_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """The endpoint's JSON answer for a clip."""
        raise NotImplementedError

    def window_answer(self, window_scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """The answer for one window (a ``segments`` entry, beside its start and end)."""
        raise NotImplementedError

    def segments(
        self,
        starts: Sequence[int],
        window_scores: np.ndarray,
        window: int,
        total: int,
        rate: int,
        labels: Sequence[str],
    ) -> list[dict[str, Any]]:
        """The answer's ``segments`` from the windows (their start offsets and scores; ``window`` and
        ``total`` samples at ``rate``): by default each window's answer with its start and end in seconds."""
        return [
            {
                "start": round(start / rate, 3),
                "end": round(min(start + window, total) / rate, 3),
                **self.window_answer(row, labels),
            }
            for start, row in zip(starts, window_scores, strict=True)
        ]

    def check_answer(self, answer: dict[str, Any], labels: Sequence[str] | None) -> list[str]:
        """What is wrong with an endpoint's answer (``labels``: the model's, when known); empty when nothing
        is. The deployment's verification (tools/verify.py) asks this of a live endpoint."""
        return []


def is_probability(value: Any) -> bool:
    """A finite number in [0, 1] (not a bool): what every answer's scores must be."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def load(name: str | None) -> Task:
    """The task called ``name``: ``tasks.<name>``, or the module at a dotted path (``package.module``)."""
    name = name or DEFAULT_TASK
    module_name = name if "." in name else f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name not in (module_name, *_parents(module_name)):
            raise
        raise TaskError(f"unknown task {name!r}; the tasks are {', '.join(known())}") from None
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise TaskError(f"{module_name} defines no TASK (a tasks.Task): it is not a task module")
    return task


def _parents(module_name: str) -> list[str]:
    parts = module_name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def runtime_suffix(name: str) -> str:
    """What a deployment of task ``name`` adds to its runtime and stack names, so that tasks run side by side
    in one account: nothing for the default task (its names predate tasks), ``-<name>`` for any other."""
    return "" if name == DEFAULT_TASK else f"-{name}"


def known() -> list[str]:
    """The tasks this package holds."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))

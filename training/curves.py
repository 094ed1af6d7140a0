"""Training curves: TensorBoard event files while the Trainer trains, and a picture of them afterwards.

TensorBoard. With ``--report_to tensorboard`` (train.py's default) the Trainer writes every log it makes
(training loss, learning rate, gradient norm, each evaluation's metrics) as TensorBoard event files into one
folder, the first of:

1. ``--tensorboard_dir``;
2. ``$TENSORBOARD_LOGGING_DIR``, transformers 5's own variable (``tools.local_job`` sets it to the job's
   ``TensorBoardOutputConfig.LocalPath`` as laid out under its work folder);
3. ``--logging_dir``, on the transformers versions that still take it (4.x; deprecated in 5);
4. in a SageMaker training job, ``/opt/ml/output/tensorboard``: the documented default of the job's
   ``TensorBoardOutputConfig.LocalPath`` ("Path to local storage location for tensorBoard output. Defaults
   to /opt/ml/output/tensorboard", TensorBoardOutputConfig, Amazon SageMaker API Reference), which SageMaker
   uploads under ``<S3OutputPath>/<job>/tensorboard-output/`` while the job runs. Neither SageMaker nor the
   training toolkit names that folder in an environment variable: a job is recognised by the toolkit's
   ``SM_TRAINING_ENV``, or by the folder itself;
5. otherwise ``<output_data_dir>/tensorboard``, beside the reports.

Without the tensorboard package (the training image has it; a local environment may lack it) training goes
on without event files and says so once.

The picture. ``training_curves.png`` in the output data dir, beside evaluation.json: the training and
validation loss, and the task's objective on the validation split (``eval_f1``, ``eval_map``,
``eval_wer``...), per training step, from the Trainer's log history; the best evaluation is marked. The
``TrainingCurves`` callback draws it when training ends (also when the health rules stopped it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import is_tensorboard_available

from common import contract
from tasks import Task

logger = logging.getLogger(__name__)

TENSORBOARD = "tensorboard"  # the Trainer's report_to name
# TensorBoardOutputConfig.LocalPath's documented default: where a SageMaker job's event files go.
SAGEMAKER_TENSORBOARD_DIR = Path("/opt/ml/output/tensorboard")
TENSORBOARD_VARIABLE = "TENSORBOARD_LOGGING_DIR"  # read by transformers 5's TensorBoardCallback
TOOLKIT_VARIABLE = "SM_TRAINING_ENV"  # set by the SageMaker training toolkit for every job's entry point
LOCAL_TENSORBOARD_DIR = "tensorboard"  # under the output data dir, outside SageMaker
CURVES_FILE = "training_curves.png"
# The values this process put in TENSORBOARD_LOGGING_DIR itself, for an earlier run in the same process (tests
# call train.main repeatedly): no choice of the user's for the next run.
_EXPORTED: set[str] = set()
# The Trainer's log keys: the training loss per logging step, the validation split's loss and metrics per
# evaluation (eval_loss, eval_<objective>).
TRAINING_LOSS, VALIDATION_LOSS, VALIDATION = "loss", contract.VALIDATION_LOSS, contract.METRIC_SPLITS[0]


def tensorboard_available() -> bool:
    """Whether the Trainer can write TensorBoard event files here (tensorboard, or tensorboardX)."""
    return bool(is_tensorboard_available())


def on_sagemaker(environ: Mapping[str, str]) -> bool:
    """Whether this runs as a SageMaker training job's entry point (or in its local emulation)."""
    return TOOLKIT_VARIABLE in environ or SAGEMAKER_TENSORBOARD_DIR.is_dir()


def _given_logging_dir(training: Any) -> Path | None:
    """``--logging_dir``, where this transformers version has it and it was given: transformers 4 fills an
    unset one with ``<output_dir>/runs/<time>_<host>``, which is no choice of the user's."""
    value = getattr(training, "logging_dir", None)
    if not value:
        return None
    path = Path(value)
    if path.parent == Path(training.output_dir or "trainer_output") / "runs":
        return None
    return path


def tensorboard_dir(
    requested: str | None, training: Any, output_dir: Path, environ: Mapping[str, str]
) -> Path:
    """Where the event files go (the order in the module's docstring)."""
    if requested:
        return Path(requested).expanduser()
    variable = environ.get(TENSORBOARD_VARIABLE)
    if variable and variable not in _EXPORTED:
        return Path(variable).expanduser()
    given = _given_logging_dir(training)
    if given is not None:
        return given
    if on_sagemaker(environ):
        return SAGEMAKER_TENSORBOARD_DIR
    return output_dir / LOCAL_TENSORBOARD_DIR


def prepare_tensorboard(
    training: Any, requested: str | None, output_dir: Path, environ: MutableMapping[str, str]
) -> Path | None:
    """Points the Trainer's TensorBoard reporting at ``tensorboard_dir`` and returns it; None when the
    Trainer does not report to TensorBoard, or cannot (no tensorboard package: then ``report_to`` loses
    ``tensorboard`` and a warning says what to install).

    ``environ`` (``os.environ`` in a job) gets ``TENSORBOARD_LOGGING_DIR``, which transformers 5 reads when
    the Trainer is made; transformers 4 reads ``training.logging_dir``, set too where it exists.
    """
    report_to = list(training.report_to or [])
    if TENSORBOARD not in report_to:
        if requested:
            logger.warning(
                "--tensorboard_dir %s is not used: --report_to does not name tensorboard", requested
            )
        return None
    if not tensorboard_available():
        training.report_to = [name for name in report_to if name != TENSORBOARD]
        logger.warning(
            "no TensorBoard event files: the tensorboard package is not installed here (the training "
            "image has it; pip install tensorboard to have them locally, or pass --report_to none to "
            "silence this). "
            "The loss and objective curves are still drawn to %s",
            CURVES_FILE,
        )
        return None
    directory = tensorboard_dir(requested, training, output_dir, environ)
    directory.mkdir(parents=True, exist_ok=True)
    if environ.get(TENSORBOARD_VARIABLE) != str(directory):
        environ[TENSORBOARD_VARIABLE] = str(directory)
        _EXPORTED.add(str(directory))
    if hasattr(training, "logging_dir"):
        training.logging_dir = str(directory)
    logger.info("TensorBoard event files in %s (tensorboard --logdir %s)", directory, directory)
    return directory


@dataclass(frozen=True)
class Curve:
    """One logged value over the training steps."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    def best(self, higher_is_better: bool) -> tuple[int, float] | None:
        """The step and value of the best point (the first of equals); None without points."""
        if not self.values:
            return None
        pick = max if higher_is_better else min
        value = pick(self.values)
        return self.steps[self.values.index(value)], value


def history_curves(log_history: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Curve]:
    """Each of ``names`` (``loss``, ``eval_loss``, ``eval_f1``...) from the Trainer's ``state.log_history``:
    its finite values, with the step each was logged at. The run's closing summary (``train_loss``) is not a
    point of any curve."""
    points: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        for name in names:
            value = entry.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                points[name].append((step, float(value)))
    return {
        name: Curve(name, tuple(s for s, _ in found), tuple(v for _, v in found))
        for name, found in points.items()
    }


def plot_curves(log_history: Sequence[Mapping[str, Any]], directory: Path, task: Task) -> Path | None:
    """``training_curves.png`` in ``directory``: the loss curves and the task's objective on the validation
    split, from the Trainer's log history; None (and nothing written) when the history has none of them."""
    objective = f"{VALIDATION}_{task.objective}"
    curves = history_curves(log_history, (TRAINING_LOSS, VALIDATION_LOSS, objective))
    if not any(curve.values for curve in curves.values()):
        logger.info("no training curves to draw: the log history has no loss and no evaluation")
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    loss_ax, objective_ax = fig.subplots(1, 2)
    for name, label, style in (
        (TRAINING_LOSS, "training loss", ".-"),
        (VALIDATION_LOSS, "validation loss", "o-"),
    ):
        curve = curves[name]
        if curve.values:
            loss_ax.plot(curve.steps, curve.values, style, label=label)
    loss_ax.set_title("loss")
    loss_ax.set_xlabel("step")
    if curves[TRAINING_LOSS].values or curves[VALIDATION_LOSS].values:
        loss_ax.legend()
    _plot_objective(objective_ax, curves[objective], task.metric(task.objective).higher_is_better)
    fig.suptitle(f"training curves: {task.name} task")
    fig.tight_layout()
    path = directory / CURVES_FILE
    directory.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    logger.info("wrote %s", path)
    return path


class TrainingCurves(TrainerCallback):
    """Draws ``training_curves.png`` into ``directory`` when training ends, on the main process."""

    def __init__(self, directory: Path, task: Task) -> None:
        self.directory, self.task = directory, task
        self.path: Path | None = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.path = plot_curves(state.log_history, self.directory, self.task)


def _plot_objective(ax: Any, curve: Curve, higher_is_better: bool) -> None:
    """The objective on the validation split per evaluation, its best value marked."""
    ax.set_title(f"{curve.name} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_xlabel("step")
    best = curve.best(higher_is_better)
    if best is None:
        ax.text(0.5, 0.5, "no evaluation", ha="center", va="center", transform=ax.transAxes)
        return
    ax.plot(curve.steps, curve.values, "o-", color="tab:green", label=curve.name)
    step, value = best
    ax.plot([step], [value], "*", markersize=14, color="tab:red", label=f"best {value:.4g} at step {step}")
    ax.legend()

"""Training health: what SageMaker Debugger's built-in rules told people, computed by the job itself.

Each rule (``contract.HEALTH_RULES``) is a pure function of the Trainer's ``state.log_history`` (which a
resumed run restores from its checkpoint's ``trainer_state.json``) or of what this process measured (step
timings and the GPU, which a restart measures afresh). ``HealthRules`` is the Trainer callback that measures,
stops training on a non-finite loss, and at the end of training prints each evaluated rule's metric lines
(``health_<rule>=0|1`` and ``health_<rule>_value=...``) and keeps the report for ``metrics.json`` and
``evaluation.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import EarlyStoppingCallback, TrainerCallback

from common import contract

logger = logging.getLogger(__name__)

FIRED, SILENT, NOT_EVALUATED = contract.HEALTH_STATUSES
NO_GPU = "no GPU"
ADVICE = {
    "loss_not_decreasing": "check that --learning_rate is not too low (or 0) and that the labels match the "
    "clips; a frozen pretrained encoder may need --freeze_feature_encoder false or more epochs",
    "overfit": "add clips or augmentation (--augment, --noise_probability, --noise_dir), raise "
    "--weight_decay, or train fewer epochs (--early_stopping_patience)",
    "overtraining": "set --early_stopping_patience (the best checkpoint is the one kept) or train fewer "
    "epochs",
    "vanishing_gradient": "raise --learning_rate, check that not every layer is frozen and that the clips "
    "are not silent",
    "exploding_gradient": "lower --learning_rate, warm up longer (--warmup_ratio), keep gradient clipping "
    "on (--max_grad_norm 1)",
    "nonfinite_loss": "lower --learning_rate, prefer --bf16 to --fp16, and check the data for broken clips",
    "data_loading": "raise --dataloader_num_workers or --decoded_cache_gb (clips decoded once, kept in "
    "memory), or pick an instance with more CPUs per GPU",
    "gpu_utilization": "raise --per_device_train_batch_size or --dataloader_num_workers, or pick a smaller "
    "GPU",
    "gpu_memory": "lower --per_device_train_batch_size (raise --gradient_accumulation_steps to keep the "
    "batch) or --max_length_seconds",
}


class TrainingStopped(RuntimeError):
    """A health rule stopped training (a non-finite loss); the message says where and what to do."""


@dataclass
class HealthArguments:
    """The training-health rules' parameters; defaults modelled on SageMaker Debugger's built-in rules."""

    loss_not_decreasing_windows: int = field(
        default=5,
        metadata={
            "help": "loss_not_decreasing: compare the mean training loss of the last N logging windows "
            "(--logging_steps each) with the N before; needs 2N logged losses."
        },
    )
    loss_not_decreasing_min_percent: float = field(
        default=0.1,
        metadata={
            "help": "loss_not_decreasing fires when the loss fell by less than this percentage "
            "(Debugger LossNotDecreasing's diff_percent)."
        },
    )
    overfit_evaluations: int = field(
        default=3,
        metadata={
            "help": "overfit: the gap between validation and training loss must have grown over this many "
            "evaluations in a row; needs one evaluation more."
        },
    )
    overfit_min_ratio: float = field(
        default=0.1,
        metadata={
            "help": "overfit fires when the gap is also above this share of the training loss "
            "(Debugger Overfit's ratio_threshold)."
        },
    )
    overtraining_patience: int = field(
        default=3,
        metadata={
            "help": "overtraining: evaluations without a better --metric_for_best_model before it fires, "
            "when --early_stopping_patience is 0 (else that patience, the same comparison as early stopping)."
        },
    )
    vanishing_gradient_norm: float = field(
        default=1e-7,
        metadata={
            "help": "vanishing_gradient fires when a logged gradient norm is below this "
            "(Debugger VanishingGradient's threshold)."
        },
    )
    exploding_gradient_norm: float = field(
        default=1000.0,
        metadata={
            "help": "exploding_gradient fires when a logged gradient norm is above this, NaN or infinite."
        },
    )
    data_loading_max_percent: float = field(
        default=50.0,
        metadata={
            "help": "data_loading fires when waiting for batches took more than this percentage of the "
            "training steps' time (Debugger CPUBottleneck's threshold)."
        },
    )
    gpu_utilization_min_percent: float = field(
        default=70.0,
        metadata={
            "help": "gpu_utilization fires when the 95th percentile of the GPU's utilization, sampled every "
            "step, is below this (Debugger LowGPUUtilization's threshold_p95)."
        },
    )
    gpu_memory_max_percent: float = field(
        default=90.0,
        metadata={
            "help": "gpu_memory fires when the peak memory allocated was above this share of the GPU's."
        },
    )
    health_warmup_steps: int = field(
        default=5,
        metadata={"help": "Steps of each process left out of the timing and GPU rules (start-up, warm-up)."},
    )
    health_min_timed_steps: int = field(
        default=10,
        metadata={"help": "Timed steps the data_loading and gpu_utilization rules need after the warm-up."},
    )

    def problem(self) -> str | None:
        """What is wrong with these values, as an error message; None when they are usable."""
        counts = ("loss_not_decreasing_windows", "overfit_evaluations", "overtraining_patience")
        for name in (*counts, "health_min_timed_steps"):
            if getattr(self, name) < 1:
                return f"--{name} must be 1 or more, got {getattr(self, name)}"
        if self.health_warmup_steps < 0:
            return f"--health_warmup_steps must not be negative, got {self.health_warmup_steps}"
        for name in ("data_loading_max_percent", "gpu_utilization_min_percent", "gpu_memory_max_percent"):
            if not 0 <= getattr(self, name) <= 100:
                return f"--{name} must be between 0 and 100, got {getattr(self, name)}"
        for name in ("vanishing_gradient_norm", "exploding_gradient_norm", "overfit_min_ratio"):
            if not 0 <= getattr(self, name) < math.inf:
                return f"--{name} must be a finite number of at least 0, got {getattr(self, name)}"
        return None


@dataclass(frozen=True)
class RunFacts:
    """What the rules take from the run's own settings."""

    metric: str | None  # the validation metric early stopping and the overtraining rule watch (eval_<name>)
    greater_is_better: bool
    patience: int  # the overtraining rule's: --early_stopping_patience when set, else --overtraining_patience
    patience_from: str  # which argument that patience came from
    fp16: bool = False  # the loss scaler skips steps whose gradients overflowed: their norms are not finite

    @classmethod
    def of(cls, args: Any, early_stopping_patience: int, params: HealthArguments) -> RunFacts:
        """From the TrainingArguments, the early-stopping patience and the rules' parameters."""
        metric, greater = watched_metric(args)
        if early_stopping_patience:
            patience, source = early_stopping_patience, "--early_stopping_patience"
        else:
            patience, source = params.overtraining_patience, "--overtraining_patience"
        return cls(metric, greater, patience, source, bool(args.fp16))


def watched_metric(args: Any) -> tuple[str | None, bool]:
    """The validation metric early stopping watches (``eval_<metric_for_best_model>``) and whether higher is
    better, as the Trainer reads them from its arguments."""
    metric = args.metric_for_best_model
    if metric and not metric.startswith("eval_"):
        metric = f"eval_{metric}"
    greater = args.greater_is_better
    if greater is None:
        greater = not (metric or "").endswith("loss")
    return metric, bool(greater)


@dataclass
class Measurements:
    """What this process measured: not in the log history, so a restarted job measures afresh."""

    steps: int = 0  # optimizer steps this process ran
    timed_steps: int = 0  # of which timed (after the warm-up)
    wait_seconds: float = 0.0  # waiting for batches, between one step's end and the next step's start
    step_seconds: float = 0.0  # the steps themselves: forward, backward, optimizer
    last_step: int | None = None  # the global step of the last timed step
    gpu_missing: str | None = NO_GPU  # why the GPU rules cannot be evaluated; None: they can
    utilization: list[float] = field(default_factory=list)  # percent, one sample per timed step
    utilization_missing: str | None = None  # why utilization could not be read
    memory_percent: float | None = None  # peak memory allocated, percent of the GPU's
    nonfinite_loss: tuple[int, float] | None = None  # (global step, loss) of the first non-finite loss


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict."""

    status: str  # contract.HEALTH_STATUSES
    value: float | None = None  # what was measured
    threshold: float | None = None
    step: int | None = None  # the global step at which it fired
    reason: str = ""  # what was measured, or why the rule was not evaluated

    @property
    def evaluated(self) -> bool:
        return self.status != NOT_EVALUATED


def _judge(fired: bool, value: float, threshold: float, step: int | None, reason: str) -> Outcome:
    return Outcome(
        FIRED if fired else SILENT, float(value), float(threshold), step if fired else None, reason
    )


def _not_evaluated(reason: str) -> Outcome:
    return Outcome(NOT_EVALUATED, reason=reason)


def _finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _series(history: Iterable[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every log entry that has ``key``."""
    return [(int(entry.get("step", 0)), float(entry[key])) for entry in history if key in entry]


def _training_losses(history: Iterable[Mapping[str, Any]]) -> list[tuple[int, float]]:
    return [(step, loss) for step, loss in _series(history, "loss") if math.isfinite(loss)]


# --- The rules ----------------------------------------------------------------------------------------


def loss_not_decreasing(history: Sequence[Mapping[str, Any]], windows: int, min_percent: float) -> Outcome:
    """The mean training loss of the last ``windows`` logging windows fell by less than ``min_percent`` per
    cent against the ``windows`` before them (Debugger LossNotDecreasing)."""
    losses = _training_losses(history)
    if len(losses) < 2 * windows:
        return _not_evaluated(f"too few logging windows ({len(losses)} of {2 * windows})")
    before = float(np.mean([loss for _, loss in losses[-2 * windows : -windows]]))
    last = float(np.mean([loss for _, loss in losses[-windows:]]))
    if before <= 0:
        return _judge(False, 0.0, min_percent, None, "the training loss was already 0")
    fell = 100 * (before - last) / before
    reason = (
        f"mean training loss {last:.6g} over the last {windows} logging windows against {before:.6g} over "
        f"the {windows} before: {'fell' if fell >= 0 else 'rose'} {abs(fell):.3g}% "
        f"(at least {min_percent:g}% expected)"
    )
    return _judge(fell < min_percent, fell, min_percent, losses[-1][0], reason)


def _gaps(history: Sequence[Mapping[str, Any]]) -> list[tuple[int, float, float]]:
    """(step, validation loss, training loss) per evaluation; the training loss is the mean of the losses
    logged since the evaluation before, else the last one logged before it."""
    losses = _training_losses(history)
    gaps, previous = [], -1
    for step, eval_loss in _series(history, contract.VALIDATION_LOSS):
        around = [loss for s, loss in losses if previous < s <= step]
        earlier = [loss for s, loss in losses if s <= step]
        previous = step
        if math.isfinite(eval_loss) and (around or earlier):
            gaps.append((step, eval_loss, float(np.mean(around)) if around else earlier[-1]))
    return gaps


def overfit(history: Sequence[Mapping[str, Any]], evaluations: int, min_ratio: float) -> Outcome:
    """The gap between validation and training loss grew over ``evaluations`` evaluations in a row and is
    above ``min_ratio`` of the training loss (Debugger Overfit)."""
    gaps = _gaps(history)
    if len(gaps) < evaluations + 1:
        return _not_evaluated(
            f"too few evaluations with a training loss logged before them ({len(gaps)} of {evaluations + 1})"
        )
    grown, fired_at = 0, None
    for i in range(1, len(gaps)):
        grown = grown + 1 if gaps[i][1] - gaps[i][2] > gaps[i - 1][1] - gaps[i - 1][2] else 0
        if fired_at is None and grown >= evaluations and _ratio(gaps[i]) > min_ratio:
            fired_at = i
    at = gaps[len(gaps) - 1 if fired_at is None else fired_at]
    reason = (
        f"validation loss {at[1]:.6g} against training loss {at[2]:.6g} at step {at[0]}: a gap of "
        f"{_ratio(at):.3g} of the training loss, grown {grown if fired_at is None else evaluations} "
        f"evaluation(s) in a row ({evaluations} in a row and above {min_ratio:g} fire)"
    )
    return _judge(fired_at is not None, _ratio(at), min_ratio, at[0], reason)


def _ratio(gap: tuple[int, float, float]) -> float:
    _, eval_loss, train_loss = gap
    if train_loss <= 0:
        return math.inf if eval_loss > train_loss else 0.0
    return (eval_loss - train_loss) / train_loss


@dataclass(frozen=True)
class Patience:
    """Early stopping's patience counter, replayed over the evaluations of a log history."""

    evaluations: int  # evaluations that reported the metric
    counter: int  # evaluations since the last improvement, after the last one
    longest: int  # the longest such run
    reached: int | None  # the global step of the evaluation at which the counter first reached the patience


def replay_patience(
    history: Sequence[Mapping[str, Any]],
    metric: str,
    greater_is_better: bool,
    patience: int,
    threshold: float | None = 0.0,
) -> Patience:
    """transformers' ``EarlyStoppingCallback`` comparison, evaluation by evaluation, with the best metric kept
    as the Trainer keeps it: what early stopping decided, from the log history alone."""
    stopper = EarlyStoppingCallback(early_stopping_patience=patience, early_stopping_threshold=threshold)
    state = SimpleNamespace(best_metric=None)
    args = SimpleNamespace(greater_is_better=greater_is_better)
    better = np.greater if greater_is_better else np.less
    values = _series(history, metric)
    longest, reached = 0, None
    for step, value in values:
        stopper.check_metric_value(args, state, None, value)
        longest = max(longest, stopper.early_stopping_patience_counter)
        if reached is None and stopper.early_stopping_patience_counter >= patience:
            reached = step
        if state.best_metric is None or better(value, state.best_metric):
            state.best_metric = value  # as Trainer._determine_best_metric does, after the callbacks
    return Patience(len(values), stopper.early_stopping_patience_counter, longest, reached)


def overtraining(
    history: Sequence[Mapping[str, Any]], metric: str | None, greater_is_better: bool, patience: int
) -> Outcome:
    """The validation metric has not improved for ``patience`` evaluations: early stopping's own condition
    (Debugger Overtraining)."""
    if not metric:
        return _not_evaluated("no --metric_for_best_model to watch")
    replayed = replay_patience(history, metric, greater_is_better, patience)
    if replayed.evaluations < patience + 1:
        return _not_evaluated(f"too few evaluations of {metric} ({replayed.evaluations} of {patience + 1})")
    reason = (
        f"{metric} went {replayed.longest} evaluation(s) at most without improving "
        f"({patience} fire; {'higher' if greater_is_better else 'lower'} is better)"
    )
    return _judge(replayed.reached is not None, replayed.longest, patience, replayed.reached, reason)


def vanishing_gradient(history: Sequence[Mapping[str, Any]], min_norm: float) -> Outcome:
    """A logged gradient norm fell below ``min_norm`` (Debugger VanishingGradient)."""
    norms = [(step, norm) for step, norm in _series(history, "grad_norm") if math.isfinite(norm)]
    if not norms:
        return _not_evaluated("no finite gradient norm was logged")
    step, smallest = min(norms, key=lambda item: item[1])
    below = next(((s, n) for s, n in norms if n < min_norm), None)
    reason = (
        f"smallest of {len(norms)} logged gradient norms {smallest:.3g}, at step {step} "
        f"(below {min_norm:g} fires)"
    )
    return _judge(below is not None, smallest, min_norm, below[0] if below else None, reason)


def exploding_gradient(history: Sequence[Mapping[str, Any]], max_norm: float, fp16: bool = False) -> Outcome:
    """A logged gradient norm was above ``max_norm``, NaN or infinite (Debugger ExplodingTensor).

    With fp16 the loss scaler skips every step whose gradients overflowed, and such a step logs an infinite
    norm by design: there only finite norms are judged (a NaN loss still stops the job)."""
    norms = _series(history, "grad_norm")
    skipped = [norm for _, norm in norms if not math.isfinite(norm)] if fp16 else []
    judged = [(step, norm) for step, norm in norms if not (fp16 and not math.isfinite(norm))]
    if not judged:
        return _not_evaluated(
            "no gradient norm was logged" + (f" ({len(skipped)} skipped steps)" if skipped else "")
        )
    bad = next(((s, n) for s, n in judged if not math.isfinite(n) or n > max_norm), None)
    value = bad[1] if bad else max(norm for _, norm in judged)
    what = f"gradient norm {value:.3g} at step {bad[0]}" if bad else f"largest gradient norm {value:.3g}"
    reason = f"{what} of {len(judged)} logged (above {max_norm:g}, NaN or infinite fire)"
    if skipped:
        reason += f"; {len(skipped)} overflowing fp16 step(s) left out"
    return _judge(bad is not None, value, max_norm, bad[0] if bad else None, reason)


def nonfinite_loss(
    history: Sequence[Mapping[str, Any]], observed: tuple[int, float] | None, steps: int
) -> Outcome:
    """The training loss became NaN or infinite: the job stops at that step (Debugger's StopTraining action).

    ``observed``: the first non-finite loss this process computed (every step is checked); ``steps``: how many
    steps it ran. A logged non-finite loss counts too (logged as such with --logging_nan_inf_filter false)."""
    logged = _series(history, "loss")
    bad = sorted([(s, v) for s, v in logged if not math.isfinite(v)] + ([observed] if observed else []))
    if not bad and not steps and not logged:
        return _not_evaluated("no training step ran")
    if bad:
        step, value = bad[0]
        return _judge(
            True, len(bad), 0, step, f"the training loss was {value} at step {step}: training stopped"
        )
    return _judge(False, 0, 0, None, f"every step's training loss was finite ({steps} step(s) checked)")


def data_loading(measured: Measurements, max_percent: float, warmup: int, min_steps: int) -> Outcome:
    """Waiting for batches took more than ``max_percent`` of the steps' time (Debugger CPUBottleneck)."""
    if measured.timed_steps < min_steps:
        return _not_evaluated(
            f"too few timed steps ({measured.timed_steps} of {min_steps}, "
            f"after the first {warmup} of this process)"
        )
    total = measured.wait_seconds + measured.step_seconds
    share = 100 * measured.wait_seconds / total if total > 0 else 0.0
    reason = (
        f"{measured.wait_seconds:.3g} s waiting for batches and {measured.step_seconds:.3g} s computing over "
        f"{measured.timed_steps} steps of this process: {share:.3g}% waiting (above {max_percent:g}% fires)"
    )
    return _judge(share > max_percent, share, max_percent, measured.last_step, reason)


def gpu_utilization(measured: Measurements, min_percent: float, min_steps: int) -> Outcome:
    """The 95th percentile of the GPU's utilization was below ``min_percent`` (Debugger LowGPUUtilization)."""
    missing = measured.gpu_missing or measured.utilization_missing
    if missing:
        return _not_evaluated(missing)
    samples = measured.utilization
    if len(samples) < min_steps:
        return _not_evaluated(f"too few utilization samples ({len(samples)} of {min_steps})")
    p95 = float(np.percentile(samples, 95))
    reason = (
        f"95th percentile {p95:.3g}% and median {float(np.median(samples)):.3g}% over {len(samples)} steps "
        f"of this process's GPU (below {min_percent:g}% fires)"
    )
    return _judge(p95 < min_percent, p95, min_percent, measured.last_step, reason)


def gpu_memory(measured: Measurements, max_percent: float) -> Outcome:
    """The peak memory allocated was above ``max_percent`` of the GPU's memory (replaces Debugger
    GPUMemoryIncrease)."""
    if measured.gpu_missing:
        return _not_evaluated(measured.gpu_missing)
    if measured.memory_percent is None:
        return _not_evaluated("no training step ran")
    peak = measured.memory_percent
    reason = f"peak memory allocated {peak:.3g}% of this process's GPU (above {max_percent:g}% fires)"
    return _judge(peak > max_percent, peak, max_percent, measured.last_step, reason)


# --- The report ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Every rule's outcome, with the parameters they were judged by."""

    rules: dict[str, Outcome]
    parameters: dict[str, Any]

    def fired(self) -> list[str]:
        return [rule for rule, outcome in self.rules.items() if outcome.status == FIRED]

    def lines(self, rules: Iterable[str] | None = None) -> list[str]:
        """The metric lines of the evaluated rules (NaN and infinite values print; no regex reads them)."""
        lines = []
        for rule in self.rules if rules is None else rules:
            outcome = self.rules[rule]
            if outcome.evaluated:
                lines.append(
                    contract.metric_line(contract.health_metric(rule), float(outcome.status == FIRED))
                )
                if outcome.value is not None:
                    lines.append(contract.metric_line(contract.health_value_metric(rule), outcome.value))
        return lines

    def metrics(self) -> dict[str, float]:
        """The flat metrics.json entries: each evaluated rule's flag, and its value where finite."""
        metrics: dict[str, float] = {}
        for rule, outcome in self.rules.items():
            if outcome.evaluated:
                metrics[contract.health_metric(rule)] = float(outcome.status == FIRED)
                value = _finite(outcome.value)
                if value is not None:
                    metrics[contract.health_value_metric(rule)] = value
        return metrics

    def as_json(self) -> dict[str, Any]:
        """evaluation.json's health section (contract.HEALTH_REPORT); non-finite values are null."""
        rules = {
            rule: {
                "status": outcome.status,
                "value": _finite(outcome.value),
                "threshold": outcome.threshold,
                "step": outcome.step,
                "reason": outcome.reason,
                "advice": ADVICE[rule],
            }
            for rule, outcome in self.rules.items()
        }
        return {"parameters": self.parameters, "rules": rules}


def evaluate(
    history: Sequence[Mapping[str, Any]], params: HealthArguments, facts: RunFacts, measured: Measurements
) -> Report:
    """Every rule of ``contract.HEALTH_RULES`` over the log history and this process's measurements."""
    p, warmup, min_steps = params, params.health_warmup_steps, params.health_min_timed_steps
    rules: dict[str, Callable[[], Outcome]] = {
        "loss_not_decreasing": lambda: loss_not_decreasing(
            history, p.loss_not_decreasing_windows, p.loss_not_decreasing_min_percent
        ),
        "overfit": lambda: overfit(history, p.overfit_evaluations, p.overfit_min_ratio),
        "overtraining": lambda: overtraining(history, facts.metric, facts.greater_is_better, facts.patience),
        "vanishing_gradient": lambda: vanishing_gradient(history, p.vanishing_gradient_norm),
        "exploding_gradient": lambda: exploding_gradient(history, p.exploding_gradient_norm, facts.fp16),
        "nonfinite_loss": lambda: nonfinite_loss(history, measured.nonfinite_loss, measured.steps),
        "data_loading": lambda: data_loading(measured, p.data_loading_max_percent, warmup, min_steps),
        "gpu_utilization": lambda: gpu_utilization(measured, p.gpu_utilization_min_percent, min_steps),
        "gpu_memory": lambda: gpu_memory(measured, p.gpu_memory_max_percent),
    }
    parameters = {
        **dataclasses.asdict(params),
        "metric_for_best_model": facts.metric,
        "greater_is_better": facts.greater_is_better,
        "patience": {"value": facts.patience, "from": facts.patience_from},
    }
    return Report({rule: rules[rule]() for rule in contract.HEALTH_RULES}, parameters)


# --- The Trainer's side ---------------------------------------------------------------------------------


class Gpu:
    """This process's GPU as torch sees it (tests pass a stand-in)."""

    def missing(self) -> str | None:
        return None if torch.cuda.is_available() else NO_GPU

    def utilization(self) -> float:
        """Percent of the last sample period a kernel ran; needs pynvml (nvidia-ml-py)."""
        return float(torch.cuda.utilization())

    def memory_percent(self) -> float:
        _, total = torch.cuda.mem_get_info()
        return 100 * torch.cuda.max_memory_allocated() / total


def _loss_of(output: Any) -> torch.Tensor | None:
    """The training loss a model's forward returned, else its logits (a loss from NaN logits is NaN)."""
    for name in ("loss", "logits"):
        value = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _on_any_process(flag: bool, args: Any) -> bool:
    """``flag`` from every process (one tiny all-reduce per step), so that all stop at the same step."""
    if args.world_size <= 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    tensor = torch.tensor([float(flag)], device=args.device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return bool(tensor.item())


def write_lines(lines: Iterable[str]) -> None:
    # tqdm.write lifts any progress bar first, so each metric line stays a line of its own.
    for line in lines:
        tqdm.write(line, file=sys.stdout)


class HealthRules(TrainerCallback):
    """Measures step timings and the GPU, stops training at a non-finite loss, and reports every rule at the
    end of training (metric lines from the world's process zero; ``report`` for the files)."""

    def __init__(
        self,
        params: HealthArguments,
        facts: RunFacts,
        gpu: Gpu | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.params, self.facts, self.gpu, self.clock = params, facts, gpu or Gpu(), clock
        self.measured = Measurements()
        self.stopped: str | None = None  # why training was stopped, when it was
        self._report: Report | None = None
        self._hook: Any = None
        self._nonfinite: float | None = None
        # When the Trainer last finished something other than fetching batches.
        self._mark: float | None = None
        self._step_start: float | None = None
        self._printed: set[str] = set()

    @property
    def report(self) -> Report:
        if self._report is None:
            raise RuntimeError("the health report is made at the end of training")
        return self._report

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.measured.gpu_missing = self.gpu.missing()
        model = kwargs.get("model")
        if model is not None:
            self._hook = model.register_forward_hook(self._watch_loss)
        self._mark = self.clock()

    def _watch_loss(self, module: Any, inputs: Any, output: Any) -> None:
        loss = _loss_of(output)
        watching = module.training and loss is not None and self._nonfinite is None
        if watching and not bool(torch.isfinite(loss.detach()).all()):  # type: ignore[union-attr]
            self._nonfinite = float(loss.detach().float().flatten()[0])  # type: ignore[union-attr]

    def _restart_wait(self, *args: Any, **kwargs: Any) -> None:
        """Logging, evaluating, saving and starting an epoch are not waiting for batches."""
        self._mark = self.clock()

    on_epoch_begin = on_log = on_evaluate = on_save = _restart_wait

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = self.clock()
        if self._mark is not None and self.measured.steps >= self.params.health_warmup_steps:
            self.measured.wait_seconds += now - self._mark
        self._step_start = now

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = self.clock()
        self.measured.steps += 1
        if self._step_start is not None and self.measured.steps > self.params.health_warmup_steps:
            self.measured.step_seconds += now - self._step_start
            self.measured.timed_steps += 1
            self.measured.last_step = state.global_step
            self._sample_utilization()
        if _on_any_process(self._nonfinite is not None, args):
            self._stop(state, control)
        self._mark = self.clock()

    def _sample_utilization(self) -> None:
        if self.measured.gpu_missing or self.measured.utilization_missing:
            return
        try:
            self.measured.utilization.append(self.gpu.utilization())
        except ModuleNotFoundError:
            self.measured.utilization_missing = (
                "reading GPU utilization needs pynvml (nvidia-ml-py), not installed"
            )
        except Exception as err:  # NVML errors vary by driver; the rule says why it was not evaluated
            self.measured.utilization_missing = f"GPU utilization could not be read: {err}"

    def _stop(self, state: Any, control: Any) -> None:
        """Stops at once: nothing of this step is evaluated or saved, and its log entry is kept."""
        value = math.nan if self._nonfinite is None else self._nonfinite
        self.measured.nonfinite_loss = (state.global_step, value)
        control.should_training_stop, control.should_log = True, True
        control.should_save = control.should_evaluate = False
        self.stopped = (
            f"training stopped at step {state.global_step}: the training loss was {value} (health rule "
            f"nonfinite_loss); no model was saved. What to do: {ADVICE['nonfinite_loss']}"
        )
        outcome = nonfinite_loss([], self.measured.nonfinite_loss, self.measured.steps)
        if state.is_world_process_zero:
            write_lines(Report({"nonfinite_loss": outcome}, {}).lines())
        self._printed.add("nonfinite_loss")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stopped:  # the epoch's evaluation and checkpoint would be of a broken model
            control.should_save = control.should_evaluate = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not self.measured.gpu_missing and self.measured.steps:
            self.measured.memory_percent = self.gpu.memory_percent()
        self._report = evaluate(state.log_history, self.params, self.facts, self.measured)
        if not state.is_world_process_zero:
            return
        for rule in self._report.fired():
            outcome = self._report.rules[rule]
            logger.warning("health rule %s fired: %s. What to do: %s", rule, outcome.reason, ADVICE[rule])
        write_lines(self._report.lines(rule for rule in contract.HEALTH_RULES if rule not in self._printed))


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, whose patience counter survives a restart: a resumed run replays it from
    the checkpoint's log history (``replay_patience``, the overtraining rule's own), so both agree."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        metric, greater_is_better = watched_metric(args)
        if metric:
            replayed = replay_patience(
                state.log_history,
                metric,
                greater_is_better,
                self.early_stopping_patience,
                self.early_stopping_threshold,
            )
            self.early_stopping_patience_counter = replayed.counter

"""What the synth and the Lambdas both know: each function's environment, the tuning grammar, the rule
catalogue, shared names.

One implementation validates a value at synthesis (``infra/config.py``) and again at the Lambda's cold
start, so what a deployment accepts is exactly what its functions accept. Standard library only: the CDK
app imports it, and both Lambda packages carry a copy beside their code, next to the contract it reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common import contract

# --- Each function's environment ----------------------------------------------------------------------
# The stacks write a function's variables from its typed record (LauncherEnvironment, PromoterEnvironment:
# ``variables()``); the function reads the same names at cold start (functions/*/settings.py) and validates
# them. How a value is written: text as is, numbers with str(), booleans as "true"/"false", lists and objects
# as JSON (keys sorted). A field left at None is not set; the reader then takes its default.
ENV_JOB_NAME_PREFIX = "JOB_NAME_PREFIX"
ENV_TUNING_JOB_PREFIX = "TUNING_JOB_PREFIX"
ENV_DATA_BUCKET = "DATA_BUCKET"
# The launcher's.
ENV_EXECUTION_ROLE_ARN = "EXECUTION_ROLE_ARN"
ENV_TRAINING_IMAGE = "TRAINING_IMAGE"
ENV_SOURCE_DIR = "SOURCE_DIR"
ENV_DATASET_PREFIX = "DATASET_PREFIX"
ENV_MODELS_PREFIX = "MODELS_PREFIX"
ENV_CHECKPOINTS_PREFIX = "CHECKPOINTS_PREFIX"
ENV_LAUNCH_LOCK_KEY = "LAUNCH_LOCK_KEY"
ENV_KMS_KEY_ARN = "KMS_KEY_ARN"
ENV_INSTANCE_TYPE = "INSTANCE_TYPE"
ENV_INSTANCE_COUNT = "INSTANCE_COUNT"
ENV_VOLUME_SIZE_GB = "VOLUME_SIZE_GB"
ENV_USE_SPOT = "USE_SPOT"
ENV_MAX_RUNTIME_SECONDS = "MAX_RUNTIME_SECONDS"
ENV_MAX_WAIT_SECONDS = "MAX_WAIT_SECONDS"
ENV_HYPERPARAMETERS = "HYPERPARAMETERS"
ENV_TAGS = "TAGS"
ENV_RETRAIN_DEBOUNCE_MINUTES = "RETRAIN_DEBOUNCE_MINUTES"
ENV_TUNING = "TUNING"
ENV_PROFILER_ENABLED = "PROFILER_ENABLED"
ENV_DEBUGGER_RULES = "DEBUGGER_RULES"
ENV_DEBUG_PREFIX = "DEBUG_PREFIX"
ENV_PROFILER_RULES = "PROFILER_RULES"
ENV_PROFILING_INTERVAL_MS = "PROFILING_INTERVAL_MS"
ENV_PROFILER_PREFIX = "PROFILER_PREFIX"
ENV_RULE_EVALUATOR_IMAGE = "RULE_EVALUATOR_IMAGE"
# The task's metric lines after the split's prefix ("loss" and the task's metrics), a JSON list: what the
# jobs' metric definitions scrape and what a tuning job may optimize. Set for a task other than the default
# one; unset, the default task's (contract.METRIC_LINE_NAMES).
ENV_METRIC_NAMES = "METRIC_NAMES"
# The promoter's.
ENV_MODEL_PACKAGE_GROUP = "MODEL_PACKAGE_GROUP"
ENV_GATE_RULES = "GATE_RULES"  # the quality gate's rules: a JSON list of GateRule objects
ENV_MAX_REGRESSION = "MAX_REGRESSION"
ENV_MANUAL_APPROVAL = "MANUAL_APPROVAL"
ENV_HEALTH_BLOCKING_RULES = "HEALTH_BLOCKING_RULES"
ENV_TOPIC_ARN = "TOPIC_ARN"
ENV_INFERENCE_IMAGE = "INFERENCE_IMAGE"
ENV_SERVING_INSTANCE_TYPE = "SERVING_INSTANCE_TYPE"
ENV_EVALUATION_PREFIX = "EVALUATION_PREFIX"
# The fields of the launcher's TUNING object.
TUNING_FIELDS = (
    "enabled",
    "strategy",
    "objective",
    "ranges",
    "max_jobs",
    "max_parallel_jobs",
    "early_stopping",
)
# TUNING's optional field: the objective's direction, one of TUNING_OBJECTIVE_TYPES, from the task's metric
# (Minimize for the loss). The default task's TUNING leaves it out where TUNING_OBJECTIVES (that task's
# objectives, which predate the field) gives the same direction; without it, the launcher reads it there.
TUNING_OBJECTIVE_TYPE = "objective_type"
TUNING_OBJECTIVE_TYPES = ("Maximize", "Minimize")


def _variable(name: str, *, optional: bool = False) -> Any:
    """A record's field that is the environment variable ``name`` (None, when optional: not set)."""
    if optional:
        return dataclasses.field(default=None, metadata={"variable": name})
    return dataclasses.field(metadata={"variable": name})


def format_value(value: object) -> str:
    """A value as its variable holds it: text as is, "true"/"false", str() of a number, else JSON (a record
    with ``to_json()``, such as a GateRule, as the object that returns)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=_json_record)


def _json_record(value: object) -> Any:
    to_json = getattr(value, "to_json", None)
    if to_json is None:
        raise TypeError(f"{type(value).__name__} cannot be written as JSON")
    return to_json()


# --- The quality gate's rules -----------------------------------------------------------------------------
# One rule per gated metric: its name after the split's prefix ("accuracy" of "test_accuracy"), which way
# is better, the threshold a model must reach (at least it when higher is better, at most it otherwise) and
# the values the metric takes: a fraction in 0..1 (accuracy, F1, mAP), or any number >= 0 (an error rate
# such as WER, which insertions push above 1). The stack writes them as GATE_RULES, a JSON list of objects
# with these keys (sorted), and the promoter reads them back at cold start; both validate them here, with
# GateRule and check_gate_rules.
GATE_RULE_FIELDS = ("higher_is_better", "metric", "threshold")
# The optional key: "fraction" (true or false), written only where it is not the direction's default
# (higher is better: a fraction; lower is better: an error rate, >= 0 and unbounded), so the rules of the
# tasks that predate it are written, and read, exactly as before.
GATE_RULE_FRACTION = "fraction"
GATE_RULES_EXPECTED = (
    'a JSON list of {"higher_is_better": true|false, "metric": "<name>", "threshold": <number>} objects '
    '(with "fraction": true|false where the metric\'s values are not what its direction says), one per metric'
)
_GATE_METRIC = re.compile(r"[a-z0-9_]+")
FRACTION_VALUES = "a fraction between 0 and 1"
NON_NEGATIVE_VALUES = "a number >= 0"


class GateRuleError(ValueError):
    """A gate rule, or a set of them, cannot be used; the message says which and why."""


@dataclass(frozen=True)
class GateRule:
    """One metric of the quality gate. ``metric``: the name after the split's prefix (``accuracy``,
    ``wer``); ``higher_is_better``: the direction, which makes ``threshold`` a minimum (True) or a maximum
    (False), and decides which way a regression against the approved models counts; ``fraction``: whether
    the metric's values lie in 0..1 (True) or are any number >= 0 (False: an error rate such as WER, which
    insertions push above 1). Left at None, it is the direction's: higher-is-better metrics are fractions,
    lower-is-better ones error rates. A job's value outside the metric's values is a broken report, never a
    score. (The configuration keeps each threshold within its metric's values at synthesis.)"""

    metric: str
    higher_is_better: bool
    threshold: float
    fraction: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not _GATE_METRIC.fullmatch(self.metric):
            raise GateRuleError(
                f"gate rule metric {self.metric!r} is not a metric name (lowercase letters, digits and '_')"
            )
        if not isinstance(self.higher_is_better, bool):
            raise GateRuleError(
                f"gate rule {self.metric!r}: higher_is_better {self.higher_is_better!r} is not true or false"
            )
        if self.fraction is None:
            object.__setattr__(self, "fraction", self.higher_is_better)
        elif not isinstance(self.fraction, bool):
            raise GateRuleError(f"gate rule {self.metric!r}: fraction {self.fraction!r} is not true or false")
        threshold = self.threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise GateRuleError(f"gate rule {self.metric!r}: threshold {threshold!r} is not a finite number")
        object.__setattr__(self, "threshold", float(threshold))

    @property
    def bound(self) -> str:
        """What the threshold is: ``minimum`` (higher is better) or ``maximum``."""
        return "minimum" if self.higher_is_better else "maximum"

    @property
    def values(self) -> str:
        """The values the metric takes, in words (``a fraction between 0 and 1``, ``a number >= 0``)."""
        return FRACTION_VALUES if self.fraction else NON_NEGATIVE_VALUES

    def accepts(self, value: float) -> bool:
        """Whether ``value`` is one the metric can take: finite and >= 0, and at most 1 for a fraction."""
        return math.isfinite(value) and value >= 0.0 and (not self.fraction or value <= 1.0)

    def to_json(self) -> dict[str, Any]:
        """The rule as one object of GATE_RULES; ``fraction`` only where it is not the direction's."""
        written: dict[str, Any] = {
            "higher_is_better": self.higher_is_better,
            "metric": self.metric,
            "threshold": self.threshold,
        }
        if self.fraction != self.higher_is_better:
            written[GATE_RULE_FRACTION] = self.fraction
        return written

    @classmethod
    def from_json(cls, value: Any) -> GateRule:
        """One object of GATE_RULES, with exactly the keys in GATE_RULE_FIELDS, and GATE_RULE_FRACTION where
        it is given."""
        keys = sorted(value) if isinstance(value, dict) else None
        if keys not in (sorted(GATE_RULE_FIELDS), sorted((*GATE_RULE_FIELDS, GATE_RULE_FRACTION))):
            raise GateRuleError(
                f"a gate rule is an object with the keys {', '.join(GATE_RULE_FIELDS)} "
                f"(and optionally {GATE_RULE_FRACTION}), not {value!r}"
            )
        return cls(
            metric=value["metric"],
            higher_is_better=value["higher_is_better"],
            threshold=value["threshold"],
            fraction=value.get(GATE_RULE_FRACTION),
        )


def check_gate_rules(rules: Sequence[GateRule]) -> tuple[GateRule, ...]:
    """The rules, when they can gate a model: at least one, each a GateRule, no metric named twice."""
    rules = tuple(rules)
    if not rules:
        raise GateRuleError("the gate needs at least one rule")
    strays = [rule for rule in rules if not isinstance(rule, GateRule)]
    if strays:
        raise GateRuleError(f"not a gate rule: {strays[0]!r}")
    metrics = [rule.metric for rule in rules]
    twice = sorted({metric for metric in metrics if metrics.count(metric) > 1})
    if twice:
        raise GateRuleError(f"one rule per metric: {', '.join(twice)} has more than one")
    return rules


def gate_rules_from_json(value: Any) -> tuple[GateRule, ...]:
    """GATE_RULES once parsed as JSON: a list of GateRule objects (``GateRule.from_json``), checked."""
    if not isinstance(value, list):
        raise GateRuleError(f"not a list of gate rules: {value!r}")
    return check_gate_rules([GateRule.from_json(item) for item in value])


# --- The task --------------------------------------------------------------------------------------------
# The task a deployment of no ``task`` trains (tasks.DEFAULT_TASK; a test keeps the two equal): its jobs name
# no task (no ``contract.TASK_ARGUMENT`` hyperparameter), as they predate tasks. The promoter, which carries
# no task modules, records it on the model packages of such jobs.
DEFAULT_TASK = "classification"


# --- The task's metric lines ------------------------------------------------------------------------------
# METRIC_NAMES: the names a task's metric lines carry after the split's prefix. The launcher scrapes
# contract.job_metric_names(names) (``MetricDefinitions``), within SageMaker's limit.
METRIC_NAMES_EXPECTED = (
    f"a JSON list of different metric names (lowercase letters, digits and '_'), {contract.LOSS_LINE!r} "
    f"among them, whose metric definitions fit SageMaker's {contract.MAX_METRIC_DEFINITIONS}"
)


class MetricNamesError(ValueError):
    """A task's metric line names cannot be scraped; the message says why."""


def check_metric_names(names: Any) -> tuple[str, ...]:
    """The metric line names of a task, when a training job can scrape them: a list of different names, the
    loss among them (every split prints it, and a tuning job may minimize it), and all of the job's metric
    definitions within SageMaker's limit (CreateTrainingJob, AlgorithmSpecification.MetricDefinitions: at
    most 40 items)."""
    if not isinstance(names, list | tuple) or not all(
        isinstance(name, str) and _GATE_METRIC.fullmatch(name) for name in names
    ):
        raise MetricNamesError(f"not a list of metric names (lowercase letters, digits and '_'): {names!r}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise MetricNamesError(f"each metric once: {', '.join(twice)} is named more than once")
    if contract.LOSS_LINE not in names:
        raise MetricNamesError(f"{contract.LOSS_LINE!r} is not among the metric names {list(names)}")
    count = len(contract.job_metric_names(names))
    if count > contract.MAX_METRIC_DEFINITIONS:
        raise MetricNamesError(
            f"{count} metric definitions, SageMaker allows {contract.MAX_METRIC_DEFINITIONS} per job"
        )
    return tuple(names)


class _Environment:
    """A function's environment as a record: one field per variable, in the order the stack sets them."""

    def variables(self) -> dict[str, str]:
        """The environment variables, each value formatted for its reader; None fields are left out."""
        return {
            f.metadata["variable"]: format_value(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) is not None
        }

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every variable the record can set."""
        return tuple(f.metadata["variable"] for f in dataclasses.fields(cls))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class LauncherEnvironment(_Environment):
    """What the launcher reads at cold start (lambdas/launcher/settings.py). The rules' fields are set
    only with the rules they serve."""

    job_name_prefix: str = _variable(ENV_JOB_NAME_PREFIX)
    execution_role_arn: str = _variable(ENV_EXECUTION_ROLE_ARN)
    training_image: str = _variable(ENV_TRAINING_IMAGE)
    source_dir: str = _variable(ENV_SOURCE_DIR)
    data_bucket: str = _variable(ENV_DATA_BUCKET)
    dataset_prefix: str = _variable(ENV_DATASET_PREFIX)
    models_prefix: str = _variable(ENV_MODELS_PREFIX)
    checkpoints_prefix: str = _variable(ENV_CHECKPOINTS_PREFIX)
    launch_lock_key: str = _variable(ENV_LAUNCH_LOCK_KEY)
    kms_key_arn: str = _variable(ENV_KMS_KEY_ARN)
    instance_type: str = _variable(ENV_INSTANCE_TYPE)
    instance_count: int = _variable(ENV_INSTANCE_COUNT)
    volume_size_gb: int = _variable(ENV_VOLUME_SIZE_GB)
    use_spot: bool = _variable(ENV_USE_SPOT)
    max_runtime_seconds: int = _variable(ENV_MAX_RUNTIME_SECONDS)
    max_wait_seconds: int = _variable(ENV_MAX_WAIT_SECONDS)
    hyperparameters: Mapping[str, str] = _variable(ENV_HYPERPARAMETERS)
    tags: Mapping[str, str] = _variable(ENV_TAGS)
    retrain_debounce_minutes: int = _variable(ENV_RETRAIN_DEBOUNCE_MINUTES)
    tuning_job_prefix: str = _variable(ENV_TUNING_JOB_PREFIX)
    tuning: Mapping[str, Any] = _variable(ENV_TUNING)  # the fields in TUNING_FIELDS
    profiler_enabled: bool = _variable(ENV_PROFILER_ENABLED)
    debugger_rules: Sequence[str] | None = _variable(ENV_DEBUGGER_RULES, optional=True)
    debug_prefix: str | None = _variable(ENV_DEBUG_PREFIX, optional=True)
    profiler_rules: Sequence[str] | None = _variable(ENV_PROFILER_RULES, optional=True)
    profiling_interval_ms: int | None = _variable(ENV_PROFILING_INTERVAL_MS, optional=True)
    profiler_prefix: str | None = _variable(ENV_PROFILER_PREFIX, optional=True)
    rule_evaluator_image: str | None = _variable(ENV_RULE_EVALUATOR_IMAGE, optional=True)
    # The task's metric lines; None (unset) for the default task's.
    metric_names: Sequence[str] | None = _variable(ENV_METRIC_NAMES, optional=True)

    def __post_init__(self) -> None:
        # The checks the launcher's settings run on METRIC_NAMES and TUNING at cold start, here at synthesis.
        names: tuple[str, ...] = contract.METRIC_LINE_NAMES
        if self.metric_names is not None:
            try:
                names = check_metric_names(self.metric_names)
            except MetricNamesError as error:
                raise MetricNamesError(f"{ENV_METRIC_NAMES} is invalid: {error}") from None
        try:
            tuning_objective_type(self.tuning.get("objective"), self.tuning.get(TUNING_OBJECTIVE_TYPE), names)
        except TuningObjectiveError as error:
            raise TuningObjectiveError(f"{ENV_TUNING} is invalid: {error}") from None


@dataclass(frozen=True, kw_only=True)
class PromoterEnvironment(_Environment):
    """What the promoter reads at cold start (lambdas/promoter/settings.py)."""

    model_package_group: str = _variable(ENV_MODEL_PACKAGE_GROUP)
    job_name_prefix: str = _variable(ENV_JOB_NAME_PREFIX)
    tuning_job_prefix: str = _variable(ENV_TUNING_JOB_PREFIX)
    gate_rules: tuple[GateRule, ...] = _variable(ENV_GATE_RULES)
    max_regression: float = _variable(ENV_MAX_REGRESSION)
    manual_approval: bool = _variable(ENV_MANUAL_APPROVAL)
    health_blocking_rules: Sequence[str] = _variable(ENV_HEALTH_BLOCKING_RULES)
    topic_arn: str = _variable(ENV_TOPIC_ARN)
    inference_image: str = _variable(ENV_INFERENCE_IMAGE)
    serving_instance_type: str = _variable(ENV_SERVING_INSTANCE_TYPE)
    data_bucket: str = _variable(ENV_DATA_BUCKET)
    evaluation_prefix: str = _variable(ENV_EVALUATION_PREFIX)

    def __post_init__(self) -> None:
        # The check the promoter's settings run on GATE_RULES at cold start, here at synthesis.
        try:
            check_gate_rules(self.gate_rules)
        except GateRuleError as error:
            raise GateRuleError(f"{ENV_GATE_RULES} is invalid: {error}") from None


# --- Observability -------------------------------------------------------------------------------------
# The CloudWatch namespace of the Lambdas' embedded metrics, and each function's service name (the
# ``service`` dimension of its metrics, the ``service`` key of its log lines, its X-Ray segment).
METRICS_NAMESPACE = "AcousticShield"
LAUNCHER_SERVICE = "launcher"
PROMOTER_SERVICE = "promoter"
# One count per invocation: what a launch did, and what the gate decided for a newly registered model.
LAUNCH_OUTCOMES = ("started", "skipped", "duplicate")
GATE_DECISIONS = ("Approved", "Rejected", "PendingManualApproval")


def launch_metric(outcome: str) -> str:
    """The metric a launch with this outcome counts in (``LaunchStarted``, ``LaunchSkipped``, ...)."""
    if outcome not in LAUNCH_OUTCOMES:
        raise ValueError(f"launch outcome {outcome!r} is not one of {', '.join(LAUNCH_OUTCOMES)}")
    return f"Launch{outcome.capitalize()}"


def gate_metric(decision: str) -> str:
    """The metric a gate decision counts in (``ModelApproved``, ``ModelRejected``, ...)."""
    if decision not in GATE_DECISIONS:
        raise ValueError(f"gate decision {decision!r} is not one of {', '.join(GATE_DECISIONS)}")
    return f"Model{decision}"


# --- The promoter's records in the data bucket ---------------------------------------------------------
# Each message is sent once; markers under evaluation/<job>/notifications/ record what was sent.
NOTIFICATIONS = "notifications"
# The lease that lets one delivery of a job's event register it: evaluation/<job>/registration.lease.json.
REGISTRATION_LEASE = "registration.lease.json"

# --- SageMaker Debugger and Profiler built-in rules ------------------------------------------------------
# Rule parameters are those of the SageMaker Python SDK's ``sagemaker.debugger.rule_configs``
# (smdebug_rulesconfig 1.0.1); the launcher builds the request (launcher/logic.py).
# Built-in Debugger rules that read the tensors smdebug's hook saves, and the collections each needs.
DEBUGGER_RULES: dict[str, dict[str, dict[str, str]]] = {
    "LossNotDecreasing": {"losses": {"save_interval": "500"}},
    "Overfit": {},
    "Overtraining": {},
}
# Built-in Profiler rules that read system metrics (CPU, GPU, memory, I/O), which SageMaker collects for
# any training job with a ProfilerConfig; the framework-metric rules need smdebug in the image.
PROFILER_RULES = (
    "LowGPUUtilization",
    "ProfilerReport",
    "CPUBottleneck",
    "IOBottleneck",
    "GPUMemoryIncrease",
    "BatchSize",
    "LoadBalancing",
    "OverallSystemUsage",
)
# ProfilerConfig.ProfilingIntervalInMilliseconds accepts exactly these.
PROFILING_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)
# SageMaker allows at most 20 rules of each kind on a training job.
MAX_RULES = 20


def unknown_rules(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """The names in ``names`` that are not built-in rules of that kind."""
    return [name for name in names if name not in known]


# --- Hyperparameter tuning ------------------------------------------------------------------------------
# The configuration validates ``tuning_ranges`` with this parser at synthesis and the launcher parses the
# same text again at cold start. Only the ``train.py`` arguments an event may set (the contract) can be
# tuned, within the same bounds.
# SageMaker's limit on tuning job names, and the characters of the trigger's digest that end each one.
TUNING_NAME_LIMIT = 32
TUNING_SUFFIX_LENGTH = 8
# SageMaker's limit on training job names, and what the launcher adds to its prefix for each: a timestamp
# (YYYYmmdd-HHMMSS, or "manual"), "-" and 8 characters of the trigger's digest.
JOB_NAME_LIMIT = 63
JOB_SUFFIX_LENGTH = 24
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband")
TUNING_EARLY_STOPPING = ("Auto", "Off")
# Metrics train.py prints after every evaluation (validation split), and which way is better: the default
# task's, which a TUNING without objective_type may name.
TUNING_OBJECTIVES = contract.TUNING_OBJECTIVES
TUNING_SCALINGS = {
    "auto": "Auto",
    "linear": "Linear",
    "log": "Logarithmic",
    "reverse-log": "ReverseLogarithmic",
}
DEFAULT_TUNING_RANGES = "learning_rate=1e-5..1e-3:log, per_device_train_batch_size=4|8|16"
TUNING_GRAMMAR = "name=low..high[:log|:linear|:reverse-log] or name=a|b|c, comma-separated"
# SageMaker's limits: names are 32-character hyperparameter keys, at most 30 categorical values.
_MAX_TUNING_VALUES = 30


class RangeError(ValueError):
    """A tuning range cannot be used; the message names it and says what is allowed."""


class TuningObjectiveError(ValueError):
    """A tuning objective, or its direction, cannot be used; the message says what is allowed."""


def tuning_objectives(line_names: Sequence[str]) -> tuple[str, ...]:
    """What a tuning job may optimize for a task whose metric lines are ``line_names``: each of them on the
    validation split (``eval_<name>``), which train.py prints after every evaluation."""
    return tuple(f"{contract.METRIC_SPLITS[0]}_{name}" for name in line_names)


def tuning_objective_type(objective: Any, objective_type: Any, line_names: Sequence[str]) -> str:
    """The direction a tuning job optimizes ``objective`` in: ``objective_type`` (TUNING's field), else what
    TUNING_OBJECTIVES says. The objective must be one of ``tuning_objectives(line_names)``."""
    allowed = tuning_objectives(line_names)
    if objective not in allowed:
        raise TuningObjectiveError(f"objective {objective!r} is not one of {', '.join(allowed)}")
    if objective_type is None:
        if objective not in TUNING_OBJECTIVES:
            raise TuningObjectiveError(
                f"objective {objective!r} needs an {TUNING_OBJECTIVE_TYPE}: "
                f"{' or '.join(TUNING_OBJECTIVE_TYPES)}"
            )
        return TUNING_OBJECTIVES[objective]
    if objective_type not in TUNING_OBJECTIVE_TYPES:
        raise TuningObjectiveError(
            f"{TUNING_OBJECTIVE_TYPE} {objective_type!r} is not {' or '.join(TUNING_OBJECTIVE_TYPES)}"
        )
    return str(objective_type)


def _number(name: str, text: str, kind: str) -> float:
    try:
        value = float(text) if kind == "float" else int(text, 10)
    except ValueError:
        expected = "a number" if kind == "float" else "an integer"
        raise RangeError(f"tuning range {name!r}: {text!r} is not {expected}") from None
    if not math.isfinite(value):
        raise RangeError(f"tuning range {name!r}: {text!r} is not finite")
    _, low, high = contract.EVENT_HYPERPARAMETERS[name]
    if (low is not None and value < low) or (high is not None and value > high):
        raise RangeError(f"tuning range {name!r}: {text} is outside [{low:g}, {high:g}]")
    return value


def _kind(name: str) -> str:
    if name not in contract.EVENT_HYPERPARAMETERS:
        allowed = ", ".join(
            n for n, spec in contract.EVENT_HYPERPARAMETERS.items() if spec[0] in ("float", "int")
        )
        raise RangeError(
            f"tuning range {name!r}: not a train.py argument that can be tuned; tunable: {allowed}"
        )
    kind = contract.EVENT_HYPERPARAMETERS[name][0]
    if kind not in ("float", "int"):
        raise RangeError(f"tuning range {name!r}: only numeric arguments are tuned, {name!r} is {kind}")
    return kind


def _range(name: str, kind: str, text: str) -> tuple[str, dict[str, str]]:
    bounds, _, scaling_text = text.partition(":")
    low_text, _, high_text = (part.strip() for part in bounds.partition(".."))
    scaling = TUNING_SCALINGS.get(scaling_text.strip() or "auto")
    if scaling is None:
        raise RangeError(
            f"tuning range {name!r}: scaling {scaling_text!r} is not one of {', '.join(TUNING_SCALINGS)}"
        )
    low, high = _number(name, low_text, kind), _number(name, high_text, kind)
    if not low < high:
        raise RangeError(f"tuning range {name!r}: {low_text}..{high_text} must go from low to high")
    if scaling == "Logarithmic" and low <= 0:
        raise RangeError(f"tuning range {name!r}: a logarithmic range must start above 0")
    if scaling == "ReverseLogarithmic" and (kind == "int" or low < 0 or high >= 1):
        raise RangeError(f"tuning range {name!r}: a reverse-log range is continuous and lies within [0, 1)")
    family = "ContinuousParameterRanges" if kind == "float" else "IntegerParameterRanges"
    return family, {"Name": name, "MinValue": low_text, "MaxValue": high_text, "ScalingType": scaling}


def _categorical(name: str, kind: str, text: str) -> dict[str, Any]:
    values = [value.strip() for value in text.split("|")]
    for value in values:
        _number(name, value, kind)
    if len(values) < 2 or len(set(values)) != len(values) or len(values) > _MAX_TUNING_VALUES:
        raise RangeError(
            f"tuning range {name!r}: give 2 to {_MAX_TUNING_VALUES} different values (a single value is a "
            "static hyperparameter: set it in the configuration instead)"
        )
    return {"Name": name, "Values": values}


def parse_ranges(spec: str) -> dict[str, list[dict[str, Any]]]:
    """``tuning_ranges`` as CreateHyperParameterTuningJob's ``ParameterRanges``.

    ``learning_rate=1e-5..1e-3:log`` is a continuous range (an integer one for integer arguments),
    ``per_device_train_batch_size=4|8|16`` a categorical one; values keep their spelling.
    """
    ranges: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, equals, text = (part.strip() for part in item.partition("="))
        if not equals or not text:
            raise RangeError(f"tuning range {item!r} is not {TUNING_GRAMMAR}")
        if name in seen:
            raise RangeError(f"tuning range {name!r} is given twice")
        seen.add(name)
        kind = _kind(name)
        if ".." in text:
            family, entry = _range(name, kind, text)
            ranges.setdefault(family, []).append(entry)
        else:
            ranges.setdefault("CategoricalParameterRanges", []).append(_categorical(name, kind, text))
    if not seen:
        raise RangeError(f"tuning ranges are empty; give at least one: {TUNING_GRAMMAR}")
    return ranges


def tuned_names(ranges: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The hyperparameters a tuning job sets per trial (they leave the static hyperparameters)."""
    return {entry["Name"] for entries in ranges.values() for entry in entries}

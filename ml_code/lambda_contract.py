"""What the synth and the Lambdas both know: each function's environment, the tuning grammar, the rule
catalogue, shared names.

One implementation validates a value at synthesis (``stacks/config.py``) and again at the Lambda's cold
start, so what a deployment accepts is exactly what its functions accept. Standard library only: the CDK
app imports it, and both Lambda packages carry a copy beside their code, next to the contract it reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:  # the Lambda packages carry the contract beside this module
    from . import contract
except ImportError:  # the training source dir, run as the import root, never imports this module
    import contract  # type: ignore[no-redef]

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
# The promoter's.
ENV_MODEL_PACKAGE_GROUP = "MODEL_PACKAGE_GROUP"
ENV_MIN_ACCURACY = "MIN_ACCURACY"
ENV_MIN_F1 = "MIN_F1"
ENV_MIN_CLIP_ACCURACY = "MIN_CLIP_ACCURACY"
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


def _variable(name: str, *, optional: bool = False) -> Any:
    """A record's field that is the environment variable ``name`` (None, when optional: not set)."""
    if optional:
        return dataclasses.field(default=None, metadata={"variable": name})
    return dataclasses.field(metadata={"variable": name})


def format_value(value: object) -> str:
    """A value as its variable holds it: text as is, "true"/"false", str() of a number, else JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


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
    """What the launcher reads at cold start (functions/launcher/settings.py). The rules' fields are set
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


@dataclass(frozen=True, kw_only=True)
class PromoterEnvironment(_Environment):
    """What the promoter reads at cold start (functions/promoter/settings.py)."""

    model_package_group: str = _variable(ENV_MODEL_PACKAGE_GROUP)
    job_name_prefix: str = _variable(ENV_JOB_NAME_PREFIX)
    tuning_job_prefix: str = _variable(ENV_TUNING_JOB_PREFIX)
    min_accuracy: float = _variable(ENV_MIN_ACCURACY)
    min_f1: float = _variable(ENV_MIN_F1)
    min_clip_accuracy: float = _variable(ENV_MIN_CLIP_ACCURACY)
    max_regression: float = _variable(ENV_MAX_REGRESSION)
    manual_approval: bool = _variable(ENV_MANUAL_APPROVAL)
    health_blocking_rules: Sequence[str] = _variable(ENV_HEALTH_BLOCKING_RULES)
    topic_arn: str = _variable(ENV_TOPIC_ARN)
    inference_image: str = _variable(ENV_INFERENCE_IMAGE)
    serving_instance_type: str = _variable(ENV_SERVING_INSTANCE_TYPE)
    data_bucket: str = _variable(ENV_DATA_BUCKET)
    evaluation_prefix: str = _variable(ENV_EVALUATION_PREFIX)


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
TUNING_STRATEGIES = ("Bayesian", "Random", "Hyperband")
TUNING_EARLY_STOPPING = ("Auto", "Off")
# Metrics train.py prints after every evaluation (validation split), and which way is better.
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

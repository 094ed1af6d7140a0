"""The launcher's environment, validated once per container into frozen settings.

Every variable is read here, through the reader both Lambdas share (``lambdas/environment.py``), so a
misconfigured launcher names every variable to fix in one error. The names, and how each value is
written: ``lambda_contract.LauncherEnvironment``, the record the stack fills (infra/training/launcher.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common import contract, lambda_contract
from lambdas import environment

T = TypeVar("T")

# Tuning job names end in the trigger's digest, within SageMaker's limit: the prefix gets the rest.
_TUNING_PREFIX_ROOM = lambda_contract.TUNING_NAME_LIMIT - lambda_contract.TUNING_SUFFIX_LENGTH
_TUNING_PREFIX_EXPECTED = (
    f"letters, digits and '-', at most {_TUNING_PREFIX_ROOM} characters: tuning job names end in "
    f"{lambda_contract.TUNING_SUFFIX_LENGTH} characters and SageMaker allows {lambda_contract.TUNING_NAME_LIMIT}"
)
_AT_LEAST_ONE = "a whole number >= 1"


class SettingsError(ValueError):
    """The launcher's configuration cannot be used: one or more environment variables are missing or
    invalid (the message names each one), or a job name made with it would be too long."""


@dataclass(frozen=True)
class TuningSettings:
    """What a tuning job searches and how many trials it may run (``TUNING``, ``TUNING_JOB_PREFIX``)."""

    job_name_prefix: str
    enabled: bool  # whether scheduled runs tune; an event's "tune" decides for itself
    strategy: str
    objective: str
    ranges: dict[str, list[dict[str, Any]]]
    max_jobs: int
    max_parallel_jobs: int
    early_stopping: str
    objective_type: str = ""  # Maximize or Minimize: TUNING's objective_type, else TUNING_OBJECTIVES'

    @classmethod
    def from_json(
        cls, prefix: str, text: str, metric_names: Sequence[str] = contract.METRIC_LINE_NAMES
    ) -> TuningSettings:
        """``TUNING_JOB_PREFIX`` and ``TUNING`` as the stack sets them, for a task whose metric lines are
        ``metric_names``; a SettingsError names every problem."""
        reader = environment.Reader(
            {lambda_contract.ENV_TUNING_JOB_PREFIX: prefix, lambda_contract.ENV_TUNING: text}
        )
        settings = _tuning(reader, tuple(metric_names))
        reader.raise_problems(SettingsError, "launcher tuning")
        return settings


@dataclass(frozen=True)
class RuleSettings:
    """Debugger and Profiler rules for single training jobs (tuning trials cannot carry them)."""

    image_uri: str = ""
    debugger_rules: tuple[str, ...] = ()
    debug_prefix: str = ""
    profiler_enabled: bool = False
    profiler_rules: tuple[str, ...] = ()
    profiler_prefix: str = ""
    profiling_interval_ms: int = 500


@dataclass(frozen=True)
class LaunchSettings:
    """The launcher's environment, validated once at cold start."""

    job_name_prefix: str
    role_arn: str
    image_uri: str
    source_dir: str
    bucket: str
    dataset_prefix: str
    models_prefix: str
    checkpoints_prefix: str
    lock_key: str  # the lease that lets one launch at a time through (lambdas/lease.py)
    kms_key_arn: str
    instance_type: str
    instance_count: int
    volume_size_gb: int
    use_spot: bool
    max_runtime_seconds: int
    max_wait_seconds: int
    region: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tuning: TuningSettings | None = None  # None: this launcher starts no tuning jobs
    rules: RuleSettings = field(default_factory=RuleSettings)
    debounce_minutes: int = 0  # new-data events within this many minutes of a job start none
    # The task's metric lines after the split's prefix (METRIC_NAMES): what the jobs scrape.
    metric_names: tuple[str, ...] = contract.METRIC_LINE_NAMES

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> LaunchSettings:
        """Reads and validates every variable; reports all problems at once."""
        reader = environment.Reader(env)
        default_names: tuple[str, ...] = contract.METRIC_LINE_NAMES
        metric_names = reader.json_value(
            lambda_contract.ENV_METRIC_NAMES,
            _metric_names,
            lambda_contract.METRIC_NAMES_EXPECTED,
            default_names,
            required=False,
        )
        settings = cls(
            job_name_prefix=reader.text(
                lambda_contract.ENV_JOB_NAME_PREFIX,
                "a training job name prefix such as 'acoustic-shield-dev-train-'",
            ),
            role_arn=reader.text(
                lambda_contract.ENV_EXECUTION_ROLE_ARN, "the ARN of the role training jobs run as"
            ),
            image_uri=reader.text(lambda_contract.ENV_TRAINING_IMAGE, "the training image URI"),
            # Any characters between the scheme and the suffix, newlines included ((?s)), as always.
            source_dir=reader.text(
                lambda_contract.ENV_SOURCE_DIR,
                "an s3:// URL of a .tar.gz (the source dir)",
                pattern=r"(?s)s3://.*\.gz",
            ),
            bucket=reader.text(lambda_contract.ENV_DATA_BUCKET, "the data bucket's name"),
            dataset_prefix=reader.text(
                lambda_contract.ENV_DATASET_PREFIX, "a dataset key prefix such as 'datasets/esc50/'"
            ),
            models_prefix=reader.text(
                lambda_contract.ENV_MODELS_PREFIX, "the model artifacts' key prefix such as 'models/'"
            ),
            checkpoints_prefix=reader.text(
                lambda_contract.ENV_CHECKPOINTS_PREFIX, "the checkpoints' key prefix such as 'checkpoints/'"
            ),
            lock_key=reader.text(
                lambda_contract.ENV_LAUNCH_LOCK_KEY,
                "the key of the launch lease such as 'locks/launcher.json'",
            ),
            kms_key_arn=reader.text(
                lambda_contract.ENV_KMS_KEY_ARN, "the ARN of the KMS key for job volumes and outputs"
            ),
            instance_type=reader.text(
                lambda_contract.ENV_INSTANCE_TYPE, "a training instance type such as 'ml.g5.xlarge'"
            ),
            instance_count=reader.integer(lambda_contract.ENV_INSTANCE_COUNT, _AT_LEAST_ONE),
            volume_size_gb=reader.integer(lambda_contract.ENV_VOLUME_SIZE_GB, _AT_LEAST_ONE),
            use_spot=reader.boolean(lambda_contract.ENV_USE_SPOT),
            debounce_minutes=reader.integer(
                lambda_contract.ENV_RETRAIN_DEBOUNCE_MINUTES, "a whole number >= 0", minimum=0, required=False
            ),
            max_runtime_seconds=reader.integer(lambda_contract.ENV_MAX_RUNTIME_SECONDS, _AT_LEAST_ONE),
            max_wait_seconds=reader.integer(lambda_contract.ENV_MAX_WAIT_SECONDS, _AT_LEAST_ONE),
            region=reader.text("AWS_REGION", "the function's region (Lambda sets it)"),
            hyperparameters=reader.json_value(
                lambda_contract.ENV_HYPERPARAMETERS,
                _strings,
                "a JSON object of strings (train.py's arguments)",
                {},
            ),
            tags=reader.json_value(
                lambda_contract.ENV_TAGS, _strings, "a JSON object of strings (the jobs' tags)", {}
            ),
            # Optional: a launcher deployed without them starts single training jobs without rules.
            tuning=(
                _tuning(reader, metric_names)
                if env.get(lambda_contract.ENV_TUNING_JOB_PREFIX, "").strip()
                else None
            ),
            rules=_rules(reader),
            metric_names=metric_names,
        )
        reader.raise_problems(SettingsError, "launcher")
        return settings


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError
    return value


def _metric_names(value: Any) -> tuple[str, ...]:
    """METRIC_NAMES, checked as the stack checked it at synthesis."""
    try:
        return lambda_contract.check_metric_names(value)
    except lambda_contract.MetricNamesError as error:
        raise environment.Invalid(str(error)) from None


def _tuning_prefix(raw: str) -> str:
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*-*", raw) or len(raw) > _TUNING_PREFIX_ROOM:
        raise ValueError
    return raw


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError
    return value


class _Fields:
    """The fields of a JSON object held by one variable; each wrong one is a problem named ``NAME.field``."""

    def __init__(self, reader: environment.Reader, name: str, value: dict[str, Any]) -> None:
        self.reader, self.name, self.value = reader, name, value

    def get(self, key: str, kind: type[T], expected: str, allowed: Sequence[Any] | None = None) -> T | None:
        """The field if it is a ``kind`` (a bool is no int) and, with ``allowed``, one of those; else None."""
        value = self.value.get(key)
        if (
            isinstance(value, kind)
            and not (kind is int and isinstance(value, bool))
            and (allowed is None or value in allowed)
        ):
            return value
        self.reader.invalid(f"{self.name}.{key}", value, expected)
        return None

    def choice(self, key: str, allowed: Sequence[str]) -> str | None:
        return self.get(key, str, f"one of {', '.join(allowed)}", allowed)


def _objective(fields: _Fields, metric_names: tuple[str, ...]) -> tuple[str, str]:
    """TUNING's objective, one of the task's validation metrics, and its direction: the optional
    objective_type, else what TUNING_OBJECTIVES says (the default task's objectives predate the field)."""
    objective = fields.choice("objective", lambda_contract.tuning_objectives(metric_names))
    if objective is None:
        return "", ""
    given = fields.value.get(lambda_contract.TUNING_OBJECTIVE_TYPE)
    try:
        return objective, lambda_contract.tuning_objective_type(objective, given, metric_names)
    except lambda_contract.TuningObjectiveError as error:
        expected = " or ".join(lambda_contract.TUNING_OBJECTIVE_TYPES)
        field_name = f"{fields.name}.{lambda_contract.TUNING_OBJECTIVE_TYPE}"
        fields.reader.invalid(field_name, given, expected, str(error))
        return objective, ""


def _tuning(reader: environment.Reader, metric_names: tuple[str, ...]) -> TuningSettings:
    """Both variables are required here; a field with a problem is left at a placeholder. The objective is
    one of the validation metrics of the task whose metric lines are ``metric_names``."""
    prefix = reader.read(lambda_contract.ENV_TUNING_JOB_PREFIX, _tuning_prefix, _TUNING_PREFIX_EXPECTED, "")
    raw = reader.json_value(
        lambda_contract.ENV_TUNING,
        _json_object,
        "a JSON object of " + ", ".join(lambda_contract.TUNING_FIELDS),
        None,
    )
    if raw is None:  # missing or not an object: its fields would only repeat that
        return TuningSettings(prefix, False, "", "", {}, 0, 0, "")
    fields = _Fields(reader, lambda_contract.ENV_TUNING, raw)
    enabled = fields.get("enabled", bool, "true or false")
    strategy = fields.choice("strategy", lambda_contract.TUNING_STRATEGIES)
    objective, objective_type = _objective(fields, metric_names)
    spec = fields.get("ranges", str, f"a string: {lambda_contract.TUNING_GRAMMAR}")
    max_jobs = fields.get("max_jobs", int, "an integer")
    max_parallel_jobs = fields.get("max_parallel_jobs", int, "an integer")
    early_stopping = fields.choice("early_stopping", lambda_contract.TUNING_EARLY_STOPPING)
    ranges: dict[str, list[dict[str, Any]]] = {}
    if spec is not None:
        try:
            ranges = lambda_contract.parse_ranges(spec)
        except lambda_contract.RangeError as err:
            reader.invalid("TUNING.ranges", spec, lambda_contract.TUNING_GRAMMAR, str(err))
    if max_jobs is not None and max_parallel_jobs is not None and not 1 <= max_parallel_jobs <= max_jobs:
        reader.invalid("TUNING.max_parallel_jobs", max_parallel_jobs, f"1..max_jobs ({max_jobs})")
    if strategy == "Hyperband" and early_stopping not in (None, "Off"):
        reader.invalid(
            "TUNING.early_stopping", early_stopping, "'Off' with Hyperband (it stops trials itself)"
        )
    return TuningSettings(
        job_name_prefix=prefix,
        enabled=bool(enabled),
        strategy=strategy or "",
        objective=objective,
        ranges=ranges,
        max_jobs=max_jobs or 0,
        max_parallel_jobs=max_parallel_jobs or 0,
        early_stopping=early_stopping or "",
        objective_type=objective_type,
    )


def _rule_names(known: Sequence[str]) -> Callable[[Any], tuple[str, ...]]:
    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError
        unknown = lambda_contract.unknown_rules(value, known)
        if unknown:
            raise environment.Invalid(f"unknown: {', '.join(unknown)}")
        if len(value) > lambda_contract.MAX_RULES or len(set(value)) != len(value):
            raise ValueError
        return tuple(value)

    return convert


def _rule_list(reader: environment.Reader, name: str, known: Sequence[str]) -> tuple[str, ...]:
    expected = f"a JSON list of at most {lambda_contract.MAX_RULES} different names of {', '.join(known)}"
    return reader.json_value(name, _rule_names(known), expected, (), required=False)


# The rules' variables that are needed only when the rules they serve are on, and what each holds.
_RULE_VARIABLES = {
    lambda_contract.ENV_RULE_EVALUATOR_IMAGE: "the Debugger rule evaluator image URI",
    lambda_contract.ENV_DEBUG_PREFIX: "the key prefix Debugger writes under, such as 'debug/'",
    lambda_contract.ENV_PROFILER_PREFIX: "the key prefix the profiler writes under, such as 'profiler/'",
}


def _rules(reader: environment.Reader) -> RuleSettings:
    """Optional: each variable is needed only when the rules it serves are on."""

    def optional(name: str) -> str:
        return reader.text(name, _RULE_VARIABLES[name], required=False)

    settings = RuleSettings(
        image_uri=optional(lambda_contract.ENV_RULE_EVALUATOR_IMAGE),
        debugger_rules=_rule_list(
            reader, lambda_contract.ENV_DEBUGGER_RULES, tuple(lambda_contract.DEBUGGER_RULES)
        ),
        debug_prefix=optional(lambda_contract.ENV_DEBUG_PREFIX),
        profiler_enabled=reader.boolean(lambda_contract.ENV_PROFILER_ENABLED, default=False),
        profiler_rules=_rule_list(reader, lambda_contract.ENV_PROFILER_RULES, lambda_contract.PROFILER_RULES),
        profiler_prefix=optional(lambda_contract.ENV_PROFILER_PREFIX),
        profiling_interval_ms=reader.integer(
            lambda_contract.ENV_PROFILING_INTERVAL_MS,
            "one of " + ", ".join(str(ms) for ms in lambda_contract.PROFILING_INTERVALS_MS),
            allowed=lambda_contract.PROFILING_INTERVALS_MS,
            default=500,
            required=False,
        ),
    )
    any_rules = bool(settings.debugger_rules or (settings.profiler_enabled and settings.profiler_rules))
    needed = {
        lambda_contract.ENV_RULE_EVALUATOR_IMAGE: (settings.image_uri, any_rules),
        lambda_contract.ENV_DEBUG_PREFIX: (settings.debug_prefix, bool(settings.debugger_rules)),
        lambda_contract.ENV_PROFILER_PREFIX: (settings.profiler_prefix, settings.profiler_enabled),
    }
    for name, (value, is_needed) in needed.items():
        if is_needed and not value:
            reader.missing(name, _RULE_VARIABLES[name], "the rules need it")
    return settings

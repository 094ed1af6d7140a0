"""The app's one typed configuration, built once in app.py from cdk.json context.

Resolution order for every key (later wins):
  1. the default declared here, or the task's own for a train.py argument it sets (``task_defaults``),
  2. ``cdk.json`` → ``context.acoustic_shield.<env>`` (``env`` is ``-c env=dev|prod``; default ``dev``),
  3. ``-c <key>=<value>`` on the command line.

Constructs receive these objects and never read context or the environment themselves. An invalid
value fails synth with a message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tasks
from common import contract, lambda_contract
from common.contract import FAST_PATHS
from tasks import Task

CONTEXT_ROOT = "acoustic_shield"
ENVIRONMENTS = ("dev", "prod")
IMAGE_TABLE = Path(__file__).with_name("image_table.json")

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message says which and what is allowed."""


def setting(key: str, default: Any, help: str, check: Check | None = None) -> Any:
    """A configuration field: its context key, default, one-line documentation and validator."""
    return field(default=default, metadata={"key": key, "help": help, "check": check})


def gate_threshold(key: str, default: float, help: str, *, fraction: bool = True) -> Any:
    """A quality gate threshold (``min_<metric>`` or ``max_<metric>``), within the values of its metric,
    which the promoter checks a job's value against too (``GateRule.fraction``): a fraction in 0..1
    (accuracy, F1, mAP) or, with ``fraction=False``, any finite number >= 0 (an error rate such as WER, which
    insertions push above 1)."""
    check = _fraction if fraction else _non_negative
    return field(default=default, metadata={"key": key, "help": help, "check": check, "fraction": fraction})


# --- validators: each returns None when the value is fine, else what is allowed ---------------


def _positive(value: Any) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _at_least(minimum: int) -> Check:
    return lambda value: None if value >= minimum else f"an integer >= {minimum}"


def _fraction(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "a number between 0 and 1"


def _non_negative(value: Any) -> str | None:
    return None if math.isfinite(value) and value >= 0.0 else "a finite number >= 0"


def _pattern(regex: str, allowed: str) -> Check:
    compiled = re.compile(regex)
    return lambda value: None if compiled.fullmatch(value) else allowed


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else "one of " + ", ".join(repr(c) for c in choices)


_INSTANCE = _pattern(r"ml\.[a-z0-9-]+\.[a-z0-9]+", "a SageMaker instance type such as 'ml.g5.xlarge'")
_SCHEDULE = _pattern(
    r"(cron\([^()]+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\))",
    "an EventBridge schedule expression such as 'cron(0 3 ? * SUN *)' or 'rate(7 days)'",
)


# Application Auto Scaling's cron: six fields (minutes hours day-of-month month day-of-week year).
_CRON = _pattern(r"cron\((\S+ ){5}\S+\)", "a six-field cron expression such as 'cron(0 19 ? * MON-FRI *)'")


def _timezone(value: Any) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return "an IANA time zone such as 'UTC' or 'Europe/Berlin'"
    return None


def _image_version(kind: str) -> Check:
    """A transformers version that has a ``kind`` ("training" or "inference") image in the table."""

    def check(value: Any) -> str | None:
        versions = sorted(load_image_table()[kind]["versions"])
        return None if value in versions else "one of " + ", ".join(versions)

    return check


def _between(low: int, high: int) -> Check:
    return lambda value: None if low <= value <= high else f"an integer from {low} to {high}"


def _serverless_memory(value: Any) -> str | None:
    ok = 1024 <= value <= 6144 and value % 1024 == 0
    return None if ok else "1024, 2048, 3072, 4096, 5120 or 6144 (MB)"


# Where a model comes from: exactly these forms, so that a typo fails synth instead of the deployment.
_MODEL_PACKAGE_ARN = _pattern(
    r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[A-Za-z0-9](-*[A-Za-z0-9]){0,62}/\d+",
    "a model package ARN such as 'arn:aws:sagemaker:eu-west-1:111122223333:model-package/acoustic-shield/3'",
)
_MODEL_DATA_URL = _pattern(
    r"s3://[a-z0-9][a-z0-9.-]{0,62}/([^/\s]+/)*[^/\s]+\.tar\.gz",
    "an S3 URL of a model archive such as 's3://BUCKET/models/JOB/output/model.tar.gz'",
)


def _optional(check: Check) -> Check:
    return lambda value: None if value == "" else check(value)


# --- the configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameters:
    """What train.py receives as ``--name value`` arguments; a schedule event may override them."""

    model_name_or_path: str = setting(
        "model_name_or_path", "facebook/wav2vec2-base", "Checkpoint to fine-tune (Hugging Face id or path)."
    )
    num_train_epochs: float = setting("num_train_epochs", 4.0, "Training epochs.", _positive)
    learning_rate: float = setting(
        "learning_rate", 3e-5, "Peak learning rate (AdamW, linear decay).", _positive
    )
    per_device_train_batch_size: int = setting(
        "per_device_train_batch_size", 8, "Batch size per GPU.", _at_least(1)
    )
    max_length_seconds: float = setting(
        "max_length_seconds", 5.0, "Training crop and serving window length, seconds.", _positive
    )

    def as_arguments(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings; train.py parses them with HfArgumentParser."""
        return {f.name: _format(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _tuning_ranges(value: Any) -> str | None:
    try:
        lambda_contract.parse_ranges(value)
    except lambda_contract.RangeError as err:
        return f"{lambda_contract.TUNING_GRAMMAR} ({err})"
    return None


def _rule_names(known: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        unknown = lambda_contract.unknown_rules(value, known)
        ok = not unknown and len(set(value)) == len(value) <= lambda_contract.MAX_RULES
        return None if ok else f"a list of different names out of {', '.join(known)}"

    return check


@dataclass(frozen=True)
class TuningConfig:
    """Hyperparameter tuning jobs: what they search, how many trials they run, what they optimize."""

    enabled: bool = setting(
        "tuning_enabled",
        False,
        "Scheduled runs start a hyperparameter tuning job instead of one training job.",
    )
    max_jobs: int = setting(
        "tuning_max_jobs",
        8,
        "Trials (training jobs) per tuning job: the cost is at most this many jobs.",
        _between(1, 500),
    )
    max_parallel_jobs: int = setting(
        "tuning_max_parallel_jobs", 2, "Trials running at once (<= tuning_max_jobs).", _between(1, 100)
    )
    strategy: str = setting(
        "tuning_strategy",
        "Bayesian",
        "Search strategy: Bayesian, Random or Hyperband.",
        _one_of(*lambda_contract.TUNING_STRATEGIES),
    )
    objective: str = setting(
        "tuning_objective",
        "",
        "Validation metric the tuning job optimizes: eval_loss (minimized) or eval_<metric> of the task's metrics "
        "(in the metric's direction); empty: eval_<the task's objective> (eval_f1 for classification).",
        _pattern(r"[a-z0-9_]*", "a metric name such as 'eval_f1' or 'eval_loss'"),
    )
    ranges: str = setting(
        "tuning_ranges",
        lambda_contract.DEFAULT_TUNING_RANGES,
        "Tuned train.py arguments: name=low..high[:log] (continuous, or integer) or name=a|b|c, comma-separated.",
        _tuning_ranges,
    )
    early_stopping: str = setting(
        "tuning_early_stopping",
        "Auto",
        "Stop trials unlikely to beat the best so far: Auto or Off (Off with Hyperband, which stops trials itself).",
        _one_of(*lambda_contract.TUNING_EARLY_STOPPING),
    )

    def __post_init__(self) -> None:
        if self.max_parallel_jobs > self.max_jobs:
            raise ConfigError(
                f"tuning_max_parallel_jobs ({self.max_parallel_jobs}) must be <= tuning_max_jobs ({self.max_jobs})"
            )
        if self.strategy == "Hyperband" and self.early_stopping != "Off":
            raise ConfigError(
                "tuning_early_stopping must be 'Off' with tuning_strategy 'Hyperband': Hyperband stops trials itself"
            )


@dataclass(frozen=True)
class RulesConfig:
    """SageMaker Debugger and Profiler built-in rules on single training jobs (docs/training.md)."""

    debugger_rules: tuple[str, ...] = setting(
        "debugger_rules",
        (),
        "Debugger rules on training jobs (LossNotDecreasing, Overfit, Overtraining); they need smdebug in the image.",
        _rule_names(tuple(lambda_contract.DEBUGGER_RULES)),
    )
    profiler_enabled: bool = setting(
        "profiler_enabled",
        False,
        "Collect system metrics (CPU, GPU, memory, I/O) of training jobs under profiler/.",
    )
    profiler_rules: tuple[str, ...] = setting(
        "profiler_rules",
        ("LowGPUUtilization", "ProfilerReport"),
        "Profiler rules run on those metrics when profiler_enabled.",
        _rule_names(lambda_contract.PROFILER_RULES),
    )
    profiling_interval_ms: int = setting(
        "profiling_interval_ms",
        500,
        "Profiler sampling interval, ms: 100, 200, 500, 1000, 5000 or 60000.",
        lambda value: (
            None if value in lambda_contract.PROFILING_INTERVALS_MS else "100, 200, 500, 1000, 5000 or 60000"
        ),
    )

    @property
    def any_rules(self) -> bool:
        """Whether a training job carries a rule (which needs the rule evaluator image)."""
        return bool(self.debugger_rules or (self.profiler_enabled and self.profiler_rules))


@dataclass(frozen=True)
class TrainingConfig:
    """The SageMaker training job the launcher creates."""

    instance_type: str = setting(
        "training_instance_type", "ml.g5.xlarge", "Training instance type.", _INSTANCE
    )
    instance_count: int = setting(
        "training_instance_count", 1, "Instances per job (>1 runs torch distributed).", _at_least(1)
    )
    volume_size_gb: int = setting("training_volume_size_gb", 50, "EBS volume per instance, GB.", _at_least(1))
    use_spot: bool = setting("training_use_spot", True, "Managed spot training (resumes from checkpoints).")
    max_runtime_seconds: int = setting(
        "training_max_runtime_seconds", 6 * 3600, "Hard limit on training time.", _at_least(60)
    )
    max_wait_seconds: int = setting(
        "training_max_wait_seconds",
        12 * 3600,
        "With spot: limit on training plus waiting for capacity (>= max runtime).",
        _at_least(60),
    )
    image_version: str = setting(
        "training_image_version",
        "5.3.0",
        "Transformers version of the Hugging Face PyTorch training image.",
        _image_version("training"),
    )
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)


@dataclass(frozen=True)
class ScheduleConfig:
    """Retraining on a schedule."""

    expression: str = setting(
        "retrain_schedule", "cron(0 3 ? * SUN *)", "When to retrain (EventBridge, UTC).", _SCHEDULE
    )
    enabled: bool = setting("retrain_enabled", False, "Whether the schedule fires.")
    on_new_data: bool = setting(
        "retrain_on_new_data",
        False,
        "Retrain when staging writes a dataset's manifest.jsonl (an EventBridge rule on the data bucket).",
    )
    debounce_minutes: int = setting(
        "retrain_on_data_debounce_minutes",
        60,
        "Manifests within this many minutes of a job started by new data start no other job (0: off).",
        _at_least(0),
    )


def _health_rules(value: Any) -> str | None:
    ok = len(set(value)) == len(value) and all(name in contract.HEALTH_RULES for name in value)
    return None if ok else f"a list of different names out of {', '.join(contract.HEALTH_RULES)}"


@dataclass(frozen=True)
class QualityGate:
    """What a trained model must reach before it is registered as Approved: ``min_<metric>`` (or
    ``max_<metric>``) for each metric a task gates."""

    min_accuracy: float = gate_threshold("min_accuracy", 0.5, "Minimum test (else validation) accuracy.")
    min_f1: float = gate_threshold("min_f1", 0.5, "Minimum macro-F1.")
    min_clip_accuracy: float = gate_threshold(
        "min_clip_accuracy", 0.5, "Minimum clip-level accuracy (windows aggregated per clip)."
    )
    min_map: float = gate_threshold(
        "min_map",
        0.3,
        "Multilabel task: minimum test (else validation) mAP (average precision per label, averaged).",
    )
    min_micro_f1: float = gate_threshold(
        "min_micro_f1",
        0.3,
        "Multilabel task: minimum micro-F1 over every (clip, label) decision at the label thresholds.",
    )
    max_wer: float = gate_threshold(
        "max_wer",
        0.3,
        "Speech recognition task: maximum test (else validation) word error rate (word substitutions, "
        "deletions and insertions per reference word; insertions can take it above 1).",
        fraction=False,
    )
    max_cer: float = gate_threshold(
        "max_cer",
        0.15,
        "Speech recognition task: maximum test (else validation) character error rate (the same over "
        "characters).",
        fraction=False,
    )
    max_regression: float = setting(
        "max_regression",
        0.01,
        "How far worse than the best approved model (per metric, same split: below it, or above it for an error "
        "rate) a new one may be; quality cannot decline step by step.",
        _fraction,
    )
    manual_approval: bool = setting(
        "manual_approval", False, "Register passing models as PendingManualApproval instead of Approved."
    )
    health_blocking_rules: tuple[str, ...] = setting(
        "health_blocking_rules",
        contract.DEFAULT_BLOCKING_HEALTH_RULES,
        "Training-health rules that hold a passing model for manual approval when its run tripped one "
        "(others that fired are only listed); [] holds none back.",
        _health_rules,
    )


def gate_rules(quality: QualityGate, task: Task | None = None) -> tuple[lambda_contract.GateRule, ...]:
    """The promoter's gate rules: each metric the task gates (default: the default task's), in the task's
    order and direction, at the configuration's ``min_<metric>`` (higher is better) or ``max_<metric>``
    (lower is better), with the values the metric takes as that key declares them (``gate_threshold``: a
    fraction, or an error rate that may exceed 1), which the promoter holds a job's value to."""
    task = task or tasks.load(None)
    thresholds = {f.name: f for f in dataclasses.fields(quality) if "fraction" in f.metadata}
    rules = []
    for name in task.gated:
        higher = task.metric(name).higher_is_better
        key = f"{'min' if higher else 'max'}_{name}"
        if key not in thresholds:
            raise ConfigError(f"task {task.name!r} gates {name}, but the quality gate has no key '{key}'")
        rules.append(
            lambda_contract.GateRule(
                metric=name,
                higher_is_better=higher,
                threshold=getattr(quality, key),
                fraction=thresholds[key].metadata["fraction"],
            )
        )
    return tuple(rules)


def metric_line_names(task: Task) -> tuple[str, ...]:
    """What each evaluated split of the task's jobs prints as metric lines (after the split's prefix): the
    loss, then the task's metrics."""
    return (contract.LOSS_LINE, *task.metric_names)


def tuning_objective(tuning: TuningConfig, task: Task) -> tuple[str, str]:
    """The metric a tuning job of ``task`` optimizes and its direction (Maximize or Minimize): the configured
    ``tuning_objective`` (empty: the task's objective on the validation split), the loss (minimized) or one of
    the task's metrics (in its direction) on the validation split."""
    directions = dict(
        zip(
            lambda_contract.tuning_objectives(metric_line_names(task)),
            ("Minimize", *(metric.direction for metric in task.metrics)),
            strict=True,
        )
    )
    (default,) = lambda_contract.tuning_objectives((task.objective,))
    name = tuning.objective or default
    if name not in directions:
        raise ConfigError(
            f"config key 'tuning_objective' = {name!r} is invalid: expected one of "
            + ", ".join(repr(objective) for objective in directions)
            + f" (the {task.name} task's validation metrics), or empty for {default!r}"
        )
    return name, directions[name]


STAGING_SOURCES = ("esc50", "fsd50k", "folder", "commonvoice", "librispeech")


@dataclass(frozen=True)
class StagingConfig:
    """What the CodeBuild staging project stages when started without overrides."""

    source: str = setting(
        "staging_source",
        "esc50",
        "Dataset source to stage: esc50, fsd50k or folder (classification), fsd50k or folder (multilabel), "
        "librispeech, commonvoice or folder (asr); default: the task's first.",
        _one_of(*STAGING_SOURCES),
    )
    source_url: str = setting(
        "staging_source_url", "", "Where to download the source from (empty: the official location)."
    )


SERVING_MODES = ("realtime", "serverless", "async")


@dataclass(frozen=True)
class ServingConfig:
    """The endpoint (deployed only once a model is given)."""

    model_package_arn: str = setting(
        "model_package_arn",
        "",
        "Model package to serve (what the deploy project passes); creates the Serving stack.",
        _optional(_MODEL_PACKAGE_ARN),
    )
    model_data_url: str = setting(
        "model_data_url",
        "",
        "Or: a training job's model.tar.gz to serve, without the registry; creates the Serving stack.",
        _optional(_MODEL_DATA_URL),
    )
    mode: str = setting(
        "serving_mode",
        "realtime",
        "Endpoint kind: realtime (instances, autoscaled), serverless, or async (queue, scales to zero).",
        _one_of(*SERVING_MODES),
    )
    instance_type: str = setting(
        "serving_instance_type", "ml.m5.xlarge", "Endpoint instance type (realtime and async).", _INSTANCE
    )
    image_version: str = setting(
        "serving_image_version",
        "4.51.3",
        "Transformers version of the Hugging Face PyTorch inference image.",
        _image_version("inference"),
    )
    fast_path: str = setting(
        "inference_fast_path",
        "off",
        "ACOUSTIC_FAST_PATH of the handler: off (PyTorch), onnx, onnx-int8 (need model.onnx; CPU only).",
        _one_of(*FAST_PATHS),
    )
    threads: int = setting(
        "inference_threads",
        0,
        "ACOUSTIC_THREADS per worker (0: the handler uses the container's CPUs / workers).",
        _at_least(0),
    )
    workers: int = setting(
        "inference_workers",
        2,
        "Model server workers per instance (each loads the model; 2 measured best on ml.m5.xlarge).",
        _at_least(1),
    )
    max_audio_seconds: float = setting(
        "max_audio_seconds", 600.0, "Longest clip the handler accepts, seconds.", _positive
    )
    data_capture_percent: int = setting(
        "data_capture_percent",
        0,
        "Share of requests captured to s3://<data bucket>/datacapture/ (0: off; not serverless).",
        _between(0, 100),
    )
    canary_percent: int = setting(
        "canary_percent",
        10,
        "Canary share of the new fleet in a blue/green update (realtime, >= 2 instances).",
        _between(1, 50),
    )
    canary_wait_seconds: int = setting(
        "canary_wait_seconds",
        600,
        "Baking time: how long alarms watch each traffic step before the next.",
        _between(0, 3600),
    )
    serverless_memory_mb: int = setting(
        "serverless_memory_mb", 4096, "Serverless endpoint memory, MB.", _serverless_memory
    )
    serverless_max_concurrency: int = setting(
        "serverless_max_concurrency", 5, "Serverless endpoint concurrent invocations.", _between(1, 200)
    )
    autoscaling_min_capacity: int = setting(
        "autoscaling_min_capacity",
        1,
        "Fewest endpoint instances (realtime; async scales to zero).",
        _at_least(1),
    )
    autoscaling_max_capacity: int = setting(
        "autoscaling_max_capacity", 4, "Most endpoint instances.", _at_least(1)
    )
    autoscaling_target_invocations: int = setting(
        "autoscaling_target_invocations",
        60,
        "Target invocations per instance per minute (target tracking).",
        _at_least(1),
    )
    autoscaling_target_backlog: int = setting(
        "autoscaling_target_backlog",
        5,
        "Async: target queued requests per instance (target tracking).",
        _at_least(1),
    )
    scale_in_cooldown_seconds: int = setting(
        "scale_in_cooldown_seconds", 300, "Wait after a scale-in before the next one.", _at_least(0)
    )
    scale_out_cooldown_seconds: int = setting(
        "scale_out_cooldown_seconds", 60, "Wait after a scale-out before the next one.", _at_least(0)
    )
    alarm_5xx_errors: int = setting(
        "alarm_5xx_errors",
        5,
        "5XX errors per minute (two minutes running) that alarm and roll a deployment back.",
        _at_least(1),
    )
    alarm_latency_ms: int = setting(
        "alarm_latency_ms",
        2000,
        "p90 model latency, ms (two minutes running) that alarms and rolls a deployment back.",
        _at_least(1),
    )
    alarm_memory_percent: int = setting(
        "alarm_memory_percent", 90, "Instance memory use that alarms, percent.", _between(1, 100)
    )
    alarm_cpu_percent: int = setting(
        "alarm_cpu_percent", 90, "Instance CPU use that alarms, percent of all its vCPUs.", _between(1, 100)
    )
    scale_down_schedule: bool = setting(
        "scale_down_schedule",
        False,
        "Realtime: hold the endpoint at one instance from scale_down_at to scale_up_at (nights, weekends).",
    )
    scale_down_at: str = setting(
        "scale_down_at",
        "cron(0 19 ? * MON-FRI *)",
        "When the endpoint goes down to one instance (Application Auto Scaling cron).",
        _CRON,
    )
    scale_up_at: str = setting(
        "scale_up_at",
        "cron(0 7 ? * MON-FRI *)",
        "When autoscaling_min_capacity and autoscaling_max_capacity apply again.",
        _CRON,
    )
    scale_schedule_timezone: str = setting(
        "scale_schedule_timezone", "UTC", "Time zone of scale_down_at and scale_up_at (IANA name).", _timezone
    )
    batch_inference: bool = setting(
        "batch_inference",
        False,
        "Let the model run batch transform jobs over batch-input/ into batch-output/ (python -m tools.batch).",
    )

    @property
    def model_configured(self) -> bool:
        """Whether a model is given, i.e. whether the Serving stack exists."""
        return bool(self.model_package_arn or self.model_data_url)


@dataclass(frozen=True)
class OperationsConfig:
    """Failure notices and deployment checks."""

    failure_alarms: bool = setting(
        "failure_alarms",
        True,
        "Alarms and notices for every failure: dead letters, Lambda errors, builds, training time limits, endpoint.",
    )
    reserved_concurrency: int = setting(
        "lambda_reserved_concurrency",
        0,
        "Concurrency reserved for each Lambda (0: none; launches and registrations are serialized by leases). "
        "New accounts may have too little concurrency to reserve any.",
        _between(0, 1000),
    )
    verify_deployments: bool = setting(
        "verify_deployments",
        True,
        "The deploy build checks the endpoint's config, model package and a smoke prediction after cdk deploy.",
    )


@dataclass(frozen=True)
class AppConfig:
    """Everything the stacks need, validated."""

    env_name: str
    name_prefix: str = setting(
        "name_prefix",
        "acoustic-shield",
        "Prefix of runtime names (training jobs, model package group, endpoint).",
        _pattern(r"[a-z][a-z0-9-]{1,26}[a-z0-9]", "3-28 characters: lowercase letters, digits and '-'"),
    )
    task: str = setting(
        "task",
        tasks.DEFAULT_TASK,
        "What the deployment's models learn and answer (a task of tasks/): its jobs' --task, the metrics they "
        "scrape, tune and gate; another task than the default one adds -<task> to runtime and stack names.",
        _one_of(*tasks.known()),
    )
    dataset_prefix: str = setting(
        "dataset_prefix",
        f"{contract.DATASETS_PREFIX}esc50/",
        "Data-bucket prefix holding train/ [validation/] [test/] label folders.",
        _pattern(
            re.escape(contract.DATASETS_PREFIX) + r"([A-Za-z0-9._-]+/)+",
            f"a prefix under {contract.DATASETS_PREFIX!r} ending in '/'",
        ),
    )
    account: str = setting("account", "", "Target account (empty: environment-agnostic template).")
    region: str = setting(
        "region",
        "",
        "Target region (empty: environment-agnostic template); checked against the image tables at synthesis.",
    )
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    quality: QualityGate = field(default_factory=QualityGate)
    staging: StagingConfig = field(default_factory=StagingConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    operations: OperationsConfig = field(default_factory=OperationsConfig)

    @property
    def tags(self) -> dict[str, str]:
        return {"project": "acoustic-shield", "environment": self.env_name}

    def __post_init__(self) -> None:
        t = self.training
        if t.use_spot and t.max_wait_seconds < t.max_runtime_seconds:
            raise ConfigError(
                f"training_max_wait_seconds ({t.max_wait_seconds}) must be >= training_max_runtime_seconds "
                f"({t.max_runtime_seconds}) when training_use_spot is true"
            )
        s = self.serving
        if s.autoscaling_min_capacity > s.autoscaling_max_capacity:
            raise ConfigError(
                f"autoscaling_min_capacity ({s.autoscaling_min_capacity}) must be <= "
                f"autoscaling_max_capacity ({s.autoscaling_max_capacity})"
            )
        if s.model_package_arn and s.model_data_url:
            raise ConfigError(
                "model_package_arn and model_data_url are both set; give one: the registered model package "
                "(-c model_package_arn=arn:...) or the model archive (-c model_data_url=s3://...)"
            )
        if s.mode == "serverless" and s.data_capture_percent:
            raise ConfigError(
                f"data_capture_percent ({s.data_capture_percent}) must be 0 with serving_mode 'serverless': "
                "serverless endpoints do not support data capture"
            )
        self._check_task()

    def _check_task(self) -> None:
        """What the task decides: its runtime names, its gated metrics' keys and its tuning objective."""
        name = runtime_name(self)
        if not _RUNTIME_NAME.fullmatch(name):
            raise ConfigError(
                f"config key 'task' = {self.task!r} makes the runtime name {name!r}: SageMaker names take up "
                f"to {_RUNTIME_NAME_LIMIT} lowercase letters, digits and '-'"
            )
        task = tasks.load(self.task)
        if self.staging.source not in task.staging_sources:
            raise ConfigError(
                f"config key 'staging_source' = {self.staging.source!r} cannot stage datasets for the {task.name} "
                f"task; its sources are {', '.join(task.staging_sources)}"
            )
        gate_rules(self.quality, task)
        tuning_objective(self.training.tuning, task)


# A model package group's name (the longest runtime name as is): letters, digits and '-', 63 characters.
_RUNTIME_NAME_LIMIT = 63
_RUNTIME_NAME = re.compile(rf"[a-z0-9](-*[a-z0-9]){{0,{_RUNTIME_NAME_LIMIT - 1}}}")
# The stacks of one task; the Data stack (key and bucket) is shared by every task of an environment.
TASK_STACKS = ("Training", "Serving")


def runtime_name(config: AppConfig) -> str:
    """``<name_prefix>`` and the task's suffix (``-<task>`` for a task other than the default one): what the
    deployment's runtime names start with (jobs, model package group, endpoint), so tasks run side by side."""
    return f"{config.name_prefix}{tasks.runtime_suffix(config.task)}"


def stack_name(config: AppConfig, lifecycle: str) -> str:
    """``AcousticShield-<env>-<lifecycle>``: the stack names people and the deploy project use; the Training
    and Serving stacks of a task other than the default one end in ``-<task>``."""
    suffix = tasks.runtime_suffix(config.task) if lifecycle in TASK_STACKS else ""
    return contract.stack_name(config.env_name, lifecycle) + suffix


# --- building it from context -------------------------------------------------------------------


def settings(cls: type = AppConfig) -> list[tuple[str, dataclasses.Field[Any], type]]:
    """Every configuration key, depth first: (key, field, type). The README documents each one."""
    found: list[tuple[str, dataclasses.Field[Any], type]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found.extend(settings(kind))
        elif "key" in f.metadata:
            found.append((f.metadata["key"], f, hints[f.name]))
    return found


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ValueError


def _integer(raw: Any) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError
    return int(raw)


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError
    return float(raw)


def _names(raw: Any) -> tuple[str, ...]:
    """A JSON list in cdk.json; "A,B" or '["A","B"]' from -c."""
    items = json.loads(raw) if isinstance(raw, str) and raw.strip().startswith("[") else raw
    if isinstance(items, str):
        items = [item.strip() for item in items.split(",") if item.strip()]
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError
    return tuple(items)


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError
    return raw


# How each kind of value is read, and what it should be when it cannot be.
_READERS: dict[Any, tuple[Callable[[Any], Any], str]] = {
    bool: (_boolean, "true or false"),
    int: (_integer, "an integer"),
    float: (_number, "a number"),
    tuple[str, ...]: (_names, "a list of names"),
}


def _parse(key: str, raw: Any, kind: type) -> Any:
    """Context values from cdk.json are JSON; from ``-c`` they are strings."""
    read, expected = _READERS.get(kind, (_text, "a string"))
    try:
        return read(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' = {raw!r} is invalid: expected {expected}") from None


def _build(cls: type, values: Mapping[str, Any], env_name: str) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, values, env_name)
        elif f.name == "env_name":
            kwargs[f.name] = env_name
        elif f.metadata["key"] in values:
            key = f.metadata["key"]
            value = _parse(key, values[key], kind)
            problem = f.metadata["check"](value) if f.metadata["check"] else None
            if problem:
                raise ConfigError(f"config key '{key}' = {values[key]!r} is invalid: expected {problem}")
            kwargs[f.name] = value
    return cls(**kwargs)


def load_config(context: Callable[[str], Any]) -> AppConfig:
    """Builds the config from a context lookup (``app.node.try_get_context``)."""
    env_name = context("env") or "dev"
    if env_name not in ENVIRONMENTS:
        raise ConfigError(
            f"config key 'env' = {env_name!r} is invalid: expected one of {', '.join(ENVIRONMENTS)}"
        )
    root = context(CONTEXT_ROOT) or {}
    if isinstance(root, str):  # `-c acoustic_shield=...` arrives as a string
        root = json.loads(root)
    env_values = dict(root.get(env_name) or {})
    known = {key for key, _, _ in settings()}
    unknown = sorted(set(env_values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in cdk.json context.{CONTEXT_ROOT}.{env_name}; "
            "the README lists the valid keys"
        )
    for key in known:
        override = context(key)
        if override is not None:
            env_values[key] = override
    for key, value in task_defaults(env_values.get("task", tasks.DEFAULT_TASK)).items():
        env_values.setdefault(key, value)
    return _build(AppConfig, env_values, env_name)


def task_defaults(task: Any) -> dict[str, Any]:
    """The task's own defaults of the train.py arguments the configuration sends (``Task.argument_defaults``
    that are Hyperparameters keys: asr's checkpoint with its CTC vocabulary and its endpoint window): they
    replace the defaults declared here, because every job is sent every Hyperparameters value and so would
    otherwise never get the task's. cdk.json and ``-c`` still win. Empty for a task that is not one of
    tasks/ (synthesis then stops on the key 'task'). The task's first staging source is its default too."""
    if task not in tasks.known():
        return {}
    chosen = tasks.load(task)
    keys = {f.metadata["key"] for f in dataclasses.fields(Hyperparameters)}
    defaults = {key: value for key, value in chosen.argument_defaults().items() if key in keys}
    return {**defaults, "staging_source": chosen.staging_sources[0]}


def load_image_table() -> dict[str, Any]:
    """The Hugging Face PyTorch image table, extracted from the SageMaker Python SDK's image tables."""
    data: dict[str, Any] = json.loads(IMAGE_TABLE.read_text())
    return data

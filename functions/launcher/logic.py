"""Launcher logic: settings, event parsing, the CreateTrainingJob and CreateHyperParameterTuningJob
requests, the launch.

Pure functions plus one orchestrating function that receives its AWS clients, so every piece is
testable against botocore's request models without an account. A tuning job's training definition is
the single job's request, converted: one builder, so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from . import rules, tuning

try:  # the Lambda package carries the contract beside this module
    from . import contract  # type: ignore[attr-defined]
except ImportError:  # the repository
    from ml_code import contract

LOG = logging.getLogger(__name__)

CHANNELS = ("train", "validation", "test")
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
ENTRY_POINT = "train.py"
# Each segment starts with a letter or digit: no "." or ".." segments.
_DATASET_PREFIX = re.compile(r"datasets/([A-Za-z0-9][A-Za-z0-9._-]*/)+")
# A Hugging Face id (org/name) or a relative folder inside the source dir; never absolute, never "..".
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95}){0,3}")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
TUNING_NAME_LIMIT, TUNING_SUFFIX_LENGTH = tuning.NAME_LIMIT, tuning.SUFFIX_LENGTH


class SettingsError(ValueError):
    """A launcher environment variable is missing or invalid."""


class EventError(ValueError):
    """The triggering event cannot be used; the message says what to send."""


class LaunchError(RuntimeError):
    """SageMaker or S3 refused what the launcher needs; the message names the job and the cause."""


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

    @classmethod
    def from_json(cls, prefix: str, text: str) -> TuningSettings:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise SettingsError(f"environment variable TUNING is not JSON: {err}") from None
        if not isinstance(raw, dict):
            raise SettingsError("environment variable TUNING must be a JSON object")

        def field_of(name: str, kind: type) -> Any:
            value = raw.get(name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise SettingsError(f"TUNING.{name}={value!r} must be {kind.__name__}")
            return value

        def choice(name: str, allowed: Sequence[str]) -> str:
            value: str = field_of(name, str)
            if value not in allowed:
                raise SettingsError(f"TUNING.{name}={value!r} must be one of {', '.join(allowed)}")
            return value

        room = TUNING_NAME_LIMIT - TUNING_SUFFIX_LENGTH
        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*-*", prefix) or len(prefix) > room:
            raise SettingsError(
                f"TUNING_JOB_PREFIX={prefix!r} must be letters, digits and '-', at most {room} characters: "
                f"tuning job names end in {TUNING_SUFFIX_LENGTH} characters and SageMaker allows {TUNING_NAME_LIMIT}"
            )
        try:
            ranges = tuning.parse_ranges(field_of("ranges", str))
        except tuning.RangeError as err:
            raise SettingsError(f"TUNING.ranges: {err}") from None
        settings = cls(
            job_name_prefix=prefix,
            enabled=field_of("enabled", bool),
            strategy=choice("strategy", tuning.STRATEGIES),
            objective=choice("objective", tuple(tuning.OBJECTIVES)),
            ranges=ranges,
            max_jobs=field_of("max_jobs", int),
            max_parallel_jobs=field_of("max_parallel_jobs", int),
            early_stopping=choice("early_stopping", tuning.EARLY_STOPPING),
        )
        if not 1 <= settings.max_parallel_jobs <= settings.max_jobs:
            raise SettingsError(
                f"TUNING.max_parallel_jobs={settings.max_parallel_jobs} must be 1..max_jobs ({settings.max_jobs})"
            )
        if settings.strategy == "Hyperband" and settings.early_stopping != "Off":
            raise SettingsError("TUNING.early_stopping must be 'Off' with Hyperband: it stops trials itself")
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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LaunchSettings:
        def text(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise SettingsError(f"environment variable {name} is missing or empty")
            return value

        def integer(name: str) -> int:
            try:
                value = int(text(name))
            except ValueError:
                raise SettingsError(
                    f"environment variable {name}={env.get(name)!r} is not an integer"
                ) from None
            if value < 1:
                raise SettingsError(f"environment variable {name}={value} must be >= 1")
            return value

        def mapping(name: str) -> dict[str, str]:
            try:
                value = json.loads(text(name))
            except json.JSONDecodeError as err:
                raise SettingsError(f"environment variable {name} is not JSON: {err}") from None
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise SettingsError(f"environment variable {name} must be a JSON object of strings")
            return value

        def boolean(name: str, default: str | None) -> bool:
            value = (env.get(name, "").strip() or default or text(name)).lower()
            if value not in ("true", "false"):
                raise SettingsError(f"environment variable {name}={value!r} must be 'true' or 'false'")
            return value == "true"

        def minutes(name: str) -> int:
            raw = env.get(name, "").strip() or "0"
            if not raw.isdigit():
                raise SettingsError(f"environment variable {name}={raw!r} must be a whole number >= 0")
            return int(raw)

        def names(name: str, known: Sequence[str]) -> tuple[str, ...]:
            try:
                value = json.loads(env.get(name, "").strip() or "[]")
            except json.JSONDecodeError as err:
                raise SettingsError(f"environment variable {name} is not JSON: {err}") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"environment variable {name} must be a JSON list of rule names")
            unknown = rules.unknown_rules(value, known)
            if unknown or len(value) > rules.MAX_RULES or len(set(value)) != len(value):
                raise SettingsError(
                    f"environment variable {name}={value!r}: at most {rules.MAX_RULES} different names of "
                    f"{', '.join(known)}" + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                )
            return tuple(value)

        settings = cls(
            job_name_prefix=text("JOB_NAME_PREFIX"),
            role_arn=text("EXECUTION_ROLE_ARN"),
            image_uri=text("TRAINING_IMAGE"),
            source_dir=text("SOURCE_DIR"),
            bucket=text("DATA_BUCKET"),
            dataset_prefix=text("DATASET_PREFIX"),
            models_prefix=text("MODELS_PREFIX"),
            checkpoints_prefix=text("CHECKPOINTS_PREFIX"),
            kms_key_arn=text("KMS_KEY_ARN"),
            instance_type=text("INSTANCE_TYPE"),
            instance_count=integer("INSTANCE_COUNT"),
            volume_size_gb=integer("VOLUME_SIZE_GB"),
            use_spot=boolean("USE_SPOT", None),
            debounce_minutes=minutes("RETRAIN_DEBOUNCE_MINUTES"),
            max_runtime_seconds=integer("MAX_RUNTIME_SECONDS"),
            max_wait_seconds=integer("MAX_WAIT_SECONDS"),
            region=text("AWS_REGION"),
            hyperparameters=mapping("HYPERPARAMETERS"),
            tags=mapping("TAGS"),
            # Optional: a launcher deployed without them starts single training jobs without rules.
            tuning=(
                TuningSettings.from_json(text("TUNING_JOB_PREFIX"), text("TUNING"))
                if env.get("TUNING_JOB_PREFIX", "").strip()
                else None
            ),
            rules=RuleSettings(
                image_uri=env.get("RULE_EVALUATOR_IMAGE", "").strip(),
                debugger_rules=names("DEBUGGER_RULES", tuple(rules.DEBUGGER_RULES)),
                debug_prefix=env.get("DEBUG_PREFIX", "").strip(),
                profiler_enabled=boolean("PROFILER_ENABLED", "false"),
                profiler_rules=names("PROFILER_RULES", rules.PROFILER_RULES),
                profiler_prefix=env.get("PROFILER_PREFIX", "").strip(),
                profiling_interval_ms=(
                    integer("PROFILING_INTERVAL_MS") if env.get("PROFILING_INTERVAL_MS", "").strip() else 500
                ),
            ),
        )
        if not settings.source_dir.startswith("s3://") or not settings.source_dir.endswith(".gz"):
            raise SettingsError(f"SOURCE_DIR={settings.source_dir!r} must be an s3:// URL of a .tar.gz")
        r = settings.rules
        any_rules = bool(r.debugger_rules or (r.profiler_enabled and r.profiler_rules))
        for name, value, needed in (
            ("RULE_EVALUATOR_IMAGE", r.image_uri, any_rules),
            ("DEBUG_PREFIX", r.debug_prefix, bool(r.debugger_rules)),
            ("PROFILER_PREFIX", r.profiler_prefix, r.profiler_enabled),
        ):
            if needed and not value:
                raise SettingsError(f"environment variable {name} is missing or empty: the rules need it")
        if r.profiling_interval_ms not in rules.PROFILING_INTERVALS_MS:
            raise SettingsError(
                f"PROFILING_INTERVAL_MS={r.profiling_interval_ms} must be one of "
                + ", ".join(str(ms) for ms in rules.PROFILING_INTERVALS_MS)
            )
        return settings


@dataclass(frozen=True)
class LaunchRequest:
    """What a triggering event asks for."""

    trigger_id: str
    trigger: str  # "schedule", "data" (a staged dataset's manifest) or "manual"
    time: datetime | None
    hyperparameters: dict[str, str]
    dataset_prefix: str | None
    tune: bool | None = None  # None: the configuration decides (tuning_enabled, for the schedule)
    bucket: str | None = None  # the bucket a new-data event came from


def _refusal(name: str) -> str:
    allowed = ", ".join(sorted(contract.EVENT_HYPERPARAMETERS))
    if name.startswith("sagemaker_"):
        why = "the framework's own values are set by the launcher"
    elif name == "push_to_hub" or name.startswith("hub_"):
        why = "a training job never publishes to the Hugging Face Hub"
    elif name.endswith(("_dir", "_path", "_file")) or name in (
        "logging_dir",
        "output_dir",
        "resume_from_checkpoint",
    ):
        why = "paths are fixed by the deployment (channels, model and checkpoint folders)"
    else:
        close = difflib.get_close_matches(name, contract.EVENT_HYPERPARAMETERS, n=1, cutoff=0.75)
        why = f"did you mean {close[0]!r}?" if close else "not an argument an event may set"
    return f"hyperparameter {name!r} is refused: {why}. An event may set: {allowed}"


def _number(name: str, value: Any, kind: str) -> float:
    if isinstance(value, bool):
        raise EventError(f"hyperparameter {name!r} must be a number, got {value!r}")
    try:
        number = float(value) if kind == "float" else int(str(value), 10)
    except (TypeError, ValueError):
        raise EventError(
            f"hyperparameter {name!r} must be {'a number' if kind == 'float' else 'an integer'}, got {value!r}"
        ) from None
    if not math.isfinite(number):
        raise EventError(f"hyperparameter {name!r} must be finite, got {value!r}")
    return number


def _hyperparameter(name: Any, value: Any) -> str:
    """The value as train.py receives it, if an event may set ``name`` to it; else a clear EventError."""
    if not isinstance(name, str) or name not in contract.EVENT_HYPERPARAMETERS:
        raise EventError(_refusal(str(name)))
    kind, low, high = contract.EVENT_HYPERPARAMETERS[name]
    if kind == "bool":
        text = str(value).lower()
        if text not in _TRUE + _FALSE:
            raise EventError(f"hyperparameter {name!r} must be true or false, got {value!r}")
        return "true" if text in _TRUE else "false"
    if kind == "model":
        if not isinstance(value, str) or not _MODEL_ID.fullmatch(value) or ".." in value.split("/"):
            raise EventError(
                f"hyperparameter {name!r} must be a Hugging Face id (org/name) or a folder inside the "
                f"source dir, got {value!r}"
            )
        return value
    number = _number(name, value, kind)
    if (low is not None and number < low) or (high is not None and number > high):
        raise EventError(f"hyperparameter {name!r}={value!r} is out of range [{low:g}, {high:g}]")
    return str(value)


def parse_event(event: Any, request_id: str) -> LaunchRequest:
    """A scheduled EventBridge event, or a manual
    ``{"hyperparameters": {...}, "dataset_prefix": ..., "tune": true|false}``.

    The trigger id makes the job name: EventBridge keeps an event's ``id`` across redeliveries and
    Lambda keeps the request id across its own retries of an asynchronous invocation.
    """
    if not isinstance(event, dict):
        raise EventError(f"the event must be a JSON object, got {type(event).__name__}")
    overrides = event.get("hyperparameters", {})
    if not isinstance(overrides, dict):
        raise EventError("'hyperparameters' must be an object of name: value")
    hyperparameters = {name: _hyperparameter(name, value) for name, value in overrides.items()}
    dataset_prefix = event.get("dataset_prefix")
    if dataset_prefix is not None and (
        not isinstance(dataset_prefix, str) or not _DATASET_PREFIX.fullmatch(dataset_prefix)
    ):
        raise EventError(
            f"'dataset_prefix' {dataset_prefix!r} must be a prefix under 'datasets/' ending in '/'"
        )
    tune = event.get("tune")
    if tune is not None and not isinstance(tune, bool):
        raise EventError(f"'tune' must be true or false, got {tune!r}")

    if event.get("source") == "aws.s3":
        if overrides or dataset_prefix is not None or tune is not None:
            raise EventError("an S3 event carries no hyperparameters, dataset_prefix or tune")
        return _new_data(event)
    if event.get("source") == "aws.events":
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id or not isinstance(event.get("time"), str):
            raise EventError("a scheduled event must carry 'id' and 'time'")
        return LaunchRequest(event_id, "schedule", _event_time(event), hyperparameters, dataset_prefix, tune)
    if "source" in event or "detail-type" in event:
        raise EventError(
            f"unexpected event source {event.get('source')!r}; expected a scheduled event or a dataset "
            "manifest's S3 Object Created event"
        )
    if not request_id:
        raise EventError("a manual invocation needs a request id")
    return LaunchRequest(request_id, "manual", None, hyperparameters, dataset_prefix, tune)


def _event_time(event: dict[str, Any]) -> datetime:
    raw_time = event.get("time")
    if not isinstance(raw_time, str):
        raise EventError("the event must carry 'time'")
    try:
        return datetime.fromisoformat(raw_time.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise EventError(f"the event's 'time' {raw_time!r} is not an ISO 8601 timestamp") from None


def _new_data(event: dict[str, Any]) -> LaunchRequest:
    """A dataset's ``manifest.jsonl`` was created: train on that dataset.

    The manifest is the last object staging writes, so the dataset is complete. The trigger is the
    manifest's version (or ETag): a redelivered event names the same job, a new staging run a new one.
    """
    if event.get("detail-type") != "Object Created":
        raise EventError(f"an S3 event must be 'Object Created', got {event.get('detail-type')!r}")
    detail = event.get("detail")
    bucket = detail.get("bucket", {}).get("name") if isinstance(detail, dict) else None
    found = detail.get("object", {}) if isinstance(detail, dict) else {}
    key = found.get("key") if isinstance(found, dict) else None
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise EventError("an S3 event must carry detail.bucket.name and detail.object.key")
    manifest = contract.MANIFEST_FILE
    prefix = key.removesuffix(manifest)
    if not key.endswith("/" + manifest) or not _DATASET_PREFIX.fullmatch(prefix):
        raise EventError(
            f"object {key!r} is not a dataset manifest (datasets/<name>/{manifest}); nothing to train"
        )
    version = found.get("version-id") or found.get("etag")
    if not isinstance(version, str) or not version:
        raise EventError(f"the S3 event for {key!r} carries neither 'version-id' nor 'etag'")
    return LaunchRequest(
        f"s3://{bucket}/{key}@{version}", "data", _event_time(event), {}, prefix, None, bucket
    )


def job_name(prefix: str, request: LaunchRequest) -> str:
    """Deterministic per trigger, so a redelivered event names the job that already exists."""
    digest = hashlib.sha256(request.trigger_id.encode()).hexdigest()[:8]
    stamp = request.time.strftime("%Y%m%d-%H%M%S") if request.time else "manual"
    name = f"{prefix}{stamp}-{digest}"
    if len(name) > 63:
        raise SettingsError(f"job name {name!r} is longer than SageMaker's 63 characters; shorten the prefix")
    return name


def tuning_job_name(prefix: str, request: LaunchRequest) -> str:
    """Deterministic per trigger like ``job_name``, within SageMaker's 32 characters for tuning jobs.

    There is no room for a timestamp: the job's CreationTime and its ``trigger`` tag say when and why.
    Its trials are named ``<tuning job>-<NNN>-<8 characters>`` by SageMaker (45 characters at most).
    """
    digest = hashlib.sha256(request.trigger_id.encode()).hexdigest()[:TUNING_SUFFIX_LENGTH]
    name = f"{prefix}{digest}"
    if len(name) > TUNING_NAME_LIMIT:
        raise SettingsError(
            f"tuning job name {name!r} is longer than SageMaker's {TUNING_NAME_LIMIT} characters; "
            "shorten the prefix"
        )
    return name


def wants_tuning(request: LaunchRequest, settings: LaunchSettings) -> bool:
    """An event's ``tune`` decides; without one, scheduled runs tune when the configuration says so."""
    if request.tune is not None:
        tune = request.tune
    else:
        tune = request.trigger != "manual" and settings.tuning is not None and settings.tuning.enabled
    if tune and settings.tuning is None:
        raise EventError(
            "this launcher has no tuning configuration (TUNING_JOB_PREFIX is not set); send tune: false"
        )
    return tune


def _s3_url(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join([bucket, *(p.strip("/") for p in parts)]) + "/"


def build_training_job_request(
    settings: LaunchSettings, name: str, request: LaunchRequest, channels: list[str]
) -> dict[str, Any]:
    """The CreateTrainingJob request, as the SageMaker Python SDK's Hugging Face estimator builds it,
    with the configured Debugger and Profiler rules."""
    dataset_prefix = request.dataset_prefix or settings.dataset_prefix
    hyperparameters = {**settings.hyperparameters, **request.hyperparameters}
    framework: dict[str, Any] = {
        "sagemaker_program": ENTRY_POINT,
        "sagemaker_submit_directory": settings.source_dir,
        "sagemaker_region": settings.region,
        # A number, as the SDK sends it: the toolkit passes the decoded value to logging, which
        # rejects the string "20" ("Unknown level") and the job fails before train.py runs.
        "sagemaker_container_log_level": logging.INFO,
    }
    if settings.instance_count > 1:
        framework["sagemaker_torch_distributed_enabled"] = True
    # Like the SDK, every value is JSON-encoded; the training toolkit decodes them into argv.
    encoded = {k: json.dumps(v) for k, v in {**hyperparameters, **framework}.items()}
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.use_spot:
        stopping["MaxWaitTimeInSeconds"] = settings.max_wait_seconds
    tags = {**settings.tags, "trigger": request.trigger}
    return {
        "TrainingJobName": name,
        "RoleArn": settings.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": contract.metric_definitions(),
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": encoded,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": _s3_url(settings.bucket, dataset_prefix, channel),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
            for channel in channels
        ],
        "OutputDataConfig": {
            "S3OutputPath": _s3_url(settings.bucket, settings.models_prefix),
            "KmsKeyId": settings.kms_key_arn,
        },
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
            "VolumeKmsKeyId": settings.kms_key_arn,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.use_spot,
        "CheckpointConfig": {
            "S3Uri": _s3_url(settings.bucket, settings.checkpoints_prefix, name),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "EnableInterContainerTrafficEncryption": settings.instance_count > 1,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
        **rules.rules_request(
            job=name,
            bucket=settings.bucket,
            image=settings.rules.image_uri,
            debugger_rules=settings.rules.debugger_rules,
            debug_prefix=settings.rules.debug_prefix,
            profiler_enabled=settings.rules.profiler_enabled,
            profiler_rules=settings.rules.profiler_rules,
            profiler_prefix=settings.rules.profiler_prefix,
            profiling_interval_ms=settings.rules.profiling_interval_ms,
        ),
    }


# CreateTrainingJob fields that a tuning job's HyperParameterTrainingJobDefinition takes unchanged.
_DEFINITION_FIELDS = (
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableManagedSpotTraining",
    "EnableInterContainerTrafficEncryption",
)


def build_tuning_job_request(
    settings: LaunchSettings, name: str, request: LaunchRequest, channels: list[str]
) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request: the single job's request as the training definition.

    Image, source dir, channels, spot, stopping condition, metric definitions, KMS and tags are the
    single job's; the static hyperparameters are the single job's minus the tuned ones. Left out, as the
    definition has no place for them: Debugger and Profiler rules, and metrics time series. Left out on
    purpose: CheckpointConfig. A definition is shared by every trial and SageMaker gives trials no
    checkpoint location of their own, while train.py resumes from whatever checkpoint it finds there, so
    a trial could resume another trial's model; a spot-interrupted trial restarts from its first step.
    """
    if settings.tuning is None:
        raise SettingsError("no tuning configuration (TUNING_JOB_PREFIX, TUNING)")
    t = settings.tuning
    tuned = tuning.tuned_names(t.ranges)
    clash = sorted(tuned & request.hyperparameters.keys())
    if clash:
        raise EventError(
            f"hyperparameter(s) {', '.join(clash)} are tuned (tuning_ranges); leave them out of the event, "
            "or send tune: false to train once with them"
        )
    single = build_training_job_request(settings, name, request, channels)
    algorithm = {
        k: v for k, v in single["AlgorithmSpecification"].items() if k != "EnableSageMakerMetricsTimeSeries"
    }
    definition = {
        "StaticHyperParameters": {k: v for k, v in single["HyperParameters"].items() if k not in tuned},
        "AlgorithmSpecification": algorithm,
        **{key: single[key] for key in _DEFINITION_FIELDS},
    }
    config: dict[str, Any] = {
        "Strategy": t.strategy,
        "HyperParameterTuningJobObjective": {
            "Type": tuning.OBJECTIVES[t.objective],
            "MetricName": t.objective,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": t.max_jobs,
            "MaxParallelTrainingJobs": t.max_parallel_jobs,
        },
        "ParameterRanges": t.ranges,
        "TrainingJobEarlyStoppingType": t.early_stopping,
    }
    if t.strategy == "Hyperband":
        # Hyperband's resource is the epoch: train.py evaluates (and prints the objective) every epoch.
        epochs = float({**settings.hyperparameters, **request.hyperparameters}.get("num_train_epochs", "1"))
        config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": max(1, math.ceil(epochs))}
        }
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        # SageMaker adds the tuning job's tags to every trial it starts.
        "Tags": single["Tags"],
    }


def _error(err: ClientError) -> tuple[str, str]:
    info = err.response.get("Error", {})
    return str(info.get("Code", "Unknown")), str(info.get("Message", err))


def _missing(err: ClientError) -> bool:
    code, message = _error(err)
    text = message.lower()
    return code == "ResourceNotFound" or (
        code == "ValidationException"
        and any(m in text for m in ("not found", "could not find", "can't find"))
    )


def _exists(describe: Any, operation: str, **name: str) -> bool:
    """Whether the job ``describe`` names exists; any error but "not found" is a LaunchError."""
    try:
        describe(**name)
    except ClientError as err:
        if _missing(err):
            return False
        code, message = _error(err)
        raise LaunchError(f"{operation} {next(iter(name.values()))} failed: {code}: {message}") from err
    return True


def _job_exists(sagemaker: Any, name: str) -> bool:
    return _exists(sagemaker.describe_training_job, "DescribeTrainingJob", TrainingJobName=name)


def _tuning_job_exists(sagemaker: Any, name: str) -> bool:
    return _exists(
        sagemaker.describe_hyper_parameter_tuning_job,
        "DescribeHyperParameterTuningJob",
        HyperParameterTuningJobName=name,
    )


def _own_jobs(sagemaker: Any, settings: LaunchSettings, **filters: Any) -> list[str]:
    """Names of this app's training jobs, and tuning jobs when it has them, that match ``filters``
    (``StatusEquals``, ``CreationTimeAfter``), all pages."""
    listings = [
        (sagemaker.list_training_jobs, "TrainingJobSummaries", "TrainingJobName", settings.job_name_prefix)
    ]
    if settings.tuning is not None:
        listings.append(
            (
                sagemaker.list_hyper_parameter_tuning_jobs,
                "HyperParameterTuningJobSummaries",
                "HyperParameterTuningJobName",
                settings.tuning.job_name_prefix,
            )
        )
    names: list[str] = []
    for list_page, key, name_key, prefix in listings:
        kwargs: dict[str, Any] = {"NameContains": prefix, "MaxResults": 100, **filters}
        while True:
            page = list_page(**kwargs)
            names += [j[name_key] for j in page[key] if j[name_key].startswith(prefix)]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return names


def _running_jobs(sagemaker: Any, settings: LaunchSettings) -> list[str]:
    """Training and tuning jobs of this app still in progress (a tuning job's trials count through it)."""
    return _own_jobs(sagemaker, settings, StatusEquals="InProgress")


def _debounced(sagemaker: Any, settings: LaunchSettings, request: LaunchRequest) -> str | None:
    """For new data: a job of this app started within the debounce window, if any (several manifests in a
    row start one job). A redelivery of the event that started it is reported as a duplicate instead."""
    if request.trigger != "data" or not settings.debounce_minutes or request.time is None:
        return None
    since = request.time - timedelta(minutes=settings.debounce_minutes)
    own = {job_name(settings.job_name_prefix, request)}
    if settings.tuning is not None:
        own.add(tuning_job_name(settings.tuning.job_name_prefix, request))
    recent = [name for name in _own_jobs(sagemaker, settings, CreationTimeAfter=since) if name not in own]
    return recent[0] if recent else None


def _existing_channels(s3: Any, bucket: str, dataset_prefix: str) -> list[str]:
    found = []
    for channel in CHANNELS:
        prefix = f"{dataset_prefix}{channel}/"
        try:
            page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as err:
            code, message = _error(err)
            raise LaunchError(f"cannot list s3://{bucket}/{prefix}: {code}: {message}") from err
        if page.get("KeyCount", 0):
            found.append(channel)
    if "train" not in found:
        raise LaunchError(
            f"no training data under s3://{bucket}/{dataset_prefix}train/; stage a dataset first "
            "(the dataset-staging CodeBuild project, or python -m ml_code.stage)"
        )
    return found


def launch(
    event: Any, settings: LaunchSettings, *, sagemaker: Any, s3: Any, request_id: str
) -> dict[str, Any]:
    """Starts one training job, or one tuning job, for the event, unless it already exists or a job of
    this app is running."""
    request = parse_event(event, request_id)
    if request.bucket is not None and request.bucket != settings.bucket:
        raise EventError(
            f"the event is for bucket {request.bucket!r}; this launcher trains from {settings.bucket!r}"
        )
    recent = _debounced(sagemaker, settings, request)
    if recent:
        LOG.info(
            "not starting a job for %s: %s started within %d minutes",
            request.trigger_id,
            recent,
            settings.debounce_minutes,
        )
        return {
            "status": "skipped",
            "job": recent,
            "reason": f"debounced: {recent} was started for new data less than {settings.debounce_minutes} minutes before",
        }
    if wants_tuning(request, settings):
        return _launch_tuning(request, settings, sagemaker=sagemaker, s3=s3)
    name = job_name(settings.job_name_prefix, request)
    if _job_exists(sagemaker, name):
        LOG.info("job %s already exists: event %s was delivered again", name, request.trigger_id)
        return {"status": "duplicate", "job": name, "reason": "this event already started the job"}
    running = _running_jobs(sagemaker, settings)
    if running:
        LOG.info("not starting %s: %s still in progress", name, ", ".join(running))
        return {"status": "skipped", "job": name, "reason": f"already in progress: {', '.join(running)}"}
    dataset_prefix = request.dataset_prefix or settings.dataset_prefix
    channels = _existing_channels(s3, settings.bucket, dataset_prefix)
    body = build_training_job_request(settings, name, request, channels)
    try:
        response = sagemaker.create_training_job(**body)
    except ClientError as err:
        code, message = _error(err)
        if code == "ResourceInUse":  # a concurrent delivery of the same event won the race
            return {"status": "duplicate", "job": name, "reason": message}
        raise LaunchError(f"CreateTrainingJob {name} failed: {code}: {message}") from err
    LOG.info("started %s with channels %s", name, ", ".join(channels))
    return {"status": "started", "job": name, "arn": response["TrainingJobArn"], "channels": channels}


def _launch_tuning(
    request: LaunchRequest, settings: LaunchSettings, *, sagemaker: Any, s3: Any
) -> dict[str, Any]:
    """One tuning job for the event: the same checks as a single job, against tuning job names."""
    if settings.tuning is None:  # wants_tuning refuses this first; here for the type checker
        raise SettingsError("no tuning configuration (TUNING_JOB_PREFIX, TUNING)")
    name = tuning_job_name(settings.tuning.job_name_prefix, request)
    kind = {"kind": "tuning"}
    if _tuning_job_exists(sagemaker, name):
        LOG.info("tuning job %s already exists: event %s was delivered again", name, request.trigger_id)
        return {
            "status": "duplicate",
            "job": name,
            **kind,
            "reason": "this event already started the tuning job",
        }
    running = _running_jobs(sagemaker, settings)
    if running:
        LOG.info("not starting %s: %s still in progress", name, ", ".join(running))
        return {
            "status": "skipped",
            "job": name,
            **kind,
            "reason": f"already in progress: {', '.join(running)}",
        }
    dataset_prefix = request.dataset_prefix or settings.dataset_prefix
    channels = _existing_channels(s3, settings.bucket, dataset_prefix)
    body = build_tuning_job_request(settings, name, request, channels)
    try:
        response = sagemaker.create_hyper_parameter_tuning_job(**body)
    except ClientError as err:
        code, message = _error(err)
        if code == "ResourceInUse":  # a concurrent delivery of the same event won the race
            return {"status": "duplicate", "job": name, **kind, "reason": message}
        raise LaunchError(f"CreateHyperParameterTuningJob {name} failed: {code}: {message}") from err
    limits = body["HyperParameterTuningJobConfig"]["ResourceLimits"]
    LOG.info(
        "started tuning job %s (%s trials at most) with channels %s",
        name,
        limits["MaxNumberOfTrainingJobs"],
        ", ".join(channels),
    )
    return {
        "status": "started",
        "job": name,
        **kind,
        "arn": response["HyperParameterTuningJobArn"],
        "channels": channels,
        "max_jobs": limits["MaxNumberOfTrainingJobs"],
        "max_parallel_jobs": limits["MaxParallelTrainingJobs"],
    }

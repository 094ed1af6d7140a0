"""Launcher logic: event parsing, job names, the CreateTrainingJob and CreateHyperParameterTuningJob
requests.

Pure functions, testable against botocore's request models without an account (the calls that talk to
SageMaker and S3 are in ``aws.py``). A tuning job's training definition is the single job's request,
converted: one builder, so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common import contract, lambda_contract

from .events import EventError, NewDataEvent, ScheduledEvent, typed_event
from .settings import LaunchSettings, SettingsError

CHANNELS = contract.DATASET_CHANNELS
CHECKPOINT_LOCAL_PATH = contract.CHECKPOINT_DIR
# TensorBoard: train.py writes the Trainer's event files to /opt/ml/output/tensorboard, the documented default
# of TensorBoardOutputConfig.LocalPath (training/curves.py), and SageMaker uploads that folder while the job
# runs to <S3OutputPath><job>/tensorboard-output/ (the SageMaker Python SDK's
# Estimator.latest_job_tensorboard_artifacts_path). S3OutputPath is therefore the prefix alone, as for the
# Debugger hook: a job's event files are at tensorboard/<job>/tensorboard-output/ in the data bucket.
# LocalPath is left to its default: the service refuses one under its reserved /opt/ml, the default's own
# spelling included (ValidationException: "LocalPath" of "TensorBoardOutputConfig" cannot start with the
# following reserved path: [/opt/ml, /tmp, /usr/local/nvidia]; aws/amazon-sagemaker-examples#3620).
TENSORBOARD_PREFIX = contract.TENSORBOARD_PREFIX
TENSORBOARD_OUTPUT = "tensorboard-output"
ENTRY_POINT = contract.ENTRY_POINT
# Each segment starts with a letter or digit: no "." or ".." segments.
_DATASET_PREFIX = re.compile(re.escape(contract.DATASETS_PREFIX) + r"([A-Za-z0-9][A-Za-z0-9._-]*/)+")
# A Hugging Face id (org/name) or a relative folder inside the source dir; never absolute, never "..".
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95}){0,3}")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
JOB_NAME_LIMIT = lambda_contract.JOB_NAME_LIMIT
TUNING_NAME_LIMIT, TUNING_SUFFIX_LENGTH = (
    lambda_contract.TUNING_NAME_LIMIT,
    lambda_contract.TUNING_SUFFIX_LENGTH,
)


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
    """A scheduled EventBridge event, a dataset manifest's S3 event, or a manual
    ``{"hyperparameters": {...}, "dataset_prefix": ..., "tune": true|false}``.

    The trigger id makes the job name: EventBridge keeps an event's ``id`` across redeliveries and
    Lambda keeps the request id across its own retries of an asynchronous invocation.
    """
    typed = typed_event(event)
    if isinstance(typed, NewDataEvent):
        return _new_data(typed)
    hyperparameters = {name: _hyperparameter(name, value) for name, value in typed.hyperparameters.items()}
    dataset_prefix = typed.dataset_prefix
    if dataset_prefix is not None and (
        not isinstance(dataset_prefix, str) or not _DATASET_PREFIX.fullmatch(dataset_prefix)
    ):
        raise EventError(
            f"'dataset_prefix' {dataset_prefix!r} must be a prefix under {contract.DATASETS_PREFIX!r} ending in '/'"
        )
    if isinstance(typed, ScheduledEvent):
        return LaunchRequest(
            typed.get_id, "schedule", _event_time(typed.time), hyperparameters, dataset_prefix, typed.tune
        )
    if not request_id:
        raise EventError("a manual invocation needs a request id")
    return LaunchRequest(request_id, "manual", None, hyperparameters, dataset_prefix, typed.tune)


def _event_time(raw_time: Any) -> datetime:
    if not isinstance(raw_time, str):
        raise EventError("the event must carry 'time'")
    try:
        return datetime.fromisoformat(raw_time.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise EventError(f"the event's 'time' {raw_time!r} is not an ISO 8601 timestamp") from None


def _new_data(event: NewDataEvent) -> LaunchRequest:
    """A dataset's ``manifest.jsonl`` was created: train on that dataset.

    The manifest is the last object staging writes, so the dataset is complete. The trigger is the
    manifest's version (or ETag): a redelivered event names the same job, a new staging run a new one.
    """
    bucket, key = event.detail.bucket.name, event.detail.object.key
    manifest = contract.MANIFEST_FILE
    prefix = key.removesuffix(manifest)
    if not key.endswith("/" + manifest) or not _DATASET_PREFIX.fullmatch(prefix):
        raise EventError(
            f"object {key!r} is not a dataset manifest ({contract.DATASETS_PREFIX}<name>/{manifest}); nothing to train"
        )
    if event.manifest_version is None:
        raise EventError(f"the S3 event for {key!r} carries neither 'version-id' nor 'etag'")
    return LaunchRequest(
        f"s3://{bucket}/{key}@{event.manifest_version}",
        "data",
        _event_time(event.get("time")),
        {},
        prefix,
        None,
        bucket,
    )


def job_name(prefix: str, request: LaunchRequest) -> str:
    """Deterministic per trigger, so a redelivered event names the job that already exists."""
    digest = hashlib.sha256(request.trigger_id.encode()).hexdigest()[:8]
    stamp = request.time.strftime("%Y%m%d-%H%M%S") if request.time else "manual"
    name = f"{prefix}{stamp}-{digest}"
    if len(name) > JOB_NAME_LIMIT:
        raise SettingsError(
            f"job name {name!r} is longer than SageMaker's {JOB_NAME_LIMIT} characters; shorten the prefix"
        )
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


def tensorboard_output_config(bucket: str) -> dict[str, str]:
    """CreateTrainingJob's TensorBoardOutputConfig: the prefix SageMaker uploads the event files under (each
    job in its own ``<job>/tensorboard-output/``), from the default LocalPath, /opt/ml/output/tensorboard."""
    return {"S3OutputPath": _s3_url(bucket, TENSORBOARD_PREFIX)}


def tensorboard_uri(bucket: str, job: str) -> str:
    """Where a job's TensorBoard event files are in S3, for ``tensorboard --logdir`` after a sync."""
    return _s3_url(bucket, TENSORBOARD_PREFIX, job, TENSORBOARD_OUTPUT)


def build_training_job_request(
    settings: LaunchSettings, name: str, request: LaunchRequest, channels: list[str]
) -> dict[str, Any]:
    """The CreateTrainingJob request, as the SageMaker Python SDK's Hugging Face estimator builds it,
    with the configured Debugger and Profiler rules and the TensorBoard output."""
    dataset_prefix = request.dataset_prefix or settings.dataset_prefix
    hyperparameters = {
        contract.DATASET_NAME_ARGUMENT: contract.dataset_name(dataset_prefix),
        **settings.hyperparameters,
        **request.hyperparameters,
    }
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
            "MetricDefinitions": contract.metric_definitions(settings.metric_names),
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
            # NVMe instance storage is encrypted by the hardware, and SageMaker refuses a key for it.
            **contract.volume_key(settings.instance_type, settings.kms_key_arn),
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.use_spot,
        "CheckpointConfig": {
            "S3Uri": _s3_url(settings.bucket, settings.checkpoints_prefix, name),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "TensorBoardOutputConfig": tensorboard_output_config(settings.bucket),
        "EnableInterContainerTrafficEncryption": settings.instance_count > 1,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
        **rules_request(
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
    definition has no place for them: Debugger and Profiler rules, metrics time series, and
    TensorBoardOutputConfig (trials still write event files, which nothing uploads). Left out on
    purpose: CheckpointConfig. A definition is shared by every trial and SageMaker gives trials no
    checkpoint location of their own, while train.py resumes from whatever checkpoint it finds there, so
    a trial could resume another trial's model; a spot-interrupted trial restarts from its first step.
    """
    if settings.tuning is None:
        raise SettingsError("no tuning configuration (TUNING_JOB_PREFIX, TUNING)")
    t = settings.tuning
    tuned = lambda_contract.tuned_names(t.ranges)
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
            "Type": t.objective_type,
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


# --- Debugger and Profiler rules ------------------------------------------------------------------
# A built-in rule is invoked by name (``rule_to_invoke``), the rule container applies its documented
# defaults, and LossNotDecreasing asks the hook to save the ``losses`` collection (the SDK's
# ``sagemaker.debugger.rule_configs``). The rule evaluator image is resolved per region by the stack.


def _rule(name: str, image: str, output: str) -> dict[str, Any]:
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": image,
        "S3OutputPath": output,
        "RuleParameters": {"rule_to_invoke": name},
    }


def rules_request(
    *,
    job: str,
    bucket: str,
    image: str,
    debugger_rules: Sequence[str],
    debug_prefix: str,
    profiler_enabled: bool,
    profiler_rules: Sequence[str],
    profiler_prefix: str,
    profiling_interval_ms: int,
) -> dict[str, Any]:
    """The CreateTrainingJob fields for Debugger and Profiler, outputs under the two prefixes.

    SageMaker writes ``<prefix><job>/debug-output/`` and ``<prefix><job>/profiler-output/`` below the
    configured paths; each rule's own output goes to ``<prefix><job>/rule-output/``. Without profiling
    the request says so (SageMaker's default would otherwise decide).
    """
    fields: dict[str, Any] = {}
    if debugger_rules:
        base = f"s3://{bucket}/{debug_prefix}"
        collections: dict[str, dict[str, str]] = {}
        for name in debugger_rules:
            collections.update(lambda_contract.DEBUGGER_RULES[name])
        hook: dict[str, Any] = {"S3OutputPath": base}
        if collections:
            hook["CollectionConfigurations"] = [
                {"CollectionName": name, "CollectionParameters": dict(parameters)}
                for name, parameters in sorted(collections.items())
            ]
        fields["DebugHookConfig"] = hook
        fields["DebugRuleConfigurations"] = [
            _rule(name, image, f"{base}{job}/rule-output") for name in debugger_rules
        ]
    if not profiler_enabled:
        fields["ProfilerConfig"] = {"DisableProfiler": True}
        return fields
    base = f"s3://{bucket}/{profiler_prefix}"
    fields["ProfilerConfig"] = {
        "S3OutputPath": base,
        "ProfilingIntervalInMilliseconds": profiling_interval_ms,
    }
    if profiler_rules:
        fields["ProfilerRuleConfigurations"] = [
            _rule(name, image, f"{base}{job}/rule-output") for name in profiler_rules
        ]
    return fields

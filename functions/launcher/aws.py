"""The launcher's calls to SageMaker and S3, each against an injected client, and the launch itself.

What exists, what runs, what was started lately and which channels a dataset has decide whether a job
starts; the request itself is built by ``logic.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from .logic import (
    CHANNELS,
    EventError,
    LaunchRequest,
    build_training_job_request,
    build_tuning_job_request,
    job_name,
    parse_event,
    tuning_job_name,
    wants_tuning,
)
from .settings import LaunchSettings, SettingsError

try:  # the Lambda package carries it beside this module
    from . import lease  # type: ignore[attr-defined]
except ImportError:  # the repository
    from functions import lease

LOG = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """SageMaker or S3 refused what the launcher needs; the message names the job and the cause."""


@dataclass(frozen=True)
class Clients:
    """The AWS clients the launcher calls, built once per container by the handler."""

    sagemaker: Any
    s3: Any


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
    this app is running.

    One launch at a time, whatever triggered it: two triggers (the schedule and a new manifest) could
    otherwise both find nothing running and both start a job. A lease in the data bucket, not reserved
    concurrency, serializes them: a concurrent launch is skipped like one that finds a job running.
    """
    request = parse_event(event, request_id)
    if request.bucket is not None and request.bucket != settings.bucket:
        raise EventError(
            f"the event is for bucket {request.bucket!r}; this launcher trains from {settings.bucket!r}"
        )
    owner = f"{request.trigger} {request.trigger_id} (request {request_id})"
    try:
        taken = lease.acquire(s3, settings.bucket, settings.lock_key, owner=owner, now=datetime.now(UTC))
    except ClientError as err:
        code, message = _error(err)
        raise LaunchError(
            f"cannot take the launch lease s3://{settings.bucket}/{settings.lock_key}: {code}: {message}"
        ) from err
    if not taken:
        other = lease.holder(s3, settings.bucket, settings.lock_key)
        LOG.info("not launching for %s: another launch is under way (%s)", request.trigger_id, other)
        return {"status": "skipped", "reason": f"another launch is under way: {other}"}
    try:
        return _launch(request, settings, sagemaker, s3)
    finally:
        lease.release(s3, settings.bucket, settings.lock_key)


def _launch(request: LaunchRequest, settings: LaunchSettings, sagemaker: Any, s3: Any) -> dict[str, Any]:
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
    if not wants_tuning(request, settings):
        return _start(
            _TRAINING, job_name(settings.job_name_prefix, request), request, settings, sagemaker, s3
        )
    if settings.tuning is None:  # wants_tuning refuses this first; here for the type checker
        raise SettingsError("no tuning configuration (TUNING_JOB_PREFIX, TUNING)")
    name = tuning_job_name(settings.tuning.job_name_prefix, request)
    return _start(_TUNING, name, request, settings, sagemaker, s3)


@dataclass(frozen=True)
class _Kind:
    """What differs between starting a training job and a tuning job; the checks are the same."""

    noun: str
    exists: Callable[[Any, str], bool]
    build: Callable[[LaunchSettings, str, LaunchRequest, list[str]], dict[str, Any]]
    operation: str  # the API call, in errors
    method: str  # the client's method for it
    arn: str  # the key of the new job's ARN in the answer
    labels: dict[str, str] = field(default_factory=dict)  # added to every result


_TRAINING = _Kind(
    "job",
    _job_exists,
    build_training_job_request,
    "CreateTrainingJob",
    "create_training_job",
    "TrainingJobArn",
)
_TUNING = _Kind(
    "tuning job",
    _tuning_job_exists,
    build_tuning_job_request,
    "CreateHyperParameterTuningJob",
    "create_hyper_parameter_tuning_job",
    "HyperParameterTuningJobArn",
    {"kind": "tuning"},
)


def _start(
    kind: _Kind, name: str, request: LaunchRequest, settings: LaunchSettings, sagemaker: Any, s3: Any
) -> dict[str, Any]:
    """Starts ``name`` unless the event already started it or a job of this app is running."""
    if kind.exists(sagemaker, name):
        LOG.info("%s %s already exists: event %s was delivered again", kind.noun, name, request.trigger_id)
        return {
            "status": "duplicate",
            "job": name,
            **kind.labels,
            "reason": f"this event already started the {kind.noun}",
        }
    running = _running_jobs(sagemaker, settings)
    if running:
        LOG.info("not starting %s: %s still in progress", name, ", ".join(running))
        return {
            "status": "skipped",
            "job": name,
            **kind.labels,
            "reason": f"already in progress: {', '.join(running)}",
        }
    channels = _existing_channels(s3, settings.bucket, request.dataset_prefix or settings.dataset_prefix)
    body = kind.build(settings, name, request, channels)
    try:
        response = getattr(sagemaker, kind.method)(**body)
    except ClientError as err:
        code, message = _error(err)
        if code == "ResourceInUse":  # a concurrent delivery of the same event won the race
            return {"status": "duplicate", "job": name, **kind.labels, "reason": message}
        raise LaunchError(f"{kind.operation} {name} failed: {code}: {message}") from err
    result = {
        "status": "started",
        "job": name,
        **kind.labels,
        "arn": response[kind.arn],
        "channels": channels,
    }
    limits = body.get("HyperParameterTuningJobConfig", {}).get("ResourceLimits")
    if limits:
        result |= {
            "max_jobs": limits["MaxNumberOfTrainingJobs"],
            "max_parallel_jobs": limits["MaxParallelTrainingJobs"],
        }
    trials = f" ({result['max_jobs']} trials at most)" if limits else ""
    LOG.info("started %s %s%s with channels %s", kind.noun, name, trials, ", ".join(channels))
    return result

"""One launch, start to finish: take the launch lease, decide whether a job starts, start it.

Two triggers (the schedule and a new manifest) could otherwise both find nothing running and both start a
job; a redelivered event names the job it already started. The calls are in ``aws.py``, the requests in
``logic.py``; ``handle`` is what the handler calls, with the logger and the metrics it records into.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from common import lambda_contract
from lambdas import lease

from . import aws
from .aws import Clients, LaunchError
from .events import correlation_id
from .logic import (
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

# A child of the handler's Powertools logger (named after the service): its lines carry the context.
LOG = logging.getLogger(f"{lambda_contract.LAUNCHER_SERVICE}.orchestration")

__all__ = ["Clients", "LaunchError", "handle", "launch"]


def handle(
    event: Any, request_id: str, settings: LaunchSettings, clients: Clients, *, logger: Any, metrics: Any
) -> dict[str, Any]:
    """The handler's one call: the launch, its log line (correlated with the event) and its metric."""
    logger.set_correlation_id(correlation_id(event, request_id))
    result = launch(event, settings, sagemaker=clients.sagemaker, s3=clients.s3, request_id=request_id)
    metrics.add_metric(name=lambda_contract.launch_metric(result["status"]), unit="Count", value=1)
    logger.info("launch", extra=result)
    return result


def _debounced(sagemaker: Any, settings: LaunchSettings, request: LaunchRequest) -> str | None:
    """For new data: a job of this app started within the debounce window, if any (several manifests in a
    row start one job). A redelivery of the event that started it is reported as a duplicate instead."""
    if request.trigger != "data" or not settings.debounce_minutes or request.time is None:
        return None
    since = request.time - timedelta(minutes=settings.debounce_minutes)
    own = {job_name(settings.job_name_prefix, request)}
    if settings.tuning is not None:
        own.add(tuning_job_name(settings.tuning.job_name_prefix, request))
    recent = [name for name in aws.own_jobs(sagemaker, settings, CreationTimeAfter=since) if name not in own]
    return recent[0] if recent else None


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
        code, message = aws.error_of(err)
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
    aws.job_exists,
    build_training_job_request,
    "CreateTrainingJob",
    "create_training_job",
    "TrainingJobArn",
)
_TUNING = _Kind(
    "tuning job",
    aws.tuning_job_exists,
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
    running = aws.running_jobs(sagemaker, settings)
    if running:
        LOG.info("not starting %s: %s still in progress", name, ", ".join(running))
        return {
            "status": "skipped",
            "job": name,
            **kind.labels,
            "reason": f"already in progress: {', '.join(running)}",
        }
    channels = aws.existing_channels(s3, settings.bucket, request.dataset_prefix or settings.dataset_prefix)
    body = kind.build(settings, name, request, channels)
    try:
        response = getattr(sagemaker, kind.method)(**body)
    except ClientError as err:
        code, message = aws.error_of(err)
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

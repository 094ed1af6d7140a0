"""One state-change event, start to finish: read the job, gate it, register it, tell people.

A training job's event registers that job (never a tuning job's trial) and announces the Debugger and
Profiler rules that found issues in it; a tuning job's event registers its best completed trial.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from common import lambda_contract
from lambdas import lease

from . import aws, logic, model_card
from .aws import Clients
from .events import TrainingJobStateChange, TuningJobStateChange, correlation_id, typed_event
from .settings import Settings

__all__ = ["Clients", "RegistrationBusy", "handle", "promote"]


def handle(
    event: Any, request_id: str, settings: Settings, clients: Clients, *, logger: Any, metrics: Any
) -> dict[str, Any]:
    """The handler's one call: the promotion, its log line (correlated with the event) and, for a model
    registered now, the gate's decision as a metric."""
    logger.set_correlation_id(correlation_id(event, request_id))
    result = promote(event, settings, clients)
    if not result["duplicate"] and result["decision"] in lambda_contract.GATE_DECISIONS:
        metrics.add_metric(name=lambda_contract.gate_metric(result["decision"]), unit="Count", value=1)
    logger.info("promotion", extra=result)
    return result


def promote(event: Any, settings: Settings, clients: Clients) -> dict[str, Any]:
    """Handles one event; returns ``{job, status, decision, model_package_arn, duplicate, reasons, rules}``
    (and ``tuning_job`` for a tuning job's event)."""
    typed = typed_event(event)
    if isinstance(typed, TuningJobStateChange):
        return _promote_tuning(typed, settings, clients)
    return _promote_training(typed, settings, clients)


def _promote_training(
    training: TrainingJobStateChange, settings: Settings, clients: Clients
) -> dict[str, Any]:
    """A training job's state change: its model gated and registered, its rules announced."""
    job_name = training.job_name
    # Trials are named by SageMaker after their tuning job: <tuning job>-<NNN>-<suffix>.
    trial_name = bool(settings.tuning_job_prefix) and job_name.startswith(settings.tuning_job_prefix)
    if not (job_name.startswith(settings.job_name_prefix) or trial_name):
        return _result(
            job_name,
            training.status,
            logic.IGNORED,
            reasons=[
                f"job name does not start with {settings.job_name_prefix!r}: not a job of this deployment"
            ],
        )
    # Only a tuning job's winner is registered, from the tuning job's own event: each trial would
    # otherwise be registered (and announced) as a model of its own.
    if training.tuning_job_arn:
        return _trial(job_name, training.status, training.tuning_job_arn)

    job = aws.describe_training_job(clients.sagemaker, job_name)
    status = str(job.get("TrainingJobStatus"))
    tuning_job_arn = logic.tuning_job_of(job)
    if tuning_job_arn or trial_name:  # an event with only the job name (a re-run by hand) says nothing
        return _trial(job_name, status, tuning_job_arn or job_name.rsplit("-", 2)[0])

    rules = _announce_rules(job, settings, clients)
    if status in logic.FINISHED_WITHOUT_MODEL:
        failure_reason = job.get("FailureReason")
        subject, message = logic.failed_message(
            job_name=job_name, status=status, failure_reason=failure_reason
        )
        _notify_once(settings, clients, job_name, logic.OUTCOME, subject, message)
        return _result(
            job_name,
            status,
            logic.NOT_REGISTERED,
            reasons=[f"training job {status}: {failure_reason or 'no reason given'}"],
            rules=rules,
        )
    if status != logic.FINISHED_WITH_MODEL:
        return _result(
            job_name, status, logic.IGNORED, reasons=[f"training job is {status}, not finished"], rules=rules
        )

    return {**_register(job, settings, clients), "rules": rules}


def _promote_tuning(event: TuningJobStateChange, settings: Settings, clients: Clients) -> dict[str, Any]:
    """A finished tuning job: its best completed trial is gated and registered like a training job, with
    the tuning job and the winning values on the package; without one, people are told."""
    name = event.tuning_job_name
    if not settings.tuning_job_prefix or not name.startswith(settings.tuning_job_prefix):
        return _result(
            name,
            event.status,
            logic.IGNORED,
            reasons=[
                f"tuning job name does not start with {settings.tuning_job_prefix!r}: not one of this deployment"
            ],
            tuning_job=name,
        )
    described = aws.describe_tuning_job(clients.sagemaker, name)
    status = str(described.get("HyperParameterTuningJobStatus"))
    if status not in logic.TUNING_FINISHED:
        return _result(
            name, status, logic.IGNORED, reasons=[f"tuning job is {status}, not finished"], tuning_job=name
        )
    tuning = logic.tuning_result(described)
    if status == "Completed" and tuning.best_job:
        best = aws.describe_training_job(clients.sagemaker, tuning.best_job)
        if best.get("TrainingJobStatus") == logic.FINISHED_WITH_MODEL:
            return {**_register(best, settings, clients, tuning=tuning), "tuning_job": name}
    # Failed or stopped (a person stopped it, or it could not go on), or no trial completed: no winner.
    failure_reason = described.get("FailureReason") or None
    subject, message = logic.tuning_without_model_message(tuning, status, failure_reason)
    _notify_once(settings, clients, name, logic.OUTCOME, subject, message)
    reason = (
        "no training job of the tuning job completed"
        if status == "Completed"
        else f"tuning job {status}: {failure_reason or 'no reason given'}"
    )
    return _result(name, status, logic.NOT_REGISTERED, reasons=[reason], tuning_job=name)


def _announce_rules(job: dict[str, Any], settings: Settings, clients: Clients) -> list[str]:
    """Announces each Debugger or Profiler rule that found issues in the job, once per job and rule."""
    announced: list[str] = []
    job_name = str(job["TrainingJobName"])
    for finding in logic.rule_findings(job):
        subject, message = logic.rule_message(job_name, finding)
        if _notify_once(settings, clients, job_name, logic.rule_notification(finding), subject, message):
            announced.append(f"{finding.kind} rule {finding.rule}: {logic.RULE_FIRED}")
    return announced


def _notify_once(
    settings: Settings, clients: Clients, name: str, what: str, subject: str, message: str
) -> bool:
    """Publishes unless this message (``what`` about job ``name``) was sent before; True when sent.

    SageMaker sends a job's state again whenever one of its rules changes status, and EventBridge may
    deliver any event twice. A marker in the data bucket, written with If-None-Match so that only the
    first writer wins, records each message; a marker whose message could not be sent is removed again,
    so that the retried event sends it.
    """
    key = logic.notification_key(settings.evaluation_prefix, name, what)
    record = json.dumps({"job": name, "message": what, "subject": subject}).encode()
    if not aws.claim_marker(clients.s3, settings.data_bucket, key, record):
        return False
    try:
        aws.publish(clients.sns, settings.topic_arn, subject, message)
    except Exception:
        aws.release_marker(clients.s3, settings.data_bucket, key)
        raise
    return True


class RegistrationBusy(RuntimeError):
    """Another delivery of the same job's event holds its registration lease; this one fails, to be retried."""


def _register(
    job: dict[str, Any], settings: Settings, clients: Clients, tuning: logic.TuningResult | None = None
) -> dict[str, Any]:
    """Registers the job's model once: two deliveries of its event at the same time are serialized by a
    lease on the job (not by reserved concurrency); the second then finds the package the first made."""
    job_name: str = job["TrainingJobName"]
    key = logic.registration_lease_key(settings.evaluation_prefix, job_name)
    if not lease.acquire(
        clients.s3, settings.data_bucket, key, owner=f"registration of {job_name}", now=datetime.now(UTC)
    ):
        raise RegistrationBusy(
            f"another delivery of {job_name}'s event is registering it; this delivery fails and is retried, "
            "and then finds the registered package"
        )
    try:
        return _register_once(job, settings, clients, tuning)
    finally:
        lease.release(clients.s3, settings.data_bucket, key)


def _register_once(
    job: dict[str, Any], settings: Settings, clients: Clients, tuning: logic.TuningResult | None
) -> dict[str, Any]:
    job_name: str = job["TrainingJobName"]
    status = str(job["TrainingJobStatus"])
    created = job.get("CreationTime")

    existing = aws.find_package_for_job(
        clients.sagemaker,
        settings.model_package_group,
        job_name,
        created if isinstance(created, datetime) else None,
    )
    if existing is not None:
        return _repeat(job_name, status, existing, settings, clients, tuning)

    archive_uri = logic.output_archive_uri(job)
    archive = (
        aws.read_output_archive(clients.s3, archive_uri, settings.thresholds.metrics)
        if archive_uri
        else aws.OutputArchive(metrics={}, evaluation=None, problems=("the job has no S3 output path",))
    )
    metrics = logic.merge_metrics(
        logic.metrics_from_final_metric_data(job.get("FinalMetricDataList") or []), archive.metrics
    )
    model_data_url = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")

    if model_data_url:
        # What the run's health rules found: flags and values from the metrics, the rest from evaluation.json.
        health = logic.health_findings(
            metrics, logic.evaluation_health(archive.evaluation), settings.health_blocking_rules
        )
        decision = logic.decide(
            metrics,
            thresholds=settings.thresholds,
            approved=aws.approved_models(
                clients.sagemaker, settings.model_package_group, settings.thresholds.gate_rules
            ),
            manual_approval=settings.manual_approval,
            health=health,
        )
    else:
        decision = logic.rejected_without_metrics(
            "the job has no model artifact (ModelArtifacts.S3ModelArtifacts)"
        )
    if not decision.passed and archive.problems:
        # Missing metrics are easier to fix when the output's own problems are named too.
        decision = replace(decision, reasons=decision.reasons + archive.problems)

    report = archive.evaluation or logic.fallback_report(
        job_name, metrics, note="the job's output has no evaluation.json; these are the metrics the gate saw"
    )
    evaluation_uri = aws.put_evaluation(
        clients.s3,
        settings.data_bucket,
        logic.evaluation_key(settings.evaluation_prefix, job_name),
        report,
    )
    task = logic.job_task(job)
    card = model_card.package_model_card(
        job=job,
        decision=decision,
        metrics=metrics,
        thresholds=settings.thresholds,
        evaluation_uri=evaluation_uri,
        model_data_url=model_data_url,
        task=task,
        tuning=tuning,
    )
    request = logic.model_package_request(
        settings=settings,
        job_name=job_name,
        model_data_url=model_data_url,
        evaluation_uri=evaluation_uri,
        decision=decision,
        metrics=metrics,
        tuning=tuning,
        task=task,
        model_card=card,
    )
    arn = aws.create_model_package(clients.sagemaker, request)

    subject, message = logic.registered_message(
        job_name=job_name,
        decision=decision,
        model_package_arn=arn,
        evaluation_uri=evaluation_uri,
        duplicate=False,
        tuning=tuning,
    )
    _notify_once(settings, clients, job_name, logic.OUTCOME, subject, message)
    return _result(job_name, status, decision.status, arn=arn, reasons=list(decision.reasons))


def _trial(job_name: str, status: str | None, tuning_job_arn: str) -> dict[str, Any]:
    """A tuning job's trial: nothing registered or sent; the handler's log line carries the reason."""
    return _result(job_name, status, logic.IGNORED, reasons=[logic.ignored_trial_reason(tuning_job_arn)])


def _repeat(
    job_name: str,
    status: str,
    package: dict[str, Any],
    settings: Settings,
    clients: Clients,
    tuning: logic.TuningResult | None = None,
) -> dict[str, Any]:
    """A redelivered event: report the package registered earlier and create nothing."""
    arn = str(package["ModelPackageArn"])
    approval = str(package.get("ModelApprovalStatus", "Unknown"))
    reasons = [f"already registered for this job as {arn}; nothing new was created"]
    if package.get("ModelPackageDescription"):
        reasons.append(f"registered as: {package['ModelPackageDescription']}")
    decision = logic.Decision(
        status=approval, reasons=tuple(reasons), health=logic.health_of_package(package)
    )
    # Sent only when no message went out for the job yet: the first delivery failed after registering.
    subject, message = logic.registered_message(
        job_name=job_name,
        decision=decision,
        model_package_arn=arn,
        evaluation_uri=None,
        duplicate=True,
        tuning=tuning,
    )
    _notify_once(settings, clients, job_name, logic.OUTCOME, subject, message)
    return _result(job_name, status, approval, arn=arn, reasons=reasons, duplicate=True)


def _result(
    job_name: str,
    status: str | None,
    decision: str,
    *,
    reasons: list[str],
    arn: str | None = None,
    duplicate: bool = False,
    rules: list[str] | None = None,
    tuning_job: str | None = None,
) -> dict[str, Any]:
    result = {
        "job": job_name,
        "status": status,
        "decision": decision,
        "model_package_arn": arn,
        "duplicate": duplicate,
        "reasons": reasons,
        "rules": rules or [],
    }
    if tuning_job is not None:
        result["tuning_job"] = tuning_job
    return result

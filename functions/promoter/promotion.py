"""One training-state event, start to finish: read the job, gate it, register it, tell people."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import aws, logic
from .settings import Settings


@dataclass(frozen=True)
class Clients:
    """The boto3 clients the promoter uses; tests pass emulated or stubbed ones."""

    sagemaker: Any
    s3: Any
    sns: Any


def promote(event: Any, settings: Settings, clients: Clients) -> dict[str, Any]:
    """Handles one event; returns ``{job, status, decision, model_package_arn, duplicate, reasons}``."""
    training = logic.parse_event(event)
    job_name = training.job_name
    if not job_name.startswith(settings.job_name_prefix):
        return _result(
            job_name,
            training.status,
            logic.IGNORED,
            reasons=[
                f"job name does not start with {settings.job_name_prefix!r}: not a job of this deployment"
            ],
        )
    # No tuning yet: each trial would otherwise be registered (and announced) as a model of its own.
    if training.tuning_job_arn:
        return _trial(job_name, training.status, training.tuning_job_arn)

    job = aws.describe_training_job(clients.sagemaker, job_name)
    status = str(job.get("TrainingJobStatus"))
    tuning_job_arn = logic.tuning_job_of(job)
    if tuning_job_arn:  # an event with only the job name (a re-run by hand) says nothing about tuning
        return _trial(job_name, status, tuning_job_arn)

    if status in logic.FINISHED_WITHOUT_MODEL:
        failure_reason = job.get("FailureReason")
        subject, message = logic.failed_message(
            job_name=job_name, status=status, failure_reason=failure_reason
        )
        aws.publish(clients.sns, settings.topic_arn, subject, message)
        return _result(
            job_name,
            status,
            logic.NOT_REGISTERED,
            reasons=[f"training job {status}: {failure_reason or 'no reason given'}"],
        )
    if status != logic.FINISHED_WITH_MODEL:
        return _result(job_name, status, logic.IGNORED, reasons=[f"training job is {status}, not finished"])

    return _register(job, settings, clients)


def _register(job: dict[str, Any], settings: Settings, clients: Clients) -> dict[str, Any]:
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
        return _repeat(job_name, status, existing, settings, clients)

    archive_uri = logic.output_archive_uri(job)
    archive = (
        aws.read_output_archive(clients.s3, archive_uri)
        if archive_uri
        else aws.OutputArchive(metrics={}, evaluation=None, problems=("the job has no S3 output path",))
    )
    metrics = logic.merge_metrics(
        logic.metrics_from_final_metric_data(job.get("FinalMetricDataList") or []), archive.metrics
    )
    model_data_url = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")

    if model_data_url:
        decision = logic.decide(
            metrics,
            thresholds=settings.thresholds,
            approved=aws.approved_models(clients.sagemaker, settings.model_package_group),
            manual_approval=settings.manual_approval,
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
    request = logic.model_package_request(
        settings=settings,
        job_name=job_name,
        model_data_url=model_data_url,
        evaluation_uri=evaluation_uri,
        decision=decision,
        metrics=metrics,
    )
    arn = aws.create_model_package(clients.sagemaker, request)

    subject, message = logic.registered_message(
        job_name=job_name,
        decision=decision,
        model_package_arn=arn,
        evaluation_uri=evaluation_uri,
        duplicate=False,
    )
    aws.publish(clients.sns, settings.topic_arn, subject, message)
    return _result(job_name, status, decision.status, arn=arn, reasons=list(decision.reasons))


def _trial(job_name: str, status: str | None, tuning_job_arn: str) -> dict[str, Any]:
    """A tuning job's trial: nothing registered or sent; the handler's log line carries the reason."""
    return _result(job_name, status, logic.IGNORED, reasons=[logic.ignored_trial_reason(tuning_job_arn)])


def _repeat(
    job_name: str, status: str, package: dict[str, Any], settings: Settings, clients: Clients
) -> dict[str, Any]:
    """A redelivered event: report the package registered earlier and create nothing."""
    arn = str(package["ModelPackageArn"])
    approval = str(package.get("ModelApprovalStatus", "Unknown"))
    reasons = [f"already registered for this job as {arn}; nothing new was created"]
    if package.get("ModelPackageDescription"):
        reasons.append(f"registered as: {package['ModelPackageDescription']}")
    decision = logic.Decision(status=approval, reasons=tuple(reasons))
    # Notify again: if the first delivery failed after registering, this is the only message people get.
    subject, message = logic.registered_message(
        job_name=job_name,
        decision=decision,
        model_package_arn=arn,
        evaluation_uri=None,
        duplicate=True,
    )
    aws.publish(clients.sns, settings.topic_arn, subject, message)
    return _result(job_name, status, approval, arn=arn, reasons=reasons, duplicate=True)


def _result(
    job_name: str,
    status: str | None,
    decision: str,
    *,
    reasons: list[str],
    arn: str | None = None,
    duplicate: bool = False,
) -> dict[str, Any]:
    return {
        "job": job_name,
        "status": status,
        "decision": decision,
        "model_package_arn": arn,
        "duplicate": duplicate,
        "reasons": reasons,
    }

"""Pure promotion logic: the quality gate, and the requests and messages that follow from it.

Nothing here talks to AWS; every function takes values and returns values, so the gate is tested
exhaustively without a network or an emulator.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .settings import Settings, Thresholds

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
NOT_REGISTERED = "NotRegistered"  # the job failed or stopped: nothing to register
IGNORED = "Ignored"  # not a job of this deployment, or not finished

FINISHED_WITH_MODEL = "Completed"
FINISHED_WITHOUT_MODEL = ("Failed", "Stopped")

# Gated metrics, by the name train.py gives them after its split prefix (test_f1, eval_f1, ...).
GATED = ("accuracy", "f1", "clip_accuracy")
# Test metrics decide when the dataset has a test split; validation ("eval") metrics otherwise.
SPLITS = ("test", "eval")
# Everything train.py reports that is worth keeping on the model package.
KNOWN_METRICS = (*(f"{split}_{name}" for split in SPLITS for name in (*GATED, "loss")), "train_loss")

# What inference.py accepts and returns; the endpoint is created from this package.
CONTENT_TYPES = (
    "audio/wav",
    "audio/x-wav",
    "audio/flac",
    "audio/ogg",
    "audio/mpeg",
    "application/octet-stream",
    "application/json",
)
RESPONSE_TYPES = ("application/json",)
INFERENCE_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
}

# Keys of CustomerMetadataProperties; the next gate reads the same keys back from the approved package.
META_JOB = "training_job"
META_SPLIT = "metrics_split"

# A fixed namespace keeps ClientToken stable for a job name across containers and deployments.
_TOKEN_NAMESPACE = uuid.UUID("6f0e3c1a-7d5b-4f8e-9a51-3c2f4b8d9e10")
_DESCRIPTION_LIMIT = 1024
_METADATA_VALUE_LIMIT = 256
_SUBJECT_LIMIT = 100
# Metric comparisons tolerate float noise, so a value exactly at a threshold passes.
_EPSILON = 1e-9


@dataclass(frozen=True)
class TrainingEvent:
    """What the promoter needs from a ``SageMaker Training Job State Change`` event."""

    job_name: str
    status: str | None


@dataclass(frozen=True)
class CurrentModel:
    """The latest Approved package of the group, with the gated metrics it was registered with."""

    arn: str
    metrics: Mapping[str, float]
    split: str | None = None


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: the approval status to register and every reason for it."""

    status: str
    reasons: tuple[str, ...]
    split: str | None = None
    gated: Mapping[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != REJECTED


# --- the event --------------------------------------------------------------------------------------


def parse_event(event: Any) -> TrainingEvent:
    """Reads the job name (required) and status from an EventBridge training-state event."""
    if not isinstance(event, Mapping):
        raise ValueError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise ValueError(
            "event has no 'detail' object; expected a 'SageMaker Training Job State Change' event "
            "with detail.TrainingJobName"
        )
    job_name = detail.get("TrainingJobName")
    if not isinstance(job_name, str) or not job_name:
        raise ValueError("event detail has no 'TrainingJobName'; cannot tell which training job finished")
    status = detail.get("TrainingJobStatus")
    return TrainingEvent(job_name=job_name, status=status if isinstance(status, str) else None)


# --- metrics ----------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metrics_from_final_metric_data(items: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``FinalMetricDataList`` of DescribeTrainingJob as ``{name: value}``."""
    found: dict[str, float] = {}
    for item in items:
        name, value = item.get("MetricName"), _number(item.get("Value"))
        if isinstance(name, str) and value is not None:
            found[name] = value
    return found


def metrics_from_report(report: Any) -> dict[str, float]:
    """Known metric names from a flat ``metrics.json`` or a nested ``evaluation.json``.

    A nested report may spell ``test_f1`` as ``{"test": {"f1": ...}}`` or keep flat names under any key;
    both are found. The first occurrence of a name wins.
    """
    found: dict[str, float] = {}

    def walk(node: Any, parent: str) -> None:
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            if not isinstance(key, str):
                continue
            number = _number(value)
            if number is None:
                walk(value, key)
                continue
            for name in (key, f"{parent}_{key}"):
                if name in KNOWN_METRICS and name not in found:
                    found[name] = number
                    break

    walk(report, "")
    return found


def merge_metrics(*sources: Mapping[str, float]) -> dict[str, float]:
    """One view of the metrics: earlier sources win, later ones fill the gaps."""
    merged: dict[str, float] = {}
    for source in sources:
        for name, value in source.items():
            merged.setdefault(name, value)
    return merged


def gate_split(metrics: Mapping[str, float]) -> str:
    """``test`` when the job reported any test metric (it had a test split), else ``eval``."""
    if any(f"test_{name}" in metrics for name in GATED):
        return "test"
    return "eval"


# --- the gate ---------------------------------------------------------------------------------------


def decide(
    metrics: Mapping[str, float],
    *,
    thresholds: Thresholds,
    current: CurrentModel | None,
    manual_approval: bool,
) -> Decision:
    """The quality gate: every gated metric present, at or above its minimum, and not worse than the
    current approved model by more than ``max_regression``."""
    split = gate_split(metrics)
    failures: list[str] = []
    passes: list[str] = []
    gated: dict[str, float] = {}

    for name in GATED:
        key = f"{split}_{name}"
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            failures.append(f"{key} is missing from the job's metrics")
            continue
        if not 0.0 <= value <= 1.0:
            failures.append(f"{key} = {value:g} is not a fraction between 0 and 1")
            continue
        gated[name] = value
        minimum = thresholds.minimum(name)
        if value + _EPSILON < minimum:
            failures.append(f"{key} {value:.4f} < min_{name} {minimum:.4f}")
        else:
            passes.append(f"{key} {value:.4f} >= min_{name} {minimum:.4f}")

    if current is not None:
        if current.split and current.split != split:
            passes.append(
                f"note: the approved model was measured on {current.split} metrics, this one on {split}"
            )
        for name, value in gated.items():
            previous = current.metrics.get(name)
            if previous is None:
                passes.append(f"{name}: the approved model recorded none; not compared")
                continue
            drop = previous - value
            if drop > thresholds.max_regression + _EPSILON:
                failures.append(
                    f"{name} {value:.4f} is {drop:.4f} below the approved model's {previous:.4f} "
                    f"(max_regression {thresholds.max_regression:.4f})"
                )
            else:
                passes.append(
                    f"{name} {value:.4f} vs approved {previous:.4f}: "
                    f"within max_regression {thresholds.max_regression:.4f}"
                )
    else:
        passes.append("no approved model in the group yet; nothing to compare against")

    if failures:
        return Decision(status=REJECTED, reasons=tuple(failures), split=split, gated=gated)
    if manual_approval:
        passes.append("manual_approval is on: a person approves or rejects this package")
        return Decision(status=PENDING, reasons=tuple(passes), split=split, gated=gated)
    return Decision(status=APPROVED, reasons=tuple(passes), split=split, gated=gated)


def rejected_without_metrics(reason: str) -> Decision:
    """A completed job the gate cannot judge (no model artifact, unreadable output) is rejected."""
    return Decision(status=REJECTED, reasons=(reason,))


def current_model_from_package(package: Mapping[str, Any]) -> CurrentModel:
    """The approved package's gated metrics, read back from its CustomerMetadataProperties."""
    properties = package.get("CustomerMetadataProperties") or {}
    metrics: dict[str, float] = {}
    for name in GATED:
        try:
            value = float(properties[name])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            metrics[name] = value
    split = properties.get(META_SPLIT)
    return CurrentModel(
        arn=str(package["ModelPackageArn"]), metrics=metrics, split=split if isinstance(split, str) else None
    )


# --- requests ---------------------------------------------------------------------------------------


def client_token(job_name: str) -> str:
    """CreateModelPackage's idempotency token: the same job always yields the same 36-character token."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, job_name))


def evaluation_key(prefix: str, job_name: str) -> str:
    """Where the job's evaluation report is kept in the data bucket."""
    return f"{prefix}{job_name}/evaluation.json"


def output_archive_uri(job: Mapping[str, Any]) -> str | None:
    """``s3://.../<job>/output/output.tar.gz``: SageMaker's archive of train.py's output directory."""
    model_uri = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if isinstance(model_uri, str) and model_uri.endswith("/model.tar.gz"):
        return model_uri[: -len("model.tar.gz")] + "output.tar.gz"
    output_path = (job.get("OutputDataConfig") or {}).get("S3OutputPath")
    if isinstance(output_path, str) and output_path.startswith("s3://"):
        return f"{output_path.rstrip('/')}/{job['TrainingJobName']}/output/output.tar.gz"
    return None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def fallback_report(job_name: str, metrics: Mapping[str, float], note: str) -> bytes:
    """The report kept when the job's output has no evaluation.json: the metrics the gate saw."""
    report = {"training_job": job_name, "note": note, "metrics": dict(sorted(metrics.items()))}
    return json.dumps(report, indent=2).encode()


def _format_metric(value: float) -> str:
    return f"{value:.6g}"


def customer_metadata(job_name: str, decision: Decision, metrics: Mapping[str, float]) -> dict[str, str]:
    """Job name, gated values (``accuracy``, ``f1``, ``clip_accuracy``) and every known raw metric."""
    properties = {META_JOB: job_name}
    if decision.split:
        properties[META_SPLIT] = decision.split
    properties.update({name: _format_metric(value) for name, value in decision.gated.items()})
    properties.update({name: _format_metric(metrics[name]) for name in KNOWN_METRICS if name in metrics})
    return {key: value[:_METADATA_VALUE_LIMIT] for key, value in properties.items()}


def describe(decision: Decision) -> str:
    """ModelPackageDescription: the verdict and why, on one line within the API's 1,024 characters."""
    text = f"{decision.status}: " + "; ".join(decision.reasons)
    text = " ".join(text.split())  # the API allows no control characters
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[: _DESCRIPTION_LIMIT - 3] + "..."
    return text


def model_package_request(
    *,
    settings: Settings,
    job_name: str,
    model_data_url: str | None,
    evaluation_uri: str,
    decision: Decision,
    metrics: Mapping[str, float],
) -> dict[str, Any]:
    """The CreateModelPackage request for a completed job."""
    container: dict[str, Any] = {
        "Image": settings.inference_image,
        "Environment": dict(INFERENCE_ENVIRONMENT),
    }
    if model_data_url:
        container["ModelDataUrl"] = model_data_url
    return {
        "ModelPackageGroupName": settings.model_package_group,
        "ModelPackageDescription": describe(decision),
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(RESPONSE_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": [settings.serving_instance_type],
        },
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation_uri}}
        },
        "CustomerMetadataProperties": customer_metadata(job_name, decision, metrics),
        "ModelApprovalStatus": decision.status,
        "ClientToken": client_token(job_name),
    }


# --- notifications ----------------------------------------------------------------------------------


def _subject(text: str) -> str:
    return text if len(text) <= _SUBJECT_LIMIT else text[: _SUBJECT_LIMIT - 3] + "..."


def registered_message(
    *,
    job_name: str,
    decision: Decision,
    model_package_arn: str,
    evaluation_uri: str | None,
    duplicate: bool,
) -> tuple[str, str]:
    """Subject and body for a completed job: the decision, the metrics and the reasons."""
    lines = [f"Training job {job_name} completed. Model package: {decision.status}."]
    if duplicate:
        lines.append("(Repeated event: the package was registered earlier; nothing new was created.)")
    lines.append(f"Package: {model_package_arn}")
    if decision.gated:
        values = ", ".join(f"{name} {value:.4f}" for name, value in decision.gated.items())
        lines.append(f"Metrics ({decision.split}): {values}")
    if decision.reasons:
        lines.append("Why:")
        lines.extend(f"- {reason}" for reason in decision.reasons)
    if evaluation_uri:
        lines.append(f"Evaluation report: {evaluation_uri}")
    if decision.status == PENDING:
        lines.append(
            "Approve with: aws sagemaker update-model-package "
            f"--model-package-arn {model_package_arn} --model-approval-status Approved"
        )
    return _subject(f"AcousticShield: {job_name} {decision.status}"), "\n".join(lines)


def failed_message(*, job_name: str, status: str, failure_reason: str | None) -> tuple[str, str]:
    """Subject and body for a job that failed or was stopped."""
    lines = [
        f"Training job {job_name} {status.lower()}; no model package was registered.",
        f"Reason: {failure_reason or 'none given'}",
    ]
    return _subject(f"AcousticShield: {job_name} {status}"), "\n".join(lines)

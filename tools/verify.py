"""Checks that an endpoint serves what a deployment meant it to serve (``python -m tools.invoke --verify``).

CloudFormation can report a deployment as successful while the endpoint still serves the previous endpoint
config (SageMaker rolled the update back, or kept it). So the endpoint itself is asked:

1. it is ``InService`` (transitional states are waited out, up to a limit);
2. it serves the expected endpoint config, whose models come from the expected model package;
3. a smoke clip (a generated 1 s tone unless clips are given) gets a well-formed answer whose label is one of
   the model's labels (from the package's evaluation report; else the labels the answer itself lists).

Clients are passed in (boto3 ``sagemaker``, ``sagemaker-runtime``, ``s3``), so tests run this against moto.
"""

from __future__ import annotations

import io
import json
import math
import struct
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tasks
from common import contract

IN_SERVICE = "InService"
# Statuses that end by themselves: the verification waits for them to pass.
TRANSITIONAL = ("Creating", "Updating", "SystemUpdating", "RollingBack")
POLL_SECONDS = 15.0
SMOKE_CLIP_NAME = "generated 1 s tone (16 kHz mono WAV)"


class VerificationError(Exception):
    """The endpoint does not serve what was expected; the message says what differs and where to look."""


@dataclass(frozen=True)
class Expectation:
    """What the deployment meant to serve; ``None`` skips that check."""

    endpoint: str
    endpoint_config: str | None = None
    package_arn: str | None = None
    labels: tuple[str, ...] | None = None


@dataclass
class Report:
    """What the endpoint serves, and the notes a person should read (printed as one JSON line)."""

    endpoint: str
    status: str = ""
    endpoint_config: str = ""
    models: list[str] = field(default_factory=list)
    model_packages: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    labels_from: str = ""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "verified": True}


def smoke_clip(seconds: float = 1.0, sample_rate: int = 16_000, frequency: float = 440.0) -> bytes:
    """A quiet sine tone as a 16-bit mono WAV file: any model of this project must answer it."""
    count = int(seconds * sample_rate)
    samples = (round(8000 * math.sin(2 * math.pi * frequency * i / sample_rate)) for i in range(count))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(struct.pack(f"<{count}h", *samples))
    return buffer.getvalue()


def wait_in_service(
    sagemaker: Any,
    endpoint: str,
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """DescribeEndpoint until the status is no longer transitional; the endpoint must then be InService."""
    deadline = clock() + timeout
    while True:
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status not in TRANSITIONAL or clock() >= deadline:
            break
        sleep(POLL_SECONDS)
    if status != IN_SERVICE:
        reason = described.get("FailureReason") or "no failure reason given"
        waited = f" after waiting {timeout:g} s" if status in TRANSITIONAL else ""
        raise VerificationError(
            f"endpoint {endpoint!r} is {status}, not {IN_SERVICE}{waited}: {reason}. "
            f"Its logs are in CloudWatch log group /aws/sagemaker/Endpoints/{endpoint}"
        )
    return described


def _same_package(served: str, expected: str) -> bool:
    """A model names its package by ARN or by ``group/version``; both spell the same package."""
    if served == expected:
        return True
    return served.endswith(f":model-package/{expected}") or expected.endswith(f":model-package/{served}")


def served_models(sagemaker: Any, endpoint_config: str) -> tuple[list[str], list[str], bool]:
    """The config's model names, the packages (or archives) their containers come from, and whether it is async."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint_config)
    models = [variant["ModelName"] for variant in config["ProductionVariants"]]
    sources: list[str] = []
    for name in models:
        model = sagemaker.describe_model(ModelName=name)
        containers = list(model.get("Containers") or [])
        if model.get("PrimaryContainer"):
            containers.insert(0, model["PrimaryContainer"])
        for container in containers:
            source = container.get("ModelPackageName") or container.get("ModelDataUrl")
            if source:
                sources.append(source)
    return models, sources, bool(config.get("AsyncInferenceConfig"))


def package_labels(
    sagemaker: Any, s3: Any, package_arn: str
) -> tuple[tuple[str, ...] | None, str | None, str]:
    """The labels and the task in the package's evaluation report, and where they were read or why not."""
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    quality = (package.get("ModelMetrics") or {}).get("ModelQuality") or {}
    uri = (quality.get("Statistics") or {}).get("S3Uri")
    if not uri or not str(uri).startswith("s3://"):
        return None, None, f"model package {package_arn} has no evaluation report (ModelMetrics.ModelQuality)"
    bucket, _, key = str(uri).removeprefix("s3://").partition("/")
    try:
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as error:  # the report is evidence, not the deployment: say why it could not be read
        return None, None, f"cannot read the evaluation report {uri}: {error}"
    labels = report.get(contract.LABELS_KEY) if isinstance(report, dict) else None
    task = report.get(contract.TASK_KEY) if isinstance(report, dict) else None
    task = task if isinstance(task, str) else None  # reports from before tasks: classification
    if not (isinstance(labels, list) and labels and all(isinstance(label, str) for label in labels)):
        return None, task, f"the evaluation report {uri} lists no labels"
    return tuple(labels), task, uri


def check_prediction(response: Any, labels: Sequence[str] | None, task: str | None = None) -> list[str]:
    """What is wrong with the handler's answer for the model's task (``tasks/<task>.py``'s ``check_answer``);
    empty when nothing is."""
    if not isinstance(response, dict):
        return [f"the answer is {type(response).__name__}, not a JSON object"]
    return tasks.load(task).check_answer(response, labels)


def verify(
    *,
    sagemaker: Any,
    invoke: Callable[[bytes, str], Any],
    s3: Any,
    expected: Expectation,
    clips: Sequence[tuple[str, bytes, str]] = (),
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Runs every check; raises VerificationError naming each difference. ``invoke(body, content_type)``
    sends one request to the endpoint; ``clips`` are (name, body, content type), default the smoke tone."""
    endpoint = expected.endpoint
    report = Report(endpoint=endpoint)
    described = wait_in_service(sagemaker, endpoint, timeout=timeout, sleep=sleep)
    report.status = described["EndpointStatus"]
    report.endpoint_config = described["EndpointConfigName"]

    problems = []
    if expected.endpoint_config and report.endpoint_config != expected.endpoint_config:
        problems.append(
            f"endpoint {endpoint!r} serves endpoint config {report.endpoint_config!r}, not "
            f"{expected.endpoint_config!r} that the deployment created: SageMaker kept or rolled back to the "
            f"previous configuration (aws sagemaker describe-endpoint --endpoint-name {endpoint} shows why)"
        )
    report.models, report.model_packages, is_async = served_models(sagemaker, report.endpoint_config)
    if expected.package_arn and not any(
        _same_package(s, expected.package_arn) for s in report.model_packages
    ):
        problems.append(
            f"endpoint {endpoint!r} serves {', '.join(report.model_packages) or 'no model package'} "
            f"(model {', '.join(report.models)} of endpoint config {report.endpoint_config!r}), not the "
            f"expected model package {expected.package_arn}"
        )
    if problems:
        raise VerificationError("; ".join(problems))

    labels, task = expected.labels, None
    report.labels_from = "--labels" if labels else ""
    if labels is None and expected.package_arn:
        labels, task, source = package_labels(sagemaker, s3, expected.package_arn)
        if labels is None:
            report.notes.append(f"{source}; the label is checked against the labels the answer lists")
        else:
            report.labels_from = source
    report.labels = list(labels or [])

    if is_async:
        report.notes.append(
            "async endpoint: no smoke prediction (requests go through S3, not InvokeEndpoint)"
        )
        return report
    for name, body, content_type in clips or [
        (SMOKE_CLIP_NAME, smoke_clip(), contract.SUFFIX_CONTENT_TYPES[".wav"])
    ]:
        response = invoke(body, content_type)
        wrong = check_prediction(response, labels, task)
        if wrong:
            raise VerificationError(
                f"endpoint {endpoint!r} answered {name} with {json.dumps(response)[:500]}: "
                + "; ".join(wrong)
            )
        report.predictions.append({"clip": name, "response": response})
    return report

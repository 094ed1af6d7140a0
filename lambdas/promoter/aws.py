"""Data access: the few AWS reads and writes the promoter makes, each against an injected client."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from common import contract
from common.lambda_contract import GateRule

from .logic import META_JOB, ApprovedModel, approved_model_from_package, metrics_from_report, split_s3_uri

# The two reports are small JSON files; anything bigger is not what train.py writes.
_MEMBER_LIMIT = 16 * 1024 * 1024
_MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchBucket")
_DENIED = ("AccessDenied", "403")
# A conditional write that lost: the object exists (412), or another write to it is under way (409).
_TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


@dataclass(frozen=True)
class Clients:
    """The boto3 clients the promoter uses; tests pass emulated or stubbed ones."""

    sagemaker: Any
    s3: Any
    sns: Any


@dataclass(frozen=True)
class OutputArchive:
    """What the promoter takes from the job's ``output.tar.gz``."""

    metrics: dict[str, float]
    evaluation: bytes | None
    problems: tuple[str, ...] = ()


def describe_training_job(sagemaker: Any, job_name: str) -> dict[str, Any]:
    """The authoritative record of the job (the event may be partial or stale)."""
    job: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=job_name)
    return job


def describe_tuning_job(sagemaker: Any, name: str) -> dict[str, Any]:
    """The authoritative record of a tuning job: its status, winner and trial counts."""
    job: dict[str, Any] = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    return job


def claim_marker(s3: Any, bucket: str, key: str, body: bytes) -> bool:
    """Writes ``key`` only if it does not exist yet; False when it does (already claimed)."""
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=contract.JSON_CONTENT_TYPE, IfNoneMatch="*"
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _TAKEN:
            return False
        raise
    return True


def release_marker(s3: Any, bucket: str, key: str) -> None:
    """Removes a claim whose announcement could not be sent, so that a retry sends it."""
    s3.delete_object(Bucket=bucket, Key=key)


def _listed(s3: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` exists, asked of ListObjectsV2 (the role's list grant is scoped to the prefix).

    Without an unconditioned s3:ListBucket, S3 answers a GetObject of a missing key with 403 AccessDenied
    (GetObject, Amazon S3 API Reference): only the listing tells a missing archive from a real denial.
    """
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(item["Key"] == key for item in listed.get("Contents", []))


def read_output_archive(s3: Any, uri: str, gated: Sequence[str] = ()) -> OutputArchive:
    """``metrics.json`` and ``evaluation.json`` from the archive root, streamed without unpacking the rest;
    their metrics as ``metrics_from_report`` reads them (``gated``: the gate rules' metric names).

    A missing or unreadable archive is reported as a problem (the gate then rejects for missing
    metrics); access errors propagate.
    """
    bucket, key = split_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in _MISSING or (code in _DENIED and not _listed(s3, bucket, key)):
            return OutputArchive(metrics={}, evaluation=None, problems=(f"{uri} does not exist",))
        raise

    wanted = {contract.METRICS_FILE, contract.EVALUATION_FILE}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=body, mode="r|gz") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile() and member.size <= _MEMBER_LIMIT:
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        found[name] = extracted.read()
                if wanted <= found.keys():
                    break
    except (tarfile.TarError, EOFError, OSError) as error:
        return OutputArchive(
            metrics={}, evaluation=None, problems=(f"{uri} is not a readable tar.gz: {error}",)
        )
    finally:
        body.close()

    problems: list[str] = []
    metrics: dict[str, float] = {}
    for name in (
        contract.METRICS_FILE,
        contract.EVALUATION_FILE,
    ):  # metrics.json first: it is the flat, explicit one
        if name not in found:
            problems.append(f"{name} is not in {uri}")
            continue
        try:
            report = json.loads(found[name])
        except ValueError as error:
            problems.append(f"{name} in {uri} is not valid JSON: {error}")
            continue
        for metric, value in metrics_from_report(report, gated).items():
            metrics.setdefault(metric, value)
    return OutputArchive(
        metrics=metrics, evaluation=found.get(contract.EVALUATION_FILE), problems=tuple(problems)
    )


def put_evaluation(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """Keeps the evaluation report where the model package's ModelQuality points; returns its URI."""
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=contract.JSON_CONTENT_TYPE)
    return f"s3://{bucket}/{key}"


def find_package_for_job(
    sagemaker: Any, group: str, job_name: str, created_after: datetime | None
) -> dict[str, Any] | None:
    """The package already registered for this job, if a previous delivery of the event created one.

    Only packages created after the job itself can belong to it, which keeps the scan short however
    large the group grows.
    """
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    if created_after is not None:
        request["CreationTimeAfter"] = created_after
    for page in sagemaker.get_paginator("list_model_packages").paginate(**request):
        for summary in page.get("ModelPackageSummaryList", []):
            package: dict[str, Any] = sagemaker.describe_model_package(
                ModelPackageName=summary["ModelPackageArn"]
            )
            if (package.get("CustomerMetadataProperties") or {}).get(META_JOB) == job_name:
                return package
    return None


def approved_models(sagemaker: Any, group: str, rules: Sequence[GateRule]) -> list[ApprovedModel]:
    """Every Approved package of the group, all pages, with the values of the gate ``rules``' metrics it was
    registered with.

    The gate compares with the best of them, so none may be left out; one DescribeModelPackage each,
    because the list's summaries carry no metadata.
    """
    models: list[ApprovedModel] = []
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    for page in pages:
        for summary in page.get("ModelPackageSummaryList", []):
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            models.append(approved_model_from_package(package, rules))
    return models


def create_model_package(sagemaker: Any, request: Mapping[str, Any]) -> str:
    """Registers the package; returns its ARN."""
    arn: str = sagemaker.create_model_package(**request)["ModelPackageArn"]
    return arn


def publish(sns: Any, topic_arn: str, subject: str, message: str) -> None:
    """Sends the human-readable notification."""
    sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)

"""The launcher's calls to SageMaker and S3, each against an injected client.

What exists, what runs and which channels a dataset has; what to do with the answers is decided by
``orchestration.py``, and the requests are built by ``logic.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from common import contract

from .logic import CHANNELS
from .settings import LaunchSettings


class LaunchError(RuntimeError):
    """SageMaker or S3 refused what the launcher needs; the message names the job and the cause."""


@dataclass(frozen=True)
class Clients:
    """The AWS clients the launcher calls, built once per container by the handler."""

    sagemaker: Any
    s3: Any


def error_of(err: ClientError) -> tuple[str, str]:
    """The error's code and message, for errors that name both."""
    info = err.response.get("Error", {})
    return str(info.get("Code", "Unknown")), str(info.get("Message", err))


def _missing(err: ClientError) -> bool:
    code, message = error_of(err)
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
        code, message = error_of(err)
        raise LaunchError(f"{operation} {next(iter(name.values()))} failed: {code}: {message}") from err
    return True


def job_exists(sagemaker: Any, name: str) -> bool:
    """Whether the training job ``name`` exists (a redelivered event started it)."""
    return _exists(sagemaker.describe_training_job, "DescribeTrainingJob", TrainingJobName=name)


def tuning_job_exists(sagemaker: Any, name: str) -> bool:
    """Whether the tuning job ``name`` exists (a redelivered event started it)."""
    return _exists(
        sagemaker.describe_hyper_parameter_tuning_job,
        "DescribeHyperParameterTuningJob",
        HyperParameterTuningJobName=name,
    )


def own_jobs(sagemaker: Any, settings: LaunchSettings, **filters: Any) -> list[str]:
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


def running_jobs(sagemaker: Any, settings: LaunchSettings) -> list[str]:
    """Training and tuning jobs of this app still in progress (a tuning job's trials count through it)."""
    return own_jobs(sagemaker, settings, StatusEquals="InProgress")


def existing_channels(s3: Any, bucket: str, dataset_prefix: str) -> list[str]:
    """The channels the dataset has data for; a LaunchError without a training channel."""
    found = []
    for channel in CHANNELS:
        prefix = f"{dataset_prefix}{channel}/"
        try:
            page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as err:
            code, message = error_of(err)
            raise LaunchError(f"cannot list s3://{bucket}/{prefix}: {code}: {message}") from err
        if page.get("KeyCount", 0):
            found.append(channel)
    if contract.TRAIN_CHANNEL not in found:
        raise LaunchError(
            f"no training data under s3://{bucket}/{dataset_prefix}{contract.TRAIN_CHANNEL}/; stage a dataset first "
            "(the dataset-staging CodeBuild project, or python -m staging)"
        )
    return found

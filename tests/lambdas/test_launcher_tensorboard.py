"""The launcher's TensorBoardOutputConfig: where a job's TensorBoard event files go, by the documented rules.

TensorBoardOutputConfig (Amazon SageMaker API Reference): "S3OutputPath: Path to Amazon S3 storage location
for TensorBoard output. Pattern: (https|s3)://([^/]+)/?(.*). Maximum length of 1024. Required: Yes";
"LocalPath: Path to local storage location for tensorBoard output. Defaults to /opt/ml/output/tensorboard.
Required: No". The service refuses a LocalPath spelled under /opt/ml, the default's own spelling included:
"ValidationException: "LocalPath" of "TensorBoardOutputConfig" cannot start with the following reserved path:
[/opt/ml, /tmp, /usr/local/nvidia]" (aws/amazon-sagemaker-examples#3620), so the launcher leaves LocalPath out
and gets the default, where train.py writes. Under S3OutputPath SageMaker writes each job's files to
``<S3OutputPath>/<job>/tensorboard-output`` (the SageMaker Python SDK's
``Estimator.latest_job_tensorboard_artifacts_path``), so the path names no job itself.
HyperParameterTrainingJobDefinition (the same reference) has no TensorBoardOutputConfig: tuning trials carry
none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from lambdas.launcher import logic
from lambdas.launcher.logic import build_training_job_request, build_tuning_job_request, job_name, parse_event
from lambdas.launcher.orchestration import launch
from lambdas.launcher.settings import LaunchSettings
from tests.lambdas.test_launcher import BUCKET, ENV, PREFIX, SCHEDULED, TUNING_ENV, aws, stage, valid
from tools import local_job

__all__ = ["aws"]  # the emulated account, a fixture of test_launcher.py

DOCUMENTED_LOCAL_PATH = "/opt/ml/output/tensorboard"  # TensorBoardOutputConfig.LocalPath's default
RESERVED = ("/opt/ml", "/tmp", "/usr/local/nvidia")  # where the service refuses a LocalPath to start
S3_OUTPUT_PATH_PATTERN = r"(https|s3)://([^/]+)/?(.*)"  # TensorBoardOutputConfig.S3OutputPath's pattern


def _single(env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    settings = LaunchSettings.from_environment(env)
    request = parse_event(SCHEDULED, "r-1")
    name = job_name(PREFIX, request)
    return name, build_training_job_request(settings, name, request, ["train"])


@pytest.mark.parametrize("env", [ENV, TUNING_ENV], ids=["plain", "with-rules"])
def test_every_training_job_sends_its_tensorboard_output_botocore_accepts(
    env: dict[str, str], service_model: Callable[[str], Any]
) -> None:
    """TensorBoardOutputConfig (Amazon SageMaker API Reference): S3OutputPath is required, an s3:// URL of at
    most 1024 characters; LocalPath is optional and defaults to /opt/ml/output/tensorboard, which train.py
    writes to; the service refuses one that starts with /opt/ml, /tmp or /usr/local/nvidia."""
    # Given a scheduled trigger, with or without Debugger rules and profiling
    # When the request is built
    _, body = _single(env)
    # Then it names the data bucket's tensorboard/ prefix, and leaves the folder to its documented default
    assert body["TensorBoardOutputConfig"] == {"S3OutputPath": f"s3://{BUCKET}/tensorboard/"}
    assert not body["TensorBoardOutputConfig"].get("LocalPath", "/").startswith(RESERVED)
    # And botocore and the service's pattern and length rules accept it
    valid("CreateTrainingJob", body, service_model)
    path = body["TensorBoardOutputConfig"]["S3OutputPath"]
    assert re.fullmatch(S3_OUTPUT_PATH_PATTERN, path) and len(path) <= 1024


def test_a_jobs_event_files_land_once_under_its_own_name() -> None:
    """SageMaker adds ``<job>/tensorboard-output`` under S3OutputPath (the SageMaker Python SDK's
    Estimator.latest_job_tensorboard_artifacts_path): a path that named the job would nest it twice."""
    # Given a job's request
    name, body = _single(ENV)
    # When SageMaker's layout is applied to its S3OutputPath
    path = body["TensorBoardOutputConfig"]["S3OutputPath"]
    landed = f"{path.rstrip('/')}/{name}/tensorboard-output/"
    # Then the job's name occurs once in where its files land, which the launcher names for users
    assert name not in path
    assert landed.count(name) == 1
    assert (
        logic.tensorboard_uri(BUCKET, name)
        == landed
        == f"s3://{BUCKET}/tensorboard/{name}/tensorboard-output/"
    )


def test_tuning_trials_carry_no_tensorboard_output(service_model: Callable[[str], Any]) -> None:
    """HyperParameterTrainingJobDefinition (Amazon SageMaker API Reference) has no TensorBoardOutputConfig."""
    # Given a launcher with tuning
    settings = LaunchSettings.from_environment(TUNING_ENV)
    request = parse_event(SCHEDULED, "r-1")
    # When a tuning job is built
    body = build_tuning_job_request(settings, "t", request, ["train"])
    # Then its training definition has no TensorBoard output, as the API has no place for one
    definition = service_model("sagemaker").shape_for("HyperParameterTrainingJobDefinition")
    assert "TensorBoardOutputConfig" not in definition.members
    assert "TensorBoardOutputConfig" not in body["TrainingJobDefinition"]
    valid("CreateHyperParameterTuningJob", body, service_model)


def test_the_started_job_describes_the_tensorboard_output_local_job_uploads_to(aws: Any) -> None:
    # Given staged data, and a job the schedule started in the emulated account
    sagemaker, s3 = aws
    stage(s3, "train")
    settings = LaunchSettings.from_environment(ENV)
    started = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # When the job is described, as `python -m tools.local_job --describe` reads it back
    described = sagemaker.describe_training_job(TrainingJobName=started["job"])
    definition = local_job.JobDefinition.from_api(described)
    # Then the TensorBoard output survives the round trip, and the local run uploads where SageMaker would
    assert definition.tensorboard == local_job.TensorBoardOutput(
        f"s3://{BUCKET}/tensorboard/", DOCUMENTED_LOCAL_PATH
    )
    assert local_job.TENSORBOARD_OUTPUT == logic.TENSORBOARD_OUTPUT

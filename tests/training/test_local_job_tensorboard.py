"""tools.local_job and TensorBoard: the folder laid out, the job told where, files uploaded like SageMaker.

SageMaker uploads a job's ``TensorBoardOutputConfig.LocalPath`` (default /opt/ml/output/tensorboard, Amazon
SageMaker API Reference) under ``<S3OutputPath>/<job>/tensorboard-output/`` (the SageMaker Python SDK's
``Estimator.latest_job_tensorboard_artifacts_path``) while the job runs. These tests run the runner with a
stand-in for the training toolkit (a Python that writes what a job writes): no .venv-train, no training.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.launcher import logic
from tools import local_job

REGION = "us-east-1"
BUCKET = "acoustic-data"
JOB = "acoustic-shield-dev-train-manual-0123abcd"
REQUEST: dict[str, Any] = {
    "TrainingJobName": JOB,
    "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
    "HyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://b/s.tar.gz"'},
    "InputDataConfig": [],
    "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
    "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
    "TensorBoardOutputConfig": logic.tensorboard_output_config(BUCKET),
}
# A stand-in for the toolkit and train.py: writes event files where it is told, a model, and fails on request.
TOOLKIT = """
import os, pathlib, sys
base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
events = pathlib.Path(os.environ["TENSORBOARD_LOGGING_DIR"])
(events / "run").mkdir(parents=True, exist_ok=True)
(events / "run" / "events.out.tfevents.1.algo-1").write_bytes(b"scalars")
(base / "model" / "config.json").write_text("{}")
(base / "output" / "data" / "metrics.json").write_text("{}")
if os.environ.get("FAIL_THE_JOB"):
    (base / "output" / "failure").write_text("stopped on purpose")
    sys.exit(1)
"""


@pytest.fixture
def toolkit_env(tmp_path: Path) -> Path:
    """An environment folder whose ``bin/python`` runs the stand-in, whatever it is asked to run."""
    script = tmp_path / "toolkit.py"
    script.write_text(TOOLKIT)
    python = tmp_path / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return tmp_path / "env"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def _keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_the_definition_keeps_the_jobs_tensorboard_output() -> None:
    # Given the launcher's request, one without TensorBoardOutputConfig, and one without LocalPath
    bare = {k: v for k, v in REQUEST.items() if k != "TensorBoardOutputConfig"}
    default = {**REQUEST, "TensorBoardOutputConfig": {"S3OutputPath": f"s3://{BUCKET}/tb/"}}
    # When each is read / Then LocalPath is the request's, else the documented default
    assert local_job.JobDefinition.from_api(REQUEST).tensorboard == local_job.TensorBoardOutput(
        f"s3://{BUCKET}/tensorboard/", "/opt/ml/output/tensorboard"
    )
    assert local_job.JobDefinition.from_api(bare).tensorboard is None
    tensorboard = local_job.JobDefinition.from_api(default).tensorboard
    assert tensorboard is not None and tensorboard.local_path == "/opt/ml/output/tensorboard"


@pytest.mark.parametrize("local_path", ["relative/tb", "/opt/ml/../etc"])
def test_a_local_path_that_is_no_absolute_container_path_cannot_be_laid_out(local_path: str) -> None:
    job = {
        **REQUEST,
        "TensorBoardOutputConfig": {"S3OutputPath": f"s3://{BUCKET}/tb/", "LocalPath": local_path},
    }
    with pytest.raises(local_job.JobDefinitionError, match="is not an absolute path of the container"):
        local_job.JobDefinition.from_api(job)


def test_a_jobs_own_local_path_is_laid_out_and_uploaded_from(
    tmp_path: Path, toolkit_env: Path, s3: Any
) -> None:
    # Given a job (not the launcher's) with its own LocalPath, outside /opt/ml as the service requires
    config = {"S3OutputPath": f"s3://{BUCKET}/tb/", "LocalPath": "/logs/tensorboard"}
    definition = local_job.JobDefinition.from_api({**REQUEST, "TensorBoardOutputConfig": config})
    # When the runner runs it twice
    for _ in range(2):
        result = local_job.run_job(definition, work_dir=tmp_path / "work", env_dir=toolkit_env, s3=s3)
    # Then the folder is laid out under the job's folder as under the container's root, and uploaded from
    assert result.tensorboard_dir == tmp_path / "work" / JOB / "logs" / "tensorboard"
    assert [key for key in _keys(s3) if key.startswith("tb/")] == [
        f"tb/{JOB}/tensorboard-output/run/events.out.tfevents.1.algo-1"
    ]


def test_the_job_is_told_the_folder_and_its_files_are_uploaded_where_sagemaker_puts_them(
    tmp_path: Path, toolkit_env: Path, s3: Any
) -> None:
    # Given the launcher's request (TensorBoardOutputConfig under tensorboard/)
    definition = local_job.JobDefinition.from_api(REQUEST)
    # When the runner runs it, results to S3
    result = local_job.run_job(definition, work_dir=tmp_path / "work", env_dir=toolkit_env, s3=s3)
    # Then the event files stay in the laid-out LocalPath, where tensorboard --logdir reads them
    folder = tmp_path / "work" / JOB / "opt" / "ml" / "output" / "tensorboard"
    assert result.tensorboard_dir == folder
    assert (folder / "run" / "events.out.tfevents.1.algo-1").read_bytes() == b"scalars"
    # And they are in S3 once, under the job's tensorboard-output/, as the launcher tells users
    uploaded = f"tensorboard/{JOB}/tensorboard-output/run/events.out.tfevents.1.algo-1"
    assert uploaded in _keys(s3)
    assert result.tensorboard_uri == logic.tensorboard_uri(BUCKET, JOB)
    assert s3.get_object(Bucket=BUCKET, Key=uploaded)["Body"].read() == b"scalars"


def test_a_failed_jobs_event_files_are_uploaded_too(
    tmp_path: Path, toolkit_env: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job that fails after writing event files (SageMaker uploads them while it runs)
    monkeypatch.setenv("FAIL_THE_JOB", "1")
    definition = local_job.JobDefinition.from_api(REQUEST)
    # When the runner runs it
    with pytest.raises(local_job.JobFailed, match="stopped on purpose"):
        local_job.run_job(definition, work_dir=tmp_path / "work", env_dir=toolkit_env, s3=s3)
    # Then its curves are in S3 all the same, and no model is
    keys = _keys(s3)
    assert f"tensorboard/{JOB}/tensorboard-output/run/events.out.tfevents.1.algo-1" in keys
    assert not any(key.startswith("models/") for key in keys)


def test_with_an_output_dir_the_files_go_beside_the_archives(tmp_path: Path, toolkit_env: Path) -> None:
    # Given --output-dir instead of S3
    definition = local_job.JobDefinition.from_api(REQUEST)
    # When the runner runs the job
    result = local_job.run_job(
        definition, work_dir=tmp_path / "work", env_dir=toolkit_env, output_dir=tmp_path / "out"
    )
    # Then the event files are copied as S3 would hold them, next to <job>/output/
    copied = tmp_path / "out" / JOB / "tensorboard-output" / "run" / "events.out.tfevents.1.algo-1"
    assert copied.read_bytes() == b"scalars"
    assert result.tensorboard_uri == str(tmp_path / "out" / JOB / "tensorboard-output")
    assert (tmp_path / "out" / JOB / "output" / "model.tar.gz").is_file()


def test_a_job_without_tensorboard_output_still_writes_locally_and_uploads_nothing(
    tmp_path: Path, toolkit_env: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job defined without TensorBoardOutputConfig, and a TENSORBOARD_LOGGING_DIR of this machine's
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "not-the-jobs"))
    bare = {k: v for k, v in REQUEST.items() if k != "TensorBoardOutputConfig"}
    definition = local_job.JobDefinition.from_api(bare)
    # When the runner runs it
    result = local_job.run_job(definition, work_dir=tmp_path / "work", env_dir=toolkit_env, s3=s3)
    # Then the job wrote into its own laid-out default folder (not this machine's), and nothing went to S3
    assert result.tensorboard_uri is None
    assert result.tensorboard_dir is not None and any(result.tensorboard_dir.rglob("events.out.tfevents.*"))
    assert not (tmp_path / "not-the-jobs").exists()
    assert not any(key.startswith("tensorboard/") for key in _keys(s3))

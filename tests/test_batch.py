"""The batch CLI against moto: the CreateTransformJob request (validated by botocore), waiting, JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from moto import mock_aws

from tools import batch

BUCKET = "acoustic-data"
MODEL = "ModelRevisionA1B2C3D4-kq3R"
NOW = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, list[dict[str, Any]]]]:
    """moto's SageMaker and S3 with the deployed model; ``sent`` records each CreateTransformJob request."""
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sagemaker.create_model(
            ModelName=MODEL,
            ExecutionRoleArn="arn:aws:iam::123456789012:role/model",
            PrimaryContainer={
                "Image": "inference-image",
                "ModelDataUrl": f"s3://{BUCKET}/models/j/model.tar.gz",
            },
        )
        sent: list[dict[str, Any]] = []
        sagemaker.meta.events.register(
            "provide-client-params.sagemaker.CreateTransformJob", lambda params, **_: sent.append(params)
        )
        yield sagemaker, s3, sent


def run(argv: list[str], aws: tuple[Any, Any, list[dict[str, Any]]], **kwargs: Any) -> int:
    sagemaker, s3, _ = aws
    return batch.main(argv, sagemaker=sagemaker, s3=s3, now=lambda: NOW, **kwargs)


def test_start_runs_the_deployed_model_over_batch_input_into_batch_output(
    aws: tuple[Any, Any, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # When a batch job is started over a prefix (botocore validates the request against the API model)
    code = run(
        ["start", "--model", MODEL, "--bucket", BUCKET, "--prefix", "street/2026-05", "--kms-key", "k"], aws
    )

    # Then one request per file, sniffed by the handler, one JSON line per answer, under the two prefixes
    sagemaker, _, sent = aws
    assert code == 0
    (request,) = sent
    assert request == {
        "TransformJobName": "batch-street-2026-05-20260504-030201",
        "ModelName": MODEL,
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": 100,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/batch-input/street/2026-05/",
                }
            },
            "ContentType": "application/octet-stream",
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/batch-output/street/2026-05/",
            "Accept": "application/json",
            "AssembleWith": "Line",
            "KmsKeyId": "k",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeKmsKeyId": "k"},
    }
    job = sagemaker.describe_transform_job(TransformJobName=request["TransformJobName"])
    assert job["ModelName"] == MODEL
    assert "batch-output/street/2026-05/" in capsys.readouterr().err


def test_results_print_one_json_line_per_input_file(
    aws: tuple[Any, Any, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a finished job's outputs (batch transform names them <input>.out)
    _, s3, _ = aws
    answers = {
        "b.wav": {"label": "siren", "confidence": 0.9},
        "a/x.flac": {"label": "dog", "confidence": 0.7},
    }
    for name, answer in answers.items():
        s3.put_object(
            Bucket=BUCKET, Key=f"batch-output/night/{name}.out", Body=json.dumps(answer).encode() + b"\n"
        )
    s3.put_object(Bucket=BUCKET, Key="batch-output/night/manifest.json", Body=b"{}")

    # When the results are read
    code = run(["results", "--bucket", BUCKET, "--prefix", "night/"], aws)

    # Then each input file gets its answer, in key order
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert lines == [
        {"file": "batch-input/night/a/x.flac", "response": answers["a/x.flac"]},
        {"file": "batch-input/night/b.wav", "response": answers["b.wav"]},
    ]


class Job:
    """A sagemaker client whose transform job goes through the given statuses."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)

    def describe_transform_job(self, TransformJobName: str) -> dict[str, Any]:
        status = self.statuses.pop(0)
        return {"TransformJobStatus": status, "FailureReason": "ClientError: could not decode audio"}


def test_wait_polls_until_the_job_finishes() -> None:
    slept: list[float] = []
    job = batch.wait(Job("InProgress", "InProgress", "Completed"), "j", sleep=slept.append)
    assert job["TransformJobStatus"] == "Completed" and len(slept) == 2


def test_a_failed_job_says_why_and_where_its_logs_are() -> None:
    with pytest.raises(batch.BatchError) as failed:
        batch.wait(Job("Failed"), "batch-night-1", sleep=lambda _: None)
    assert str(failed.value) == (
        "transform job batch-night-1 is Failed: ClientError: could not decode audio. "
        "Logs: CloudWatch log group /aws/sagemaker/TransformJobs, streams batch-night-1/..."
    )


@pytest.mark.parametrize("prefix", ["", "/", "../models/", "night/../models", "a//b"])
def test_prefixes_outside_batch_input_are_refused(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        batch.main(["results", "--bucket", BUCKET, "--prefix", prefix], sagemaker=object(), s3=object())
    assert "is not a folder name under batch-input/" in capsys.readouterr().err


def test_payloads_beyond_sagemakers_limit_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        batch.main(
            ["start", "--model", MODEL, "--bucket", BUCKET, "--prefix", "p", "--max-payload-mb", "200"]
        )
    assert "--max-payload-mb 200 is outside 1-100" in capsys.readouterr().err


def test_start_and_wait_prints_the_answers_once_the_job_completes(
    aws: tuple[Any, Any, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an answer already in place (moto completes transform jobs at once and runs no model)
    _, s3, _ = aws
    s3.put_object(Bucket=BUCKET, Key="batch-output/p/clip.wav.out", Body=b'{"label": "siren"}\n')
    # When a job is started with --wait
    code = run(
        ["start", "--model", MODEL, "--bucket", BUCKET, "--prefix", "p", "--job-name", "j-1", "--wait"], aws
    )
    # Then its answers follow
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "file": "batch-input/p/clip.wav",
        "response": {"label": "siren"},
    }


def test_default_job_names_fit_sagemakers_pattern() -> None:
    name = batch.default_job_name("a" * 80 + "/", NOW)
    assert len(name) <= 63 and name.startswith("batch-aaa") and name.endswith("-20260504-030201")


def test_aws_refusals_and_a_missing_region_are_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a SageMaker that refuses the transform job
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(sagemaker)
    stubber.add_client_error(
        "create_transform_job", service_error_code="AccessDeniedException", service_message="not allowed"
    )
    # When a job is started
    with stubber:
        code = batch.main(
            ["start", "--model", MODEL, "--bucket", BUCKET, "--prefix", "p"], sagemaker=sagemaker, s3=object()
        )
    # Then the CLI prints SageMaker's code and message on one line, no traceback
    err = capsys.readouterr().err
    assert code == 1
    assert err == "error: AccessDeniedException: not allowed\n"

    # Given no region anywhere (botocore cannot build a client)
    # When the CLI builds its own clients
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        code = batch.main(["results", "--bucket", BUCKET, "--prefix", "p"])
    # Then it says what is missing and how to give it
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: You must specify a region.") and err.endswith(
        "(pass --region or set AWS_REGION)\n"
    )


@pytest.mark.parametrize(
    ("instance_type", "volume_key"),
    [("ml.m5.xlarge", True), ("ml.c6i.2xlarge", True), ("ml.g5.xlarge", False), ("ml.g4dn.xlarge", False)],
)
def test_the_data_key_encrypts_transform_volumes_except_nvme_storage(
    instance_type: str, volume_key: bool
) -> None:
    """TransformResources (Amazon SageMaker API Reference), VolumeKmsKeyId: the key encrypts the ML storage
    volume attached to the transform instances; "certain Nitro-based instances include local storage ...
    you can't request a VolumeKmsKeyId when using an instance type with local storage"."""
    # Given a batch job started with the data key / When its request is built
    request = batch.transform_request(
        job_name="batch-x",
        model_name=MODEL,
        bucket=BUCKET,
        prefix="street/",
        instance_type=instance_type,
        instance_count=1,
        max_payload_mb=6,
        kms_key="arn:aws:kms:eu-west-1:111122223333:key/k",
    )
    # Then the answers are encrypted with it, and the volumes too where the instance has EBS storage
    assert request["TransformOutput"]["KmsKeyId"] == "arn:aws:kms:eu-west-1:111122223333:key/k"
    resources = request["TransformResources"]
    assert ("VolumeKmsKeyId" in resources) is volume_key
    if volume_key:
        assert resources["VolumeKmsKeyId"] == "arn:aws:kms:eu-west-1:111122223333:key/k"
    # And botocore's model accepts the request
    shape = (
        botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTransformJob")
    )
    assert not ParamValidator().validate(request, shape.input_shape).has_errors()

"""The training-job launcher: request shape (validated by botocore), idempotency, refusals."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from functions.launcher import handler as launcher_handler
from functions.launcher.logic import (
    METRIC_NAMES,
    EventError,
    LaunchError,
    LaunchSettings,
    SettingsError,
    build_training_job_request,
    job_name,
    launch,
    parse_event,
)

REGION = "us-east-1"
BUCKET = "acoustic-data"
PREFIX = "acoustic-shield-dev-train-"
ENV = {
    "JOB_NAME_PREFIX": PREFIX,
    "EXECUTION_ROLE_ARN": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/training",
    "TRAINING_IMAGE": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:2.9.0-"
    "transformers5.3.0-gpu-py312-cu130-ubuntu22.04",
    "SOURCE_DIR": "s3://cdk-assets/abc123.gz",
    "DATA_BUCKET": BUCKET,
    "DATASET_PREFIX": "datasets/esc50/",
    "MODELS_PREFIX": "models/",
    "CHECKPOINTS_PREFIX": "checkpoints/",
    "KMS_KEY_ARN": f"arn:aws:kms:us-east-1:{DEFAULT_ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "INSTANCE_TYPE": "ml.g5.xlarge",
    "INSTANCE_COUNT": "1",
    "VOLUME_SIZE_GB": "50",
    "USE_SPOT": "true",
    "MAX_RUNTIME_SECONDS": "21600",
    "MAX_WAIT_SECONDS": "43200",
    "AWS_REGION": REGION,
    "HYPERPARAMETERS": json.dumps({"num_train_epochs": "4", "learning_rate": "3e-05"}),
    "TAGS": json.dumps({"project": "acoustic-shield", "environment": "dev"}),
}
SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": DEFAULT_ACCOUNT_ID,
    "time": "2026-11-22T03:00:00Z",
    "region": REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/schedule"],
    "detail": {},
}


@pytest.fixture
def settings() -> LaunchSettings:
    return LaunchSettings.from_env(ENV)


@pytest.fixture
def aws(strict_requests: None) -> Any:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield boto3.client("sagemaker", region_name=REGION), s3


def stage(s3: Any, *channels: str) -> None:
    for channel in channels:
        s3.put_object(Bucket=BUCKET, Key=f"datasets/esc50/{channel}/dog/1.wav", Body=b"RIFF")


def jobs(sagemaker: Any) -> list[str]:
    return [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]


def test_scheduled_event_starts_a_job_botocore_accepts(aws: Any, settings: LaunchSettings) -> None:
    # Given a staged dataset with train and validation channels
    sagemaker, s3 = aws
    stage(s3, "train", "validation")
    # When the schedule fires (moto's client validates the request against botocore's model)
    result = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # Then one job runs, named from the event, reading both channels
    assert result["status"] == "started"
    assert result["job"].startswith(PREFIX + "20261122-030000-")
    assert jobs(sagemaker) == [result["job"]]
    job = sagemaker.describe_training_job(TrainingJobName=result["job"])
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation"]
    assert (
        job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{BUCKET}/datasets/esc50/train/"
    )


def test_duplicate_event_starts_no_second_job(aws: Any, settings: LaunchSettings) -> None:
    # Given a job already started by this scheduled event
    sagemaker, s3 = aws
    stage(s3, "train")
    first = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # When EventBridge delivers the same event again (a new Lambda request id)
    second = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-2")
    # Then nothing new starts and the answer names the existing job
    assert second == {
        "status": "duplicate",
        "job": first["job"],
        "reason": "this event already started the job",
    }
    assert len(jobs(sagemaker)) == 1


def test_job_in_progress_means_none_started(aws: Any, settings: LaunchSettings) -> None:
    # Given a job of this prefix still running
    sagemaker, s3 = aws
    stage(s3, "train")
    running = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")["job"]
    sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[running].training_job_status = "InProgress"
    # When next week's schedule fires
    later = {**SCHEDULED, "id": "another-event", "time": "2026-11-29T03:00:00Z"}
    result = launch(later, settings, sagemaker=sagemaker, s3=s3, request_id="r-2")
    # Then it starts nothing and says which job is running
    assert result["status"] == "skipped"
    assert running in result["reason"]
    assert jobs(sagemaker) == [running]


def test_jobs_of_other_prefixes_do_not_block(aws: Any, settings: LaunchSettings) -> None:
    # Given another environment's job running (its name merely contains ours)
    sagemaker, s3 = aws
    stage(s3, "train")
    other = LaunchSettings.from_env({**ENV, "JOB_NAME_PREFIX": "x-" + PREFIX})
    running = launch(SCHEDULED, other, sagemaker=sagemaker, s3=s3, request_id="r-1")["job"]
    sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs[running].training_job_status = "InProgress"
    # When our schedule fires
    result = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-2")
    # Then our job starts
    assert result["status"] == "started"


def test_missing_training_data_fails_with_what_to_do(aws: Any, settings: LaunchSettings) -> None:
    # Given an empty dataset prefix
    sagemaker, s3 = aws
    # When the schedule fires / Then the error names the location and the fix
    with pytest.raises(
        LaunchError, match=r"no training data under s3://acoustic-data/datasets/esc50/train/; stage"
    ):
        launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    assert jobs(sagemaker) == []


def test_manual_invocation_overrides_hyperparameters_and_dataset(aws: Any, settings: LaunchSettings) -> None:
    # Given a second dataset staged with a test channel
    sagemaker, s3 = aws
    for channel in ("train", "test"):
        s3.put_object(Bucket=BUCKET, Key=f"datasets/mine/{channel}/a/1.wav", Body=b"RIFF")
    event = {
        "hyperparameters": {"num_train_epochs": 10, "export_onnx": True},
        "dataset_prefix": "datasets/mine/",
    }
    # When a person invokes the launcher with overrides
    result = launch(event, settings, sagemaker=sagemaker, s3=s3, request_id="req-42")
    # Then the job uses them, on top of the configured hyperparameters
    job = sagemaker.describe_training_job(TrainingJobName=result["job"])
    hp = job["HyperParameters"]
    assert json.loads(hp["num_train_epochs"]) == "10"
    assert json.loads(hp["export_onnx"]) == "true"
    assert json.loads(hp["learning_rate"]) == "3e-05"
    assert json.loads(hp["sagemaker_program"]) == "train.py"
    assert json.loads(hp["sagemaker_submit_directory"]) == ENV["SOURCE_DIR"]
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "test"]
    assert result["job"] == f"{PREFIX}manual-" + result["job"].rsplit("-", 1)[1]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "must be a JSON object"),
        ({"hyperparameters": [1, 2]}, "'hyperparameters' must be an object"),
        ({"hyperparameters": {"Bad-Name": 1}}, "'Bad-Name' is refused: not an argument an event may set"),
        (
            {"hyperparameters": {"sagemaker_program": "x.py"}},
            "the framework's own values are set by the launcher",
        ),
        ({"hyperparameters": {"learning_rate": {"nested": 1}}}, "'learning_rate' must be a number"),
        ({"dataset_prefix": "../etc/"}, "must be a prefix under 'datasets/'"),
        ({"dataset_prefix": "datasets/../raw/"}, "must be a prefix under 'datasets/'"),
        ({"dataset_prefix": "datasets/esc50/../../models/"}, "must be a prefix under 'datasets/'"),
        ({"dataset_prefix": "datasets/./esc50/"}, "must be a prefix under 'datasets/'"),
        ({**SCHEDULED, "id": None}, "must carry 'id' and 'time'"),
        ({**SCHEDULED, "time": "yesterday"}, "not an ISO 8601 timestamp"),
        ({"source": "aws.s3", "detail-type": "Object Created"}, "unexpected event source"),
    ],
)
def test_malformed_event_is_a_clear_error(event: Any, message: str) -> None:
    # When the event cannot be used / Then the error says what is wrong
    with pytest.raises(EventError, match=message):
        parse_event(event, request_id="r-1")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("push_to_hub", True, "never publishes to the Hugging Face Hub"),
        ("hub_model_id", "someone/else", "never publishes to the Hugging Face Hub"),
        ("hub_token", "hf_secret", "never publishes to the Hugging Face Hub"),
        ("model_dir", "/tmp/elsewhere", "paths are fixed by the deployment"),
        ("output_dir", "/opt/ml/model", "paths are fixed by the deployment"),
        ("checkpoint_dir", "/mnt", "paths are fixed by the deployment"),
        ("resume_from_checkpoint", "/opt/ml/input", "paths are fixed by the deployment"),
        ("num_train_epoch", 50, "did you mean 'num_train_epochs'?"),
        ("learnig_rate", 0.1, "did you mean 'learning_rate'?"),
        ("report_to", "wandb", "not an argument an event may set"),
        ("num_train_epochs", 1e9, "out of range"),
        ("num_train_epochs", "nan", "must be finite"),
        ("learning_rate", -1, "out of range"),
        ("per_device_train_batch_size", 0, "out of range"),
        ("per_device_train_batch_size", 8.5, "must be an integer"),
        ("per_device_train_batch_size", True, "must be a number"),
        ("export_onnx", "maybe", "must be true or false"),
        ("model_name_or_path", "/etc/passwd", "must be a Hugging Face id"),
        ("model_name_or_path", "configs/../../secrets", "must be a Hugging Face id"),
    ],
)
def test_unsafe_unknown_or_out_of_range_hyperparameters_start_no_job(
    aws: Any, settings: LaunchSettings, name: str, value: Any, message: str
) -> None:
    # Given staged data and a manual event that asks for something an event may not set
    sagemaker, s3 = aws
    stage(s3, "train")
    event = {"hyperparameters": {"num_train_epochs": 2, name: value}}
    # When it is launched / Then it fails with the reason, and no job exists
    with pytest.raises(EventError, match=re.escape(message)):
        launch(event, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_allowed_hyperparameters_reach_the_job_as_train_py_reads_them(settings: LaunchSettings) -> None:
    # Given every kind of value an event may send
    event = {
        "hyperparameters": {
            "model_name_or_path": "configs/tiny-wav2vec2",
            "freeze_feature_encoder": False,
            "learning_rate": 1e-4,
            "per_device_train_batch_size": "16",
            "max_steps": -1,
        }
    }
    # When it is parsed
    request = parse_event(event, "r-1")
    # Then each value is the string train.py's parser takes
    assert request.hyperparameters == {
        "model_name_or_path": "configs/tiny-wav2vec2",
        "freeze_feature_encoder": "false",
        "learning_rate": "0.0001",
        "per_device_train_batch_size": "16",
        "max_steps": "-1",
    }


def test_request_carries_spot_checkpoints_metrics_kms_and_tags(settings: LaunchSettings) -> None:
    # Given a scheduled trigger
    request = parse_event(SCHEDULED, "r-1")
    name = job_name(PREFIX, request)
    # When the request is built
    body = build_training_job_request(settings, name, request, ["train"])
    # Then spot training waits at most the configured time and checkpoints per job
    assert body["EnableManagedSpotTraining"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600, "MaxWaitTimeInSeconds": 43200}
    assert body["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/checkpoints/{name}/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    # And every metric train.py prints has a regex that matches its line
    definitions = {d["Name"]: d["Regex"] for d in body["AlgorithmSpecification"]["MetricDefinitions"]}
    assert set(definitions) == set(METRIC_NAMES)
    assert re.search(definitions["eval_f1"], "eval_clip_accuracy=0.5000\neval_f1=0.9312").group(1) == "0.9312"
    # And outputs and volumes are encrypted with the data key; tags say why the job ran
    assert body["OutputDataConfig"]["KmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert body["ResourceConfig"]["VolumeKmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert {"Key": "trigger", "Value": "schedule"} in body["Tags"]
    assert "sagemaker_torch_distributed_enabled" not in body["HyperParameters"]


def test_multi_instance_jobs_run_torch_distributed(settings: LaunchSettings) -> None:
    # Given two instances per job
    multi = LaunchSettings.from_env({**ENV, "INSTANCE_COUNT": "2", "USE_SPOT": "false"})
    request = parse_event(SCHEDULED, "r-1")
    # When the request is built
    body = build_training_job_request(multi, job_name(PREFIX, request), request, ["train"])
    # Then the toolkit launches torch distributed, traffic is encrypted and no spot wait is set
    assert body["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert body["EnableInterContainerTrafficEncryption"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 21600}


def test_framework_hyperparameters_decode_to_what_the_training_toolkit_expects(
    settings: LaunchSettings,
) -> None:
    # Given the request a scheduled trigger builds
    request = parse_event(SCHEDULED, "r-1")
    body = build_training_job_request(settings, job_name(PREFIX, request), request, ["train"])
    # When the training toolkit JSON-decodes each value (sagemaker_training.environment)
    decoded = {name: json.loads(value) for name, value in body["HyperParameters"].items()}
    # Then the log level is the number logging accepts (the string "20" fails every job before
    # train.py runs), and the program and source dir are strings
    assert decoded["sagemaker_container_log_level"] == logging.INFO
    logging.getLogger("toolkit-check").setLevel(decoded["sagemaker_container_log_level"])
    assert decoded["sagemaker_program"] == "train.py"
    assert decoded["sagemaker_submit_directory"] == ENV["SOURCE_DIR"]
    assert decoded["num_train_epochs"] == "4"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DATA_BUCKET": ""}, "DATA_BUCKET is missing"),
        ({"INSTANCE_COUNT": "two"}, "INSTANCE_COUNT='two' is not an integer"),
        ({"USE_SPOT": "yes"}, "USE_SPOT='yes' must be 'true' or 'false'"),
        ({"HYPERPARAMETERS": "{"}, "HYPERPARAMETERS is not JSON"),
        ({"SOURCE_DIR": "/tmp/code"}, "must be an s3:// URL of a .tar.gz"),
    ],
)
def test_misconfigured_environment_names_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        LaunchSettings.from_env({**ENV, **change})


def test_sagemaker_refusal_fails_the_invocation_clearly(aws: Any, settings: LaunchSettings) -> None:
    # Given SageMaker refusing the job (a quota error), behind a stubbed client that validates requests
    _, s3 = aws
    stage(s3, "train")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.")
        stub.add_response("list_training_jobs", {"TrainingJobSummaries": []})
        stub.add_client_error(
            "create_training_job",
            "ResourceLimitExceeded",
            "The account-level service limit for ml.g5.xlarge is 0",
        )
        # When the schedule fires / Then the error names the job and SageMaker's reason
        with pytest.raises(
            LaunchError,
            match=r"CreateTrainingJob acoustic-shield-dev-train-\S+ failed: "
            r"ResourceLimitExceeded: The account-level service limit",
        ):
            launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
        stub.assert_no_pending_responses()


def test_handler_wires_environment_and_clients(
    aws: Any, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # Given the function's environment as the stack sets it
    _, s3 = aws
    stage(s3, "train")
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    launcher_handler._settings.cache_clear()
    launcher_handler._clients.cache_clear()
    # When Lambda invokes the handler manually
    result = launcher_handler.handler({}, lambda_context)
    # Then the job name comes from the request id
    assert result["status"] == "started"
    assert result["job"].startswith(f"{PREFIX}manual-")
    launcher_handler._settings.cache_clear()
    launcher_handler._clients.cache_clear()

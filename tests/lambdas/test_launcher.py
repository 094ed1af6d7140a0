"""The launcher: training and tuning job requests (validated by botocore), rules, idempotency, refusals."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from common import contract, lambda_contract
from lambdas import lease
from lambdas.launcher import handler as launcher_handler
from lambdas.launcher.logic import (
    EventError,
    build_training_job_request,
    build_tuning_job_request,
    job_name,
    parse_event,
    tuning_job_name,
)
from lambdas.launcher.orchestration import LaunchError, launch
from lambdas.launcher.settings import LaunchSettings, RuleSettings, SettingsError
from tests.lambdas.conftest import cold_start, request_violations

ROOT = Path(__file__).resolve().parents[2]
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
    "LAUNCH_LOCK_KEY": "locks/launcher.json",
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
    return LaunchSettings.from_environment(ENV)


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
    other = LaunchSettings.from_environment({**ENV, "JOB_NAME_PREFIX": "x-" + PREFIX})
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
    # And the job names the dataset it reads, for the model card (its license when the source is known)
    assert json.loads(hp[contract.DATASET_NAME_ARGUMENT]) == "mine"


def test_a_scheduled_job_names_its_configured_dataset(aws: Any, settings: LaunchSettings) -> None:
    # Given the configured dataset (datasets/esc50/) staged
    sagemaker, s3 = aws
    stage(s3, "train")
    # When the schedule fires
    result = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # Then train.py is told the data's name, which the model card maps to ESC-50's license
    job = sagemaker.describe_training_job(TrainingJobName=result["job"])
    assert json.loads(job["HyperParameters"][contract.DATASET_NAME_ARGUMENT]) == "esc50"
    from training import model_card

    assert model_card.KNOWN_DATASETS["esc50"].license == "cc-by-nc-3.0"


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
        ({"source": "aws.s3", "detail-type": "Object Created"}, "must carry detail.bucket.name"),
        ({"source": "aws.codecommit", "detail-type": "Push"}, "unexpected event source"),
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
    assert set(definitions) == set(contract.JOB_METRIC_NAMES)
    assert re.search(definitions["eval_f1"], "eval_clip_accuracy=0.5000\neval_f1=0.9312").group(1) == "0.9312"
    # And outputs are encrypted with the data key; tags say why the job ran
    assert body["OutputDataConfig"]["KmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert {"Key": "trigger", "Value": "schedule"} in body["Tags"]
    assert "sagemaker_torch_distributed_enabled" not in body["HyperParameters"]


@pytest.mark.parametrize(
    ("instance_type", "keyed"),
    [
        ("ml.g5.xlarge", False),
        ("ml.g5.2xlarge", False),
        ("ml.g4dn.xlarge", False),
        ("ml.g6.xlarge", False),
        ("ml.g6e.xlarge", False),
        ("ml.p4d.24xlarge", False),
        ("ml.p5.48xlarge", False),
        ("ml.p4de.24xlarge", False),
        ("ml.m5.xlarge", True),
        ("ml.p3.2xlarge", True),
    ],
)
@pytest.mark.parametrize("tune", [False, True])
def test_no_volume_key_on_nvme_instances(instance_type: str, keyed: bool, tune: bool) -> None:
    """ResourceConfig (Amazon SageMaker API Reference), VolumeKmsKeyId: "Certain Nitro-based instances
    include local storage ... you can't request a VolumeKmsKeyId when using an instance type with local
    storage" (ml.g4dn, ml.g5, ml.p4d, ...); the SageMaker Python SDK's instance_supports_kms agrees."""
    # Given the launcher configured for the instance type, tuning or not
    settings = LaunchSettings.from_environment({**TUNING_ENV, "INSTANCE_TYPE": instance_type})
    request = parse_event(SCHEDULED, "r-1")
    # When the request is built
    if tune:
        body = build_tuning_job_request(settings, "t", request, ["train"])["TrainingJobDefinition"]
    else:
        body = build_training_job_request(settings, job_name(PREFIX, request), request, ["train"])
    # Then the volume key is sent exactly where the instance has EBS storage; outputs are always encrypted
    assert ("VolumeKmsKeyId" in body["ResourceConfig"]) is keyed
    if keyed:
        assert body["ResourceConfig"]["VolumeKmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert body["OutputDataConfig"]["KmsKeyId"] == ENV["KMS_KEY_ARN"]


def test_multi_instance_jobs_run_torch_distributed(settings: LaunchSettings) -> None:
    # Given two instances per job
    multi = LaunchSettings.from_environment({**ENV, "INSTANCE_COUNT": "2", "USE_SPOT": "false"})
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
        ({"INSTANCE_COUNT": "two"}, "INSTANCE_COUNT='two' is invalid: expected a whole number >= 1"),
        ({"USE_SPOT": "yes"}, "USE_SPOT='yes' is invalid: expected 'true' or 'false'"),
        ({"HYPERPARAMETERS": "{"}, "HYPERPARAMETERS='{' is invalid: expected a JSON object of strings"),
        (
            {"SOURCE_DIR": "/tmp/code"},
            "SOURCE_DIR='/tmp/code' is invalid: expected an s3:// URL of a .tar.gz",
        ),
    ],
)
def test_misconfigured_environment_names_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        LaunchSettings.from_environment({**ENV, **change})


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


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Mapping[str, str]], None]]:
    """Gives the handler an environment, as the stack does; it builds its settings and clients anew."""

    def deploy(environ: Mapping[str, str]) -> None:
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        launcher_handler.dependencies.cache_clear()

    yield deploy
    launcher_handler.dependencies.cache_clear()


def test_handler_wires_environment_and_clients(aws: Any, deploy: Any, lambda_context: Any) -> None:
    # Given the function's environment as the stack sets it
    _, s3 = aws
    stage(s3, "train")
    deploy(ENV)
    # When Lambda invokes the handler manually
    result = launcher_handler.handler({}, lambda_context)
    # Then the job name comes from the request id
    assert result["status"] == "started"
    assert result["job"].startswith(f"{PREFIX}manual-")


def test_every_bad_variable_is_named_in_one_error() -> None:
    # Given an environment with a variable missing and others wrong, of every kind the launcher reads
    environ = {
        **TUNING_ENV,
        "VOLUME_SIZE_GB": "0",
        "USE_SPOT": "maybe",
        "TAGS": json.dumps({"project": 1}),
        "SOURCE_DIR": "s3://cdk-assets/abc123.zip",
        "RETRAIN_DEBOUNCE_MINUTES": "-5",
        "TUNING": json.dumps({**TUNING, "strategy": "Grid", "max_jobs": "8"}),
        "PROFILING_INTERVAL_MS": "250",
        "PROFILER_PREFIX": " ",
    }
    del environ["DATA_BUCKET"]

    # When it is validated
    with pytest.raises(SettingsError) as raised:
        LaunchSettings.from_environment(environ)

    # Then one error names each of them, with what to set
    message = str(raised.value)
    assert message.startswith("invalid launcher environment: ")
    for problem in (
        "DATA_BUCKET is missing: set it to the data bucket's name",
        "VOLUME_SIZE_GB='0' is invalid: expected a whole number >= 1",
        "USE_SPOT='maybe' is invalid: expected 'true' or 'false'",
        "TAGS='{\"project\": 1}' is invalid: expected a JSON object of strings",
        "SOURCE_DIR='s3://cdk-assets/abc123.zip' is invalid: expected an s3:// URL of a .tar.gz",
        "RETRAIN_DEBOUNCE_MINUTES='-5' is invalid: expected a whole number >= 0",
        "TUNING.strategy='Grid' is invalid: expected one of Bayesian, Random, Hyperband",
        "TUNING.max_jobs='8' is invalid: expected an integer",
        "PROFILING_INTERVAL_MS='250' is invalid: expected one of 100, 200, 500, 1000, 5000, 60000",
        "PROFILER_PREFIX is missing: set it to the key prefix the profiler writes under",
    ):
        assert problem in message
    assert message.count("; ") == 9  # ten problems, none reported twice


def test_optional_variables_take_their_defaults() -> None:
    # Given only the variables every launcher needs (no tuning, rules, profiling or debounce)
    # When they are validated
    settings = LaunchSettings.from_environment(ENV)

    # Then it starts single jobs without rules or profiling, and never debounces
    assert settings.tuning is None
    assert settings.rules == RuleSettings()
    assert settings.rules.profiling_interval_ms == 500 and settings.rules.profiler_enabled is False
    assert settings.debounce_minutes == 0
    # And booleans are read in any case, as before
    assert LaunchSettings.from_environment({**ENV, "USE_SPOT": "FALSE"}).use_spot is False


def test_handler_logs_one_structured_line(
    aws: Any, deploy: Any, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the function's environment and a staged dataset
    _, s3 = aws
    stage(s3, "train")
    deploy(ENV)

    # When Lambda invokes the handler manually (no logging configured: the handler's own setup decides)
    result = launcher_handler.handler({}, lambda_context)

    # Then one structured line records the outcome, with the Lambda context and the request id as the
    # correlation id (a manual invocation has no event id)
    (record,) = [r for r in caplog.records if r.name == launcher_handler.logger.name]
    assert record.levelno == logging.INFO and record.getMessage() == "launch"
    logged = json.loads(launcher_handler.logger.registered_formatter.format(record))
    assert {key: logged[key] for key in result} == result
    assert logged["service"] == "launcher"
    assert logged["correlation_id"] == logged["function_request_id"] == lambda_context.aws_request_id
    # And the launcher's own notes are kept at INFO beside it, through the same logger
    assert any(r.name == "launcher.orchestration" and "started" in r.getMessage() for r in caplog.records)


def test_a_scheduled_launch_is_correlated_by_its_event_id_and_counted(
    aws: Any, deploy: Any, lambda_context: Any, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    # Given the function's environment and a staged dataset
    _, s3 = aws
    stage(s3, "train")
    deploy(ENV)

    # When the schedule's event reaches the handler
    result = launcher_handler.handler(SCHEDULED, lambda_context)

    # Then its log line carries the EventBridge event's id as the correlation id
    (record,) = [r for r in caplog.records if r.name == launcher_handler.logger.name]
    logged = json.loads(launcher_handler.logger.registered_formatter.format(record))
    assert result["status"] == "started"
    assert logged["correlation_id"] == SCHEDULED["id"]
    # And one embedded metric counts the started launch, in the app's namespace, per service
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (launched,) = [m for m in emf if "LaunchStarted" in m]
    (directive,) = launched["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "AcousticShield" and launched["service"] == "launcher"
    assert launched["LaunchStarted"] == [1.0]


def test_a_duplicate_event_is_counted_as_one(aws: Any, deploy: Any, lambda_context: Any, capsys: Any) -> None:
    # Given a scheduled event that already started its job
    _, s3 = aws
    stage(s3, "train")
    deploy(ENV)
    launcher_handler.handler(SCHEDULED, lambda_context)
    capsys.readouterr()

    # When EventBridge delivers it again
    result = launcher_handler.handler(SCHEDULED, lambda_context)

    # Then it is counted as a duplicate, not as a launch
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert result["status"] == "duplicate"
    assert [m["LaunchDuplicate"] for m in emf if "LaunchDuplicate" in m] == [[1.0]]
    assert not any("LaunchStarted" in m for m in emf)


def test_cold_start_in_lambda_names_every_bad_variable() -> None:
    # Given a container started with two variables wrong
    environ = {**ENV, "INSTANCE_COUNT": "two", "USE_SPOT": ""}

    # When Lambda loads the handler
    started = cold_start("launcher", environ)

    # Then loading fails before any event, naming both
    assert started.returncode != 0
    assert "SettingsError: invalid launcher environment: " in started.stderr
    assert "INSTANCE_COUNT='two' is invalid" in started.stderr
    assert "USE_SPOT is missing" in started.stderr
    # And with the environment the stack sets, it loads
    loaded = cold_start("launcher", ENV)
    assert loaded.returncode == 0, loaded.stderr


# --- hyperparameter tuning jobs ----------------------------------------------------------------------------

TUNING_PREFIX = "acoustic-shield-dev-hpo-"
TUNING = {
    "enabled": False,
    "strategy": "Bayesian",
    "objective": "eval_f1",
    "ranges": "learning_rate=1e-5..1e-3:log, per_device_train_batch_size=4|8|16",
    "max_jobs": 8,
    "max_parallel_jobs": 2,
    "early_stopping": "Auto",
}
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
# What the Training stack gives the launcher with tuning and rules (dev's profiling, plus Debugger rules).
TUNING_ENV = {
    **ENV,
    "TUNING_JOB_PREFIX": TUNING_PREFIX,
    "TUNING": json.dumps(TUNING),
    "PROFILER_ENABLED": "true",
    "PROFILER_RULES": json.dumps(["LowGPUUtilization", "ProfilerReport"]),
    "PROFILING_INTERVAL_MS": "500",
    "PROFILER_PREFIX": "profiler/",
    "DEBUGGER_RULES": json.dumps(["LossNotDecreasing", "Overfit", "Overtraining"]),
    "DEBUG_PREFIX": "debug/",
    "RULE_EVALUATOR_IMAGE": RULE_IMAGE,
}


def tuning_settings(**tuning: Any) -> LaunchSettings:
    return LaunchSettings.from_environment({**TUNING_ENV, "TUNING": json.dumps({**TUNING, **tuning})})


def tuning_jobs(sagemaker: Any) -> list[str]:
    summaries = sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    return [j["HyperParameterTuningJobName"] for j in summaries]


def valid(operation: str, request: dict[str, Any], service_model: Callable[[str], Any]) -> None:
    """botocore accepts the request, and so would the service's length, enum and pattern rules."""
    shape = service_model("sagemaker").operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request_violations(request, shape) == []


def test_tune_event_starts_one_tuning_job_botocore_accepts(aws: Any) -> None:
    # Given staged data and a launcher with tuning configured
    sagemaker, s3 = aws
    stage(s3, "train", "validation")
    # When a person invokes it with {"tune": true} (moto's client validates against botocore's model)
    result = launch({"tune": True}, tuning_settings(), sagemaker=sagemaker, s3=s3, request_id="req-7")
    # Then one tuning job runs, and no training job of its own
    assert result["status"] == "started" and result["kind"] == "tuning"
    assert (result["max_jobs"], result["max_parallel_jobs"]) == (8, 2)
    assert tuning_jobs(sagemaker) == [result["job"]]
    assert jobs(sagemaker) == []
    job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=result["job"])
    config = job["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "eval_f1"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ParameterRanges"] == {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "1e-5", "MaxValue": "1e-3", "ScalingType": "Logarithmic"}
        ],
        "CategoricalParameterRanges": [{"Name": "per_device_train_batch_size", "Values": ["4", "8", "16"]}],
    }
    # And the trials train on the staged channels with the static hyperparameters minus the tuned ones
    definition = job["TrainingJobDefinition"]
    assert [c["ChannelName"] for c in definition["InputDataConfig"]] == ["train", "validation"]
    static = definition["StaticHyperParameters"]
    assert "learning_rate" not in static and "per_device_train_batch_size" not in static
    assert json.loads(static["num_train_epochs"]) == "4"
    assert json.loads(static["sagemaker_program"]) == "train.py"


def test_duplicate_tune_event_starts_no_second_tuning_job(aws: Any) -> None:
    # Given a tuning job started by a manual invocation
    sagemaker, s3 = aws
    stage(s3, "train")
    settings = tuning_settings()
    first = launch({"tune": True}, settings, sagemaker=sagemaker, s3=s3, request_id="req-7")
    # When Lambda retries the same invocation (same request id)
    second = launch({"tune": True}, settings, sagemaker=sagemaker, s3=s3, request_id="req-7")
    # Then nothing new starts and the answer names the tuning job
    assert second == {
        "status": "duplicate",
        "job": first["job"],
        "kind": "tuning",
        "reason": "this event already started the tuning job",
    }
    assert tuning_jobs(sagemaker) == [first["job"]]


def test_tuning_job_names_are_deterministic_and_fit_32_characters() -> None:
    # Given the same trigger twice, and another
    request, again, other = (parse_event({}, rid) for rid in ("req-7", "req-7", "req-8"))
    # When tuning jobs are named
    name = tuning_job_name(TUNING_PREFIX, request)
    # Then the name is the trigger's, unique to it, and valid for SageMaker
    assert name == tuning_job_name(TUNING_PREFIX, again) != tuning_job_name(TUNING_PREFIX, other)
    assert re.fullmatch(rf"{TUNING_PREFIX}[0-9a-f]{{8}}", name)
    assert len(name) <= 32


def test_scheduled_event_tunes_when_the_configuration_says_so(aws: Any) -> None:
    # Given tuning_enabled and a staged dataset
    sagemaker, s3 = aws
    stage(s3, "train")
    # When the schedule fires
    result = launch(SCHEDULED, tuning_settings(enabled=True), sagemaker=sagemaker, s3=s3, request_id="r-1")
    # Then it starts a tuning job tagged as scheduled, and an event may still ask for one job
    assert result["kind"] == "tuning" and tuning_jobs(sagemaker) == [result["job"]]
    tags = sagemaker.list_tags(ResourceArn=result["arn"])["Tags"]
    assert {"Key": "trigger", "Value": "schedule"} in tags
    # And while it runs (moto completes tuning jobs at once), nothing else starts, not even one job
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.hyper_parameter_tuning_jobs[result["job"]].hyper_parameter_tuning_job_status = "InProgress"
    single = launch(
        {"tune": False}, tuning_settings(enabled=True), sagemaker=sagemaker, s3=s3, request_id="r-2"
    )
    assert single["status"] == "skipped" and "kind" not in single
    assert result["job"] in single["reason"]


@pytest.mark.parametrize("running_kind", ["tuning", "training"])
def test_a_running_tuning_or_training_job_blocks_both(aws: Any, running_kind: str) -> None:
    # Given a tuning job (or a training job) of this app in progress
    sagemaker, s3 = aws
    stage(s3, "train")
    settings = tuning_settings()
    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    if running_kind == "tuning":
        running = launch({"tune": True}, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")["job"]
        backend.hyper_parameter_tuning_jobs[running].hyper_parameter_tuning_job_status = "InProgress"
    else:
        running = launch({}, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")["job"]
        backend.training_jobs[running].training_job_status = "InProgress"
    # When another training run and another tuning run are asked for
    results = [
        launch(event, settings, sagemaker=sagemaker, s3=s3, request_id=rid)
        for event, rid in (({}, "r-2"), ({"tune": True}, "r-3"))
    ]
    # Then neither starts, and both say which job is running
    assert [r["status"] for r in results] == ["skipped", "skipped"]
    assert all(running in r["reason"] for r in results)
    assert len(jobs(sagemaker)) + len(tuning_jobs(sagemaker)) == 1


def test_tuning_definition_is_the_single_jobs_request(settings: LaunchSettings) -> None:
    # Given the same trigger built as a single job and as a tuning job
    tuned = tuning_settings()
    request = parse_event({"hyperparameters": {"num_train_epochs": 2}, "tune": True}, "r-1")
    single = build_training_job_request(tuned, "a-name", request, ["train", "test"])
    tuning = build_tuning_job_request(tuned, "a-name", request, ["train", "test"])
    definition = tuning["TrainingJobDefinition"]
    # Then image, channels, output and KMS, resources, spot, stopping and traffic encryption are the same
    for key in (
        "RoleArn",
        "InputDataConfig",
        "OutputDataConfig",
        "ResourceConfig",
        "StoppingCondition",
        "EnableManagedSpotTraining",
        "EnableInterContainerTrafficEncryption",
    ):
        assert definition[key] == single[key], key
    assert definition["AlgorithmSpecification"] == {
        "TrainingImage": ENV["TRAINING_IMAGE"],
        "TrainingInputMode": "File",
        "MetricDefinitions": single["AlgorithmSpecification"]["MetricDefinitions"],
    }
    assert tuning["Tags"] == single["Tags"]
    # And the static hyperparameters are the single job's minus the tuned ones (the event's epochs too)
    assert definition["StaticHyperParameters"] == {
        k: v
        for k, v in single["HyperParameters"].items()
        if k not in ("learning_rate", "per_device_train_batch_size")
    }
    assert json.loads(definition["StaticHyperParameters"]["num_train_epochs"]) == "2"
    # And no per-job field leaks in: trials share one definition (no checkpoint location, no rules)
    assert (
        not {"CheckpointConfig", "DebugHookConfig", "ProfilerConfig", "TrainingJobName"} & definition.keys()
    )


def test_tuned_values_reach_train_py_as_arguments_it_takes() -> None:
    # Given the ranges of the default configuration
    ranges = lambda_contract.parse_ranges(TUNING["ranges"])
    # Then every tuned name is an argument an event may set (tests/training/test_arguments.py parses each
    # through train.py's parser), and each value SageMaker would send decodes to a number, as the
    # training toolkit decodes it (json.loads) before building train.py's arguments
    for name in lambda_contract.tuned_names(ranges):
        assert contract.EVENT_HYPERPARAMETERS[name][0] in ("float", "int")
    (categorical,) = ranges["CategoricalParameterRanges"]
    assert [json.loads(v) for v in categorical["Values"]] == [4, 8, 16]
    (continuous,) = ranges["ContinuousParameterRanges"]
    assert json.loads(continuous["MinValue"]) == 1e-5


def test_an_event_cannot_set_a_tuned_hyperparameter(aws: Any) -> None:
    sagemaker, s3 = aws
    stage(s3, "train")
    event = {"tune": True, "hyperparameters": {"learning_rate": 1e-4}}
    with pytest.raises(EventError, match=r"learning_rate are tuned \(tuning_ranges\); .* send tune: false"):
        launch(event, tuning_settings(), sagemaker=sagemaker, s3=s3, request_id="r-1")
    assert tuning_jobs(sagemaker) == []


def test_tune_without_a_tuning_configuration_is_refused(aws: Any, settings: LaunchSettings) -> None:
    sagemaker, s3 = aws
    stage(s3, "train")
    with pytest.raises(EventError, match="no tuning configuration"):
        launch({"tune": True}, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    with pytest.raises(EventError, match="'tune' must be true or false"):
        parse_event({"tune": "yes"}, "r-1")


@pytest.mark.parametrize(
    ("tuning", "early_stopping"),
    [
        ({"strategy": "Bayesian"}, "Auto"),
        ({"strategy": "Random", "objective": "eval_loss"}, "Auto"),
        (
            {
                "strategy": "Hyperband",
                "early_stopping": "Off",
                "ranges": "learning_rate=1e-5..1e-3, seed=1..5",
            },
            "Off",
        ),
    ],
)
def test_every_strategy_makes_a_request_botocore_accepts(
    tuning: dict[str, Any], early_stopping: str, service_model: Callable[[str], Any]
) -> None:
    # Given a tuning configuration of this strategy
    settings = tuning_settings(**tuning)
    request = parse_event({"tune": True}, "r-1")
    # When the request is built
    body = build_tuning_job_request(settings, tuning_job_name(TUNING_PREFIX, request), request, ["train"])
    # Then botocore accepts it, and so would the service's length, enum and pattern rules
    valid("CreateHyperParameterTuningJob", body, service_model)
    config = body["HyperParameterTuningJobConfig"]
    assert config["TrainingJobEarlyStoppingType"] == early_stopping
    if tuning.get("objective") == "eval_loss":
        assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize", "MetricName": "eval_loss"}
    if tuning["strategy"] == "Hyperband":  # the epoch is Hyperband's resource: 4 configured epochs
        assert config["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 4}}
        assert config["ParameterRanges"]["IntegerParameterRanges"] == [
            {"Name": "seed", "MinValue": "1", "MaxValue": "5", "ScalingType": "Auto"}
        ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "tuning ranges are empty"),
        ("learning_rate", "is not name=low..high"),
        ("learnig_rate=1e-5..1e-3", "not a train.py argument that can be tuned"),
        ("output_dir=a|b", "not a train.py argument that can be tuned"),
        ("model_name_or_path=a|b", "only numeric arguments are tuned"),
        ("learning_rate=1e-3..1e-5", "must go from low to high"),
        ("learning_rate=0..1e-3:log", "out"),  # below the allow-list's 1e-8, before log's own check
        ("weight_decay=0..0.1:log", "a logarithmic range must start above 0"),
        ("warmup_ratio=0.1..0.3:reverse-log, seed=1..9:reverse-log", "reverse-log range is continuous"),
        ("learning_rate=1e-5..1e-3:cubic", "scaling 'cubic' is not one of"),
        ("per_device_train_batch_size=8", "give 2 to 30 different values"),
        ("per_device_train_batch_size=8|8", "give 2 to 30 different values"),
        ("per_device_train_batch_size=4|8.5", "is not an integer"),
        ("per_device_train_batch_size=4|2048", "outside [1, 1024]"),
        ("learning_rate=1e-5..1e-3, learning_rate=1e-4..1e-2", "given twice"),
    ],
)
def test_a_bad_tuning_range_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(lambda_contract.RangeError, match=re.escape(message)):
        lambda_contract.parse_ranges(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TUNING_JOB_PREFIX": "a-much-too-long-tuning-prefix-"}, "at most 24 characters"),
        ({"TUNING": "{"}, "TUNING='{' is invalid: expected a JSON object"),
        (
            {"TUNING": json.dumps({**TUNING, "max_parallel_jobs": 9})},
            "TUNING.max_parallel_jobs=9 is invalid: expected 1..max_jobs (8)",
        ),
        (
            {"TUNING": json.dumps({**TUNING, "strategy": "Grid"})},
            "TUNING.strategy='Grid' is invalid: expected one of",
        ),
        (
            {"TUNING": json.dumps({**TUNING, "strategy": "Hyperband"})},
            "TUNING.early_stopping='Auto' is invalid: expected 'Off' with Hyperband",
        ),
        (
            {"TUNING": json.dumps({**TUNING, "max_jobs": "8"})},
            "TUNING.max_jobs='8' is invalid: expected an integer",
        ),
        (
            {"TUNING": json.dumps({**TUNING, "ranges": "seed=a..b"})},
            "TUNING.ranges='seed=a..b' is invalid: expected name=low..high",
        ),
        ({"PROFILER_RULES": json.dumps(["Overfit"])}, "unknown: Overfit"),
        ({"DEBUGGER_RULES": json.dumps(["LowGPUUtilization"])}, "unknown: LowGPUUtilization"),
        ({"DEBUGGER_RULES": "Overfit"}, "DEBUGGER_RULES='Overfit' is invalid"),
        (
            {"RULE_EVALUATOR_IMAGE": ""},
            "RULE_EVALUATOR_IMAGE is missing: set it to the Debugger rule evaluator image",
        ),
        ({"PROFILER_PREFIX": ""}, "PROFILER_PREFIX is missing: set it to the key prefix"),
        (
            {"PROFILING_INTERVAL_MS": "250"},
            "PROFILING_INTERVAL_MS='250' is invalid: expected one of 100, 200, 500",
        ),
        ({"PROFILER_ENABLED": "yes"}, "PROFILER_ENABLED='yes' is invalid: expected 'true' or 'false'"),
    ],
)
def test_misconfigured_tuning_or_rules_name_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        LaunchSettings.from_environment({**TUNING_ENV, **change})


# --- Debugger and Profiler rules -------------------------------------------------------------------------


def test_training_job_with_rules_is_a_request_botocore_accepts(
    aws: Any, service_model: Callable[[str], Any]
) -> None:
    # Given Debugger rules, profiling and staged data
    sagemaker, s3 = aws
    stage(s3, "train")
    settings = LaunchSettings.from_environment(TUNING_ENV)
    request = parse_event(SCHEDULED, "r-1")
    name = job_name(PREFIX, request)
    # When the request is built, and the schedule starts the job (moto's client validates it too)
    body = build_training_job_request(settings, name, request, ["train"])
    valid("CreateTrainingJob", body, service_model)
    assert launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")["job"] == name
    # Then the hook saves what LossNotDecreasing reads, under debug/, and each rule reports beside it
    assert body["DebugHookConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/debug/",
        "CollectionConfigurations": [
            {"CollectionName": "losses", "CollectionParameters": {"save_interval": "500"}}
        ],
    }
    assert body["DebugRuleConfigurations"][0] == {
        "RuleConfigurationName": "LossNotDecreasing",
        "RuleEvaluatorImage": RULE_IMAGE,
        "S3OutputPath": f"s3://{BUCKET}/debug/{name}/rule-output",
        "RuleParameters": {"rule_to_invoke": "LossNotDecreasing"},
    }
    assert [r["RuleConfigurationName"] for r in body["DebugRuleConfigurations"]] == [
        "LossNotDecreasing",
        "Overfit",
        "Overtraining",
    ]
    # And the profiler samples every 500 ms under profiler/, with its two rules
    assert body["ProfilerConfig"] == {
        "S3OutputPath": f"s3://{BUCKET}/profiler/",
        "ProfilingIntervalInMilliseconds": 500,
    }
    assert [
        (r["RuleConfigurationName"], r["RuleEvaluatorImage"], r["S3OutputPath"])
        for r in body["ProfilerRuleConfigurations"]
    ] == [
        (rule, RULE_IMAGE, f"s3://{BUCKET}/profiler/{name}/rule-output")
        for rule in ("LowGPUUtilization", "ProfilerReport")
    ]


def test_without_profiling_the_job_says_so(
    settings: LaunchSettings, service_model: Callable[[str], Any]
) -> None:
    # Given a launcher without rules or profiling
    request = parse_event(SCHEDULED, "r-1")
    # When the request is built
    body = build_training_job_request(settings, job_name(PREFIX, request), request, ["train"])
    # Then it turns the profiler off explicitly and carries no rule
    valid("CreateTrainingJob", body, service_model)
    assert body["ProfilerConfig"] == {"DisableProfiler": True}
    assert not {"DebugHookConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations"} & body.keys()


def test_handler_starts_one_tuning_job_for_a_tune_invocation(
    aws: Any, deploy: Any, lambda_context: Any
) -> None:
    # Given the function's environment as the stack sets it, with tuning
    sagemaker, s3 = aws
    stage(s3, "train")
    deploy(TUNING_ENV)
    # When `aws lambda invoke --payload '{"tune": true}'` runs it (twice: a retry of the same request)
    first = launcher_handler.handler({"tune": True}, lambda_context)
    second = launcher_handler.handler({"tune": True}, lambda_context)
    # Then one tuning job runs, named from the request id
    assert first["status"] == "started" and second["status"] == "duplicate"
    assert tuning_jobs(sagemaker) == [first["job"]]


# --- new data: a staged dataset's manifest.jsonl --------------------------------------------------------


def manifest_event(
    key: str = "datasets/esc50/manifest.jsonl", *, version: str = "v1", minutes: int = 0, bucket: str = BUCKET
) -> dict[str, Any]:
    """The EventBridge event S3 sends when staging writes a dataset's manifest (its last object)."""
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    return {
        "version": "0",
        "id": f"s3-{version}-{minutes}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": DEFAULT_ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 120, "etag": f"etag-{version}", "version-id": version},
            "reason": "PutObject",
        },
    }


@pytest.fixture
def debounced() -> LaunchSettings:
    return LaunchSettings.from_environment({**ENV, "RETRAIN_DEBOUNCE_MINUTES": "60"})


def test_a_new_manifest_starts_a_job_on_that_dataset(aws: Any, debounced: LaunchSettings) -> None:
    # Given a dataset staged under another prefix than the configured one
    sagemaker, s3 = aws
    s3.put_object(Bucket=BUCKET, Key="datasets/mine/train/dog/1.wav", Body=b"RIFF")
    # When its manifest's Object Created event arrives
    result = launch(
        manifest_event("datasets/mine/manifest.jsonl"),
        debounced,
        sagemaker=sagemaker,
        s3=s3,
        request_id="r-1",
    )
    # Then one job trains on that dataset, tagged as started by new data
    assert result["status"] == "started"
    job = sagemaker.describe_training_job(TrainingJobName=result["job"])
    assert (
        job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{BUCKET}/datasets/mine/train/"
    )
    tags = sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "trigger", "Value": "data"} in tags


def test_a_redelivered_manifest_event_starts_nothing(aws: Any, debounced: LaunchSettings) -> None:
    # Given a job started by a manifest event
    sagemaker, s3 = aws
    stage(s3, "train")
    event = manifest_event()
    first = launch(event, debounced, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # When EventBridge delivers the same event again
    second = launch(event, debounced, sagemaker=sagemaker, s3=s3, request_id="r-2")
    # Then it is the same job: nothing new starts
    assert second["status"] == "duplicate" and second["job"] == first["job"]
    assert len(jobs(sagemaker)) == 1


def test_manifests_within_the_debounce_window_start_one_job(aws: Any, debounced: LaunchSettings) -> None:
    # Given a job started by a manifest (moto marks its jobs finished at once: only the window holds)
    sagemaker, s3 = aws
    stage(s3, "train")
    first = launch(manifest_event(version="v1"), debounced, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # When a second staging run writes a new manifest version 5 minutes later
    second = launch(
        manifest_event(version="v2", minutes=5), debounced, sagemaker=sagemaker, s3=s3, request_id="r-2"
    )
    # Then no second job starts, and the answer says which job covers it
    assert second["status"] == "skipped" and second["job"] == first["job"]
    assert "debounced" in second["reason"]
    assert len(jobs(sagemaker)) == 1
    # And one that lands after the window starts a job again
    third = launch(
        manifest_event(version="v3", minutes=90), debounced, sagemaker=sagemaker, s3=s3, request_id="r-3"
    )
    assert third["status"] == "started"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (manifest_event("datasets/esc50/train/dog/1.wav"), "is not a dataset manifest"),
        (manifest_event("raw/esc50/manifest.jsonl"), "is not a dataset manifest"),
        (manifest_event("datasets/../models/manifest.jsonl"), "is not a dataset manifest"),
        (manifest_event("datasets/manifest.jsonl"), "is not a dataset manifest"),
        ({**manifest_event(), "detail-type": "Object Deleted"}, "must be 'Object Created'"),
        ({**manifest_event(), "detail": {"bucket": {"name": BUCKET}}}, "detail.object.key"),
        ({**manifest_event(), "hyperparameters": {"num_train_epochs": 99}}, "carries no hyperparameters"),
        (manifest_event(bucket="someone-elses-bucket"), "this launcher trains from"),
    ],
)
def test_s3_events_other_than_a_dataset_manifest_start_no_job(
    aws: Any, debounced: LaunchSettings, event: dict[str, Any], message: str
) -> None:
    # Given staged data
    sagemaker, s3 = aws
    stage(s3, "train")
    # When an S3 event that is not this bucket's dataset manifest arrives / Then it is refused, no job
    with pytest.raises(EventError, match=re.escape(message)):
        launch(event, debounced, sagemaker=sagemaker, s3=s3, request_id="r-1")
    assert jobs(sagemaker) == []


# --- one launch at a time, without reserved concurrency ---------------------------------------------------


class _MeetAtTheRunningCheck:
    """A SageMaker client whose in-progress listing waits (briefly) for a second caller to reach it too: the
    moment two launches would both find nothing running and both start a job."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meeting = threading.Barrier(2)

    def list_training_jobs(self, **kwargs: Any) -> Any:
        if kwargs.get("StatusEquals") == "InProgress":
            with contextlib.suppress(threading.BrokenBarrierError):
                self.meeting.wait(timeout=3)
        return self._client.list_training_jobs(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_two_different_triggers_at_once_start_one_job(aws: Any, debounced: LaunchSettings) -> None:
    """Lambda concurrency (AWS Lambda Developer Guide): reserving concurrency takes it from the account's
    unreserved pool, which may not drop below 100 (new accounts often have a quota of 10 or 50), so the
    launcher reserves none; a lease taken with an S3 conditional write (If-None-Match) serializes launches."""
    # Given a staged dataset and a SageMaker client that holds each launch at its running-job check
    sagemaker, s3 = aws
    stage(s3, "train")
    meeting = _MeetAtTheRunningCheck(sagemaker)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def trigger(event: dict[str, Any], request_id: str) -> None:
        try:
            results.append(launch(event, debounced, sagemaker=meeting, s3=s3, request_id=request_id))
        except BaseException as error:  # reported below, with the thread's result
            errors.append(error)

    # When the schedule and a new manifest fire at the same moment
    threads = [
        threading.Thread(target=trigger, args=(SCHEDULED, "r-schedule")),
        threading.Thread(target=trigger, args=(manifest_event(), "r-data")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then exactly one job starts; the other launch is skipped, naming the launch under way
    assert not errors
    assert sorted(r["status"] for r in results) == ["skipped", "started"]
    assert len(jobs(sagemaker)) == 1
    (skipped,) = [r for r in results if r["status"] == "skipped"]
    assert skipped["reason"].startswith("another launch is under way: ")
    # And the lease is given up: the next trigger launches
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="locks/")


def test_an_expired_lease_of_a_dead_launch_is_taken_over(aws: Any, settings: LaunchSettings) -> None:
    # Given a lease left behind by a launch that died 30 minutes ago, and a staged dataset
    sagemaker, s3 = aws
    stage(s3, "train")
    stale = datetime.now(UTC) - timedelta(minutes=30)
    assert lease.acquire(s3, BUCKET, ENV["LAUNCH_LOCK_KEY"], owner="dead", now=stale)
    # When the schedule fires
    result = launch(SCHEDULED, settings, sagemaker=sagemaker, s3=s3, request_id="r-1")
    # Then the expired lease does not block it
    assert result["status"] == "started"


def test_a_live_lease_skips_the_launch(aws: Any, settings: LaunchSettings) -> None:
    # Given a lease another launch took a moment ago
    sagemaker, s3 = aws
    stage(s3, "train")
    assert lease.acquire(s3, BUCKET, ENV["LAUNCH_LOCK_KEY"], owner="schedule e-1", now=datetime.now(UTC))
    # When a manual launch arrives / Then it starts nothing and names the holder
    result = launch({}, settings, sagemaker=sagemaker, s3=s3, request_id="r-2")
    assert result == {"status": "skipped", "reason": "another launch is under way: schedule e-1"}
    assert jobs(sagemaker) == []


# --- another task than the default one ---------------------------------------------------------------------

# The metric lines of the multilabel task (tasks/multilabel.py), as the stack writes them in METRIC_NAMES.
MULTILABEL_LINES = ["loss", "map", "micro_f1", "macro_f1", "lwlrap"]
MULTILABEL_TUNING = {**TUNING, "objective": "eval_map", "objective_type": "Maximize"}
# What the Training stack gives a multilabel deployment's launcher, tuning on.
MULTILABEL_ENV = {
    **ENV,
    "HYPERPARAMETERS": json.dumps({"num_train_epochs": "4", "task": "multilabel"}),
    "METRIC_NAMES": json.dumps(MULTILABEL_LINES),
    "TUNING_JOB_PREFIX": "acoustic-shield0a1b-hpo-",
    "TUNING": json.dumps(MULTILABEL_TUNING),
}


def test_a_multilabel_launcher_scrapes_and_tunes_the_tasks_metrics(aws: Any) -> None:
    # Given a multilabel deployment's launcher and staged data
    sagemaker, s3 = aws
    stage(s3, "train", "validation")
    settings = LaunchSettings.from_environment(MULTILABEL_ENV)
    request = parse_event(SCHEDULED, "r-1")
    # When it builds a training job's request, and starts a tuning job (moto's client validates it against
    # botocore's model)
    single = build_training_job_request(settings, job_name(PREFIX, request), request, ["train"])
    tuned = launch({"tune": True}, settings, sagemaker=sagemaker, s3=s3, request_id="r-2")
    # Then the training job scrapes the task's lines on each split (eval_map's regex reads its line), the
    # training loss and the health metrics, and trains the task
    scraped = single["AlgorithmSpecification"]["MetricDefinitions"]
    definitions = {d["Name"]: d["Regex"] for d in scraped}
    assert set(definitions) == set(contract.job_metric_names(MULTILABEL_LINES))
    assert {"eval_map", "test_micro_f1", "eval_lwlrap", "train_loss"} <= set(definitions)
    assert not {"eval_f1", "test_accuracy"} & set(definitions)
    assert re.search(definitions["eval_map"], "eval_micro_f1=0.5\neval_map=0.7312").group(1) == "0.7312"
    assert json.loads(single["HyperParameters"]["task"]) == "multilabel"
    # And the tuning job maximizes validation mAP, its trials scraping and training the same
    assert tuned["status"] == "started" and tuned["kind"] == "tuning"
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuned["job"])
    objective = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "eval_map"}
    definition = build_tuning_job_request(settings, tuned["job"], request, ["train"])["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == scraped
    assert json.loads(definition["StaticHyperParameters"]["task"]) == "multilabel"


@pytest.mark.parametrize(
    ("objective", "objective_type", "expected"),
    [
        ("eval_f1", None, "Maximize"),  # the default task's TUNING, which predates objective_type
        ("eval_loss", None, "Minimize"),
        ("eval_f1", "Minimize", "Minimize"),  # given, it decides
        ("eval_clip_f1", "Maximize", "Maximize"),  # not in the table: it must be given
    ],
)
def test_the_objectives_direction_is_tunings_objective_type_else_the_default_tasks_table(
    objective: str, objective_type: str | None, expected: str
) -> None:
    # Given the default task's launcher with TUNING naming an objective, with or without its direction
    given = {"objective_type": objective_type} if objective_type else {}
    settings = tuning_settings(objective=objective, **given)
    request = parse_event({"tune": True}, "r-1")
    # When the tuning job's request is built / Then it optimizes the objective in that direction
    body = build_tuning_job_request(settings, tuning_job_name(TUNING_PREFIX, request), request, ["train"])
    assert body["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "Type": expected,
        "MetricName": objective,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"METRIC_NAMES": json.dumps(["map", "micro_f1"])},
            'METRIC_NAMES=\'["map", "micro_f1"]\' is invalid: expected a JSON list of different metric '
            "names (lowercase letters, digits and '_'), 'loss' among them",
        ),
        (
            {"METRIC_NAMES": json.dumps(["loss", "map", "map"])},
            "each metric once: map is named more than once",
        ),
        ({"METRIC_NAMES": json.dumps(["loss", "Test-mAP"])}, "not a list of metric names"),
        ({"METRIC_NAMES": "loss,map"}, "METRIC_NAMES='loss,map' is invalid"),
        (
            # 1 training loss + 2 splits x 11 lines + 18 health metrics: 41, one over SageMaker's 40
            {"METRIC_NAMES": json.dumps(["loss", *(f"m{i}" for i in range(10))])},
            "41 metric definitions, SageMaker allows 40 per job",
        ),
        (
            {"TUNING": json.dumps({**MULTILABEL_TUNING, "objective": "eval_f1"})},
            "TUNING.objective='eval_f1' is invalid: expected one of eval_loss, eval_map, eval_micro_f1",
        ),
        (
            {"TUNING": json.dumps({**MULTILABEL_TUNING, "objective_type": "Up"})},
            "TUNING.objective_type='Up' is invalid: expected Maximize or Minimize",
        ),
        (
            {"TUNING": json.dumps({k: v for k, v in MULTILABEL_TUNING.items() if k != "objective_type"})},
            "TUNING.objective_type=None is invalid: expected Maximize or Minimize (objective 'eval_map' "
            "needs an objective_type: Maximize or Minimize)",
        ),
    ],
)
def test_misconfigured_metric_lines_or_objective_name_the_variable(
    change: dict[str, str], message: str
) -> None:
    # Given a multilabel launcher's environment with one bad metric-line or objective setting
    # When the launcher reads it at cold start / Then it refuses, naming the variable and what is allowed
    with pytest.raises(SettingsError, match=re.escape(message)):
        LaunchSettings.from_environment({**MULTILABEL_ENV, **change})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("metric_names", ("map",), "METRIC_NAMES is invalid: 'loss' is not among the metric names"),
        ("metric_names", ("loss", *(f"m{i}" for i in range(10))), "METRIC_NAMES is invalid: 41 metric"),
        ("tuning", {**MULTILABEL_TUNING, "objective": "eval_f1"}, "TUNING is invalid: objective 'eval_f1'"),
        ("tuning", {**MULTILABEL_TUNING, "objective_type": "Up"}, "TUNING is invalid: objective_type 'Up'"),
    ],
)
def test_the_stack_refuses_at_synthesis_what_the_launcher_would_refuse(
    field: str, value: Any, message: str
) -> None:
    # Given the launcher's environment record as the stack fills it for the multilabel task
    settings = LaunchSettings.from_environment(MULTILABEL_ENV)
    assert settings.tuning is not None
    record = {
        "job_name_prefix": settings.job_name_prefix,
        "execution_role_arn": settings.role_arn,
        "training_image": settings.image_uri,
        "source_dir": settings.source_dir,
        "data_bucket": settings.bucket,
        "dataset_prefix": settings.dataset_prefix,
        "models_prefix": settings.models_prefix,
        "checkpoints_prefix": settings.checkpoints_prefix,
        "launch_lock_key": settings.lock_key,
        "kms_key_arn": settings.kms_key_arn,
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "volume_size_gb": settings.volume_size_gb,
        "use_spot": settings.use_spot,
        "max_runtime_seconds": settings.max_runtime_seconds,
        "max_wait_seconds": settings.max_wait_seconds,
        "hyperparameters": settings.hyperparameters,
        "tags": settings.tags,
        "retrain_debounce_minutes": 0,
        "tuning_job_prefix": settings.tuning.job_name_prefix,
        "tuning": MULTILABEL_TUNING,
        "profiler_enabled": False,
        "metric_names": MULTILABEL_LINES,
    }
    assert lambda_contract.LauncherEnvironment(**record).variables()["METRIC_NAMES"] == json.dumps(
        MULTILABEL_LINES
    )
    # When one field holds a value the launcher refuses at cold start
    # Then the record refuses it too, naming the variable
    with pytest.raises(ValueError, match=re.escape(message)):
        lambda_contract.LauncherEnvironment(**{**record, field: value})

"""The promoter: its environment, its pure gate and builders, and its handler against emulated AWS:
training jobs, tuning jobs (only the winner is registered) and rules that found issues."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from moto.sagemaker.models import sagemaker_backends

from functions.promoter import handler as handler_module
from functions.promoter import logic
from functions.promoter.events import typed_event
from functions.promoter.handler import handler
from functions.promoter.orchestration import Clients, RegistrationBusy, promote
from functions.promoter.settings import Settings, SettingsError, Thresholds
from ml_code import contract
from tests.functions.conftest import ACCOUNT, REGION, cold_start, request_violations

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "acoustic-shield-dev-train-"
GROUP = "acoustic-shield-dev-models"
BUCKET = "acoustic-shield-data"
IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
    "huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04"
)

ENVIRONMENT = {
    "MODEL_PACKAGE_GROUP": GROUP,
    "JOB_NAME_PREFIX": PREFIX,
    "MIN_ACCURACY": "0.8",
    "MIN_F1": "0.75",
    "MIN_CLIP_ACCURACY": "0.8",
    "MAX_REGRESSION": "0.01",
    "MANUAL_APPROVAL": "false",
    "TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:promotions",
    "INFERENCE_IMAGE": IMAGE,
    "SERVING_INSTANCE_TYPE": "ml.m5.xlarge",
    "DATA_BUCKET": BUCKET,
    "EVALUATION_PREFIX": "evaluation/",
    "TUNING_JOB_PREFIX": "acoustic-shield-dev-hpo-",
    "HEALTH_BLOCKING_RULES": '["loss_not_decreasing", "exploding_gradient"]',
}
TUNING_PREFIX = "acoustic-shield-dev-hpo-"
THRESHOLDS = Thresholds(min_accuracy=0.8, min_f1=0.75, min_clip_accuracy=0.8, max_regression=0.01)
GOOD = {"test_accuracy": 0.91, "test_f1": 0.88, "test_clip_accuracy": 0.93, "test_loss": 0.3}


def gate(
    metrics: Mapping[str, float],
    approved: Sequence[logic.ApprovedModel] = (),
    manual_approval: bool = False,
    thresholds: Thresholds = THRESHOLDS,
) -> logic.Decision:
    return logic.decide(metrics, thresholds=thresholds, approved=approved, manual_approval=manual_approval)


def approved_model(version: int = 1, split: str = "test", **metrics: float) -> logic.ApprovedModel:
    """An approved package as the gate reads it back from its metadata."""
    return logic.approved_model_from_package(
        {
            "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}",
            "ModelPackageVersion": version,
            "CustomerMetadataProperties": {
                "metrics_split": split,
                **{name: str(value) for name, value in metrics.items()},
            },
        }
    )


# --- settings ---------------------------------------------------------------------------------------


def test_settings_read_every_variable() -> None:
    # Given the environment the stack sets
    # When it is validated
    settings = Settings.from_environment({**ENVIRONMENT, "MANUAL_APPROVAL": "TRUE"})

    # Then every value is typed
    assert settings.thresholds == THRESHOLDS
    assert settings.manual_approval is True
    assert settings.model_package_group == GROUP
    assert settings.evaluation_prefix == "evaluation/"


def test_settings_name_every_missing_or_invalid_variable() -> None:
    # Given an environment with one variable missing and three invalid
    environ = {**ENVIRONMENT, "MIN_F1": "1.5", "MANUAL_APPROVAL": "yes", "DATA_BUCKET": "s3://bucket"}
    del environ["TOPIC_ARN"]

    # When it is validated
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment(environ)

    # Then the one error names all four, with what to set
    message = str(raised.value)
    assert "TOPIC_ARN is missing" in message
    assert "MIN_F1='1.5' is invalid: expected a number between 0 and 1" in message
    assert "MANUAL_APPROVAL='yes' is invalid" in message
    assert "DATA_BUCKET='s3://bucket' is invalid" in message


@pytest.mark.parametrize("value", ["nan", "-0.1", "abc"])
def test_settings_reject_thresholds_that_are_not_fractions(value: str) -> None:
    # Given a threshold that is not a number in [0, 1]
    # When / Then validation names it
    with pytest.raises(SettingsError, match="MAX_REGRESSION"):
        Settings.from_environment({**ENVIRONMENT, "MAX_REGRESSION": value})


# --- the event --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an event", "expected an EventBridge event"),
        ({"source": "aws.sagemaker"}, "no 'detail' object"),
        ({"detail": {"TrainingJobStatus": "Completed"}}, "no 'TrainingJobName'"),
        ({"detail": {"TrainingJobName": ""}}, "no 'TrainingJobName'"),
    ],
)
def test_malformed_events_raise_a_clear_value_error(event: Any, message: str) -> None:
    # Given an event that names no training job
    # When / Then parsing says what is missing
    with pytest.raises(ValueError, match=message):
        typed_event(event)


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_are_read_from_flat_and_nested_reports() -> None:
    # Given a nested evaluation report and a flat metrics file
    nested = {"test": {"accuracy": 0.9, "f1": 0.8, "per_class": {"dog": 0.7}}, "eval_clip_accuracy": 0.85}
    flat = {"test_accuracy": 0.5, "train_loss": 0.1, "epoch": 3, "nan_metric": float("nan")}

    # When they are read
    from_nested = logic.metrics_from_report(nested)
    from_flat = logic.metrics_from_report(flat)

    # Then only known metric names are kept, under their flat names
    assert from_nested == {"test_accuracy": 0.9, "test_f1": 0.8, "eval_clip_accuracy": 0.85}
    assert from_flat == {"test_accuracy": 0.5, "train_loss": 0.1}


def test_final_metric_data_wins_over_the_output_archive() -> None:
    # Given the same metric from the job's metric definitions and from metrics.json
    final = logic.metrics_from_final_metric_data(
        [{"MetricName": "test_f1", "Value": 0.8}, {"MetricName": "train:progress", "Value": 100.0}]
    )

    # When they are merged in fallback order
    merged = logic.merge_metrics(final, {"test_f1": 0.1, "test_accuracy": 0.9})

    # Then the first source wins and the second fills the gaps
    assert merged == {"test_f1": 0.8, "train:progress": 100.0, "test_accuracy": 0.9}


# --- the gate ---------------------------------------------------------------------------------------


def test_gate_approves_metrics_above_every_threshold() -> None:
    # Given test metrics above every minimum and no approved model yet
    # When the gate decides
    decision = gate(GOOD)

    # Then the model is approved, with each check stated
    assert decision.status == logic.APPROVED
    assert decision.split == "test"
    assert decision.gated == {"accuracy": 0.91, "f1": 0.88, "clip_accuracy": 0.93}
    assert "test_f1 0.8800 >= min_f1 0.7500" in decision.reasons


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        ("test_accuracy", "test_accuracy 0.5000 < min_accuracy 0.8000"),
        ("test_f1", "test_f1 0.5000 < min_f1 0.7500"),
        ("test_clip_accuracy", "test_clip_accuracy 0.5000 < min_clip_accuracy 0.8000"),
    ],
)
def test_gate_rejects_each_metric_below_its_threshold(metric: str, reason: str) -> None:
    # Given one metric below its minimum
    # When the gate decides
    decision = gate({**GOOD, metric: 0.5})

    # Then it rejects for exactly that reason
    assert decision.status == logic.REJECTED
    assert decision.reasons == (reason,)


def test_gate_passes_a_metric_exactly_at_its_threshold() -> None:
    # Given f1 exactly at its minimum (0.75 is not exact in binary floating point)
    # When the gate decides
    decision = gate({**GOOD, "test_f1": 0.75})

    # Then it passes
    assert decision.status == logic.APPROVED


def test_gate_rejects_a_model_worse_than_the_approved_one_beyond_tolerance() -> None:
    # Given an approved model with f1 0.90 and a candidate at 0.88 (0.02 worse, tolerance 0.01)
    approved = [approved_model(accuracy=0.91, f1=0.90, clip_accuracy=0.93)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it rejects, naming the metric, both values, the package and the tolerance
    assert decision.status == logic.REJECTED
    assert decision.reasons == (
        "f1 0.8800 is 0.0200 below the best approved model's 0.9000 (version 1, max_regression 0.0100)",
    )


def test_gate_accepts_a_model_worse_than_the_approved_one_within_tolerance() -> None:
    # Given an approved model 0.005 better on every metric (tolerance 0.01)
    approved = [approved_model(accuracy=0.915, f1=0.885, clip_accuracy=0.935)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it approves
    assert decision.status == logic.APPROVED
    assert any("within max_regression" in reason for reason in decision.reasons)


def test_gate_accepts_a_regression_exactly_at_the_tolerance() -> None:
    # Given a candidate exactly max_regression below the approved model
    approved = [approved_model(accuracy=0.92, f1=0.89, clip_accuracy=0.94)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it approves
    assert decision.status == logic.APPROVED


def test_gate_compares_each_metric_with_its_best_approved_value() -> None:
    # Given three approved models, the best accuracy in one and the best f1 in another, the latest worst
    approved = [
        approved_model(3, accuracy=0.90, f1=0.87, clip_accuracy=0.92),
        approved_model(2, accuracy=0.90, f1=0.90, clip_accuracy=0.92),
        approved_model(1, accuracy=0.93, f1=0.87, clip_accuracy=0.92),
    ]

    # When the gate decides on a model within tolerance of the latest but not of the best
    decision = gate(GOOD, approved)

    # Then each metric is held to its own best
    assert decision.status == logic.REJECTED
    assert decision.reasons == (
        "accuracy 0.9100 is 0.0200 below the best approved model's 0.9300 (version 1, max_regression 0.0100)",
        "f1 0.8800 is 0.0200 below the best approved model's 0.9000 (version 2, max_regression 0.0100)",
    )
    assert decision.comparison == (
        "best of 3 approved test packages: accuracy 0.9300 f1 0.9000 clip_accuracy 0.9200"
    )


def test_gate_cannot_compare_with_an_approved_model_missing_a_metric() -> None:
    # Given an approved package registered by hand, with only accuracy in its metadata
    approved = [approved_model(accuracy=0.5)]

    # When the gate decides, with automatic approval
    decision = gate(GOOD, approved)

    # Then the package waits for a person rather than being compared with nothing
    assert decision.status == logic.PENDING
    assert decision.reasons[0] == (
        f"cannot compare: the approved package {approved[0].arn} has no readable f1, clip_accuracy "
        "in its CustomerMetadataProperties"
    )
    assert decision.reasons[-1] == (
        "the gate cannot compare this model with the approved ones: a person approves or rejects it"
    )


def test_gate_rejects_a_regression_even_when_another_package_cannot_be_compared() -> None:
    # Given a readable approved model the candidate is far below, and one without metrics
    approved = [
        approved_model(2, accuracy=0.99),
        approved_model(1, accuracy=0.99, f1=0.99, clip_accuracy=0.99),
    ]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it is rejected: more packages could only raise the best
    assert decision.status == logic.REJECTED
    assert all("below the best approved model's 0.9900 (version 1," in reason for reason in decision.reasons)


def test_gate_compares_only_approved_models_of_the_same_split() -> None:
    # Given a better approved model measured on validation metrics, and one on test metrics
    approved = [
        approved_model(2, split="eval", accuracy=0.99, f1=0.99, clip_accuracy=0.99),
        approved_model(1, split="test", accuracy=0.91, f1=0.88, clip_accuracy=0.93),
    ]

    # When the gate decides on test metrics
    decision = gate(GOOD, approved)

    # Then only the test one is compared, and the other is noted
    assert decision.status == logic.APPROVED
    assert "f1 0.8800 vs best approved 0.8800 (version 1): within max_regression 0.0100" in decision.reasons
    assert "note: 1 approved package(s) measured on eval metrics were not compared" in decision.reasons


def test_gate_falls_back_to_validation_metrics_without_a_test_split() -> None:
    # Given only eval_* metrics
    metrics = {"eval_accuracy": 0.9, "eval_f1": 0.8, "eval_clip_accuracy": 0.85}

    # When the gate decides
    decision = gate(metrics)

    # Then it gates on them
    assert decision.status == logic.APPROVED
    assert decision.split == "eval"
    assert decision.gated == {"accuracy": 0.9, "f1": 0.8, "clip_accuracy": 0.85}


def test_gate_prefers_test_metrics_over_validation_metrics() -> None:
    # Given good validation metrics and a failing test metric
    metrics = {**GOOD, "test_f1": 0.2, "eval_accuracy": 0.99, "eval_f1": 0.99, "eval_clip_accuracy": 0.99}

    # When the gate decides
    decision = gate(metrics)

    # Then the test metrics decide
    assert decision.split == "test"
    assert decision.status == logic.REJECTED


def test_gate_does_not_mix_splits_when_a_test_metric_is_missing() -> None:
    # Given a test split whose clip accuracy was not reported, and a validation one that was
    metrics = {"test_accuracy": 0.9, "test_f1": 0.9, "eval_clip_accuracy": 0.99}

    # When the gate decides
    decision = gate(metrics)

    # Then it rejects for the missing test metric rather than borrowing the validation one
    assert decision.status == logic.REJECTED
    assert decision.reasons == ("test_clip_accuracy is missing from the job's metrics",)


def test_gate_rejects_when_metrics_are_missing() -> None:
    # Given no metrics at all
    # When the gate decides
    decision = gate({})

    # Then it rejects, naming each missing metric, and does not crash
    assert decision.status == logic.REJECTED
    assert decision.reasons == tuple(
        f"eval_{name} is missing from the job's metrics" for name in contract.GATED_METRICS
    )


def test_gate_rejects_values_that_are_not_fractions() -> None:
    # Given an accuracy reported as a percentage
    # When the gate decides
    decision = gate({**GOOD, "test_accuracy": 91.0})

    # Then it rejects rather than comparing apples with oranges
    assert decision.reasons == ("test_accuracy = 91 is not a fraction between 0 and 1",)


def test_manual_mode_holds_a_passing_model_for_approval() -> None:
    # Given manual approval and passing metrics
    # When the gate decides
    decision = gate(GOOD, manual_approval=True)

    # Then the package waits for a person
    assert decision.status == logic.PENDING
    assert decision.passed


def test_manual_mode_still_rejects_a_failing_model() -> None:
    # Given manual approval and a failing metric
    # When the gate decides
    decision = gate({**GOOD, "test_accuracy": 0.1}, manual_approval=True)

    # Then it is rejected outright
    assert decision.status == logic.REJECTED


def test_approved_metrics_are_read_back_from_package_metadata() -> None:
    # Given an approved package's metadata, one value unparsable, one not a fraction, one absent
    package = {
        "ModelPackageArn": "arn:p",
        "ModelPackageVersion": 4,
        "CustomerMetadataProperties": {
            "accuracy": "0.9",
            "f1": "n/a",
            "clip_accuracy": "93",
            "metrics_split": "eval",
        },
    }

    # When it is read as an approved model
    approved = logic.approved_model_from_package(package)

    # Then only the valid gated metrics are kept, and the others are named as unreadable
    assert approved == logic.ApprovedModel(
        arn="arn:p", metrics={"accuracy": 0.9}, split="eval", version=4, unreadable=("f1", "clip_accuracy")
    )
    assert approved.label == "version 4"


# --- request and message builders --------------------------------------------------------------------


def test_client_token_is_stable_per_job_and_fits_the_api() -> None:
    # Given a job name at SageMaker's maximum length
    job = PREFIX + "x" * (63 - len(PREFIX))

    # When tokens are derived twice, and for another job
    first, second, other = logic.client_token(job), logic.client_token(job), logic.client_token(job + "y")

    # Then they are equal, distinct across jobs, and valid ClientTokens
    assert first == second != other
    assert len(first) <= 36


def test_model_package_request_is_valid_for_the_sagemaker_api(service_model: Callable[[str], Any]) -> None:
    # Given a rejected decision with very long reasons (the description limit is 1,024 characters)
    settings = Settings.from_environment(ENVIRONMENT)
    decision = logic.Decision(
        status=logic.REJECTED, reasons=tuple(f"reason {i}\nwith a newline" for i in range(200))
    )
    metrics = {**GOOD, "eval_loss": 0.2, "train_loss": 1e-5, "epoch": 3.0}

    # When the request is built
    request = logic.model_package_request(
        settings=settings,
        job_name=PREFIX + "1",
        model_data_url=f"s3://{BUCKET}/models/{PREFIX}1/output/model.tar.gz",
        evaluation_uri=f"s3://{BUCKET}/evaluation/{PREFIX}1/evaluation.json",
        decision=decision,
        metrics=metrics,
    )

    # Then botocore accepts it, and so would the service's length, enum and pattern rules
    shape = service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request_violations(request, shape) == []
    assert len(request["ModelPackageDescription"]) == 1024
    assert "\n" not in request["ModelPackageDescription"]
    assert request["CustomerMetadataProperties"]["train_loss"] == "1e-05"
    assert "epoch" not in request["CustomerMetadataProperties"]


def test_the_comparison_is_stored_within_the_metadata_value_pattern() -> None:
    # Given a decision that could not compare, whose reason has commas and parentheses
    decision = gate(GOOD, [approved_model(accuracy=0.5)])

    # When the metadata is built
    properties = logic.customer_metadata(PREFIX + "1", decision, GOOD)

    # Then the value keeps only what the API's pattern allows (letters, digits, spaces, _.:/=+-@)
    value = properties["comparison"]
    assert value.startswith("cannot compare: the approved package arn:aws:sagemaker:")
    assert value.endswith("has no readable f1 clip_accuracy in its CustomerMetadataProperties")
    assert re.fullmatch(r"[A-Za-z0-9 _.:/=+\-@]{1,256}", value)


def test_output_archive_sits_beside_the_model_artifact() -> None:
    # Given a described job, with and without a model artifact
    job = {"TrainingJobName": "j", "OutputDataConfig": {"S3OutputPath": "s3://b/models/"}}
    with_model = {**job, "ModelArtifacts": {"S3ModelArtifacts": "s3://b/other/j/output/model.tar.gz"}}

    # When / Then the output archive is found next to the model, else under the output path
    assert logic.output_archive_uri(with_model) == "s3://b/other/j/output/output.tar.gz"
    assert logic.output_archive_uri(job) == "s3://b/models/j/output/output.tar.gz"
    assert logic.output_archive_uri({"TrainingJobName": "j"}) is None


def test_pending_message_says_how_to_approve() -> None:
    # Given a package waiting for manual approval
    decision = gate(GOOD, manual_approval=True)

    # When the notification is written
    subject, body = logic.registered_message(
        job_name=PREFIX + "1",
        decision=decision,
        model_package_arn="arn:p",
        evaluation_uri="s3://b/e",
        duplicate=False,
    )

    # Then it names the decision and the command that approves it
    assert subject == f"AcousticShield: {PREFIX}1 PendingManualApproval"
    assert "Metrics (test): accuracy 0.9100, f1 0.8800, clip_accuracy 0.9300" in body
    assert (
        "aws sagemaker update-model-package --model-package-arn arn:p --model-approval-status Approved"
        in body
    )


# --- the handler against emulated AWS -----------------------------------------------------------------


@dataclass
class World:
    """The emulated account: clients to arrange and inspect it, and the queue that receives the topic."""

    sagemaker: Any
    s3: Any
    sns: Any
    sqs: Any
    queue_url: str

    def messages(self) -> list[dict[str, str]]:
        """Every SNS message delivered so far, as ``{"Subject", "Message"}``."""
        found: list[dict[str, str]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return found
            for message in batch:
                envelope = json.loads(message["Body"])
                found.append({"Subject": envelope.get("Subject", ""), "Message": envelope["Message"]})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def subscribe(self, topic_arn: str) -> None:
        """Delivers the topic's messages to the queue."""
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def marker_keys(self) -> list[str]:
        """The promoter's records of messages it sent (evaluation/<job>/notifications/...)."""
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="evaluation/").get("Contents", [])
        return sorted(o["Key"] for o in listed if "/notifications/" in o["Key"])

    def packages(self) -> list[dict[str, Any]]:
        summaries = self.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        return [
            self.sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"]) for s in summaries
        ]


@pytest.fixture
def world(emulated_aws: None, strict_requests: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A model package group, the data bucket, the topic with a queue subscribed, and the promoter's env."""
    sagemaker, s3, sns, sqs = (
        boto3.client(name, region_name=REGION) for name in ("sagemaker", "s3", "sns", "sqs")
    )
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    s3.create_bucket(Bucket=BUCKET)
    topic_arn = sns.create_topic(Name="promotions")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="promotions")["QueueUrl"]
    world = World(sagemaker=sagemaker, s3=s3, sns=sns, sqs=sqs, queue_url=queue_url)
    world.subscribe(topic_arn)
    for name, value in {**ENVIRONMENT, "TOPIC_ARN": topic_arn}.items():
        monkeypatch.setenv(name, value)

    # The handler builds its clients on first use: inside the emulator, with the strict checks.
    handler_module.dependencies.cache_clear()
    yield world
    handler_module.dependencies.cache_clear()


def archive(files: Mapping[str, Any]) -> bytes:
    """A tar.gz holding each file at the archive root, as SageMaker packs the output directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def training_job(
    world: World,
    name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    final_metrics: Mapping[str, float] | None = None,
    status: str = "Completed",
    failure_reason: str | None = None,
    output: bytes | None = None,
) -> dict[str, Any]:
    """Creates a training job and its output; returns the EventBridge event SageMaker would send.

    moto marks every job Completed with a fixed FinalMetricDataList, so the status, failure reason and
    final metrics of the emulated job are set in moto's backend.
    """
    world.sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={
            "TrainingImage": IMAGE.replace("inference", "training"),
            "TrainingInputMode": "File",
        },
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/training",
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models"},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[name]
    job.training_job_status = status
    if failure_reason:
        job.failure_reason = failure_reason  # type: ignore[attr-defined]
    if final_metrics is not None:
        job.final_metric_data_list = [
            {"MetricName": key, "Value": value, "Timestamp": job.creation_time}
            for key, value in final_metrics.items()
        ]
    if status == "Completed":
        world.s3.put_object(
            Bucket=BUCKET, Key=f"models/{name}/output/model.tar.gz", Body=archive({"config.json": {}})
        )
        if output is None:
            output = archive(
                {"metrics.json": dict(metrics or {}), "evaluation.json": {"metrics": dict(metrics or {})}}
            )
        if output:
            world.s3.put_object(Bucket=BUCKET, Key=f"models/{name}/output/output.tar.gz", Body=output)
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Training Job State Change",
        "region": REGION,
        "account": ACCOUNT,
        "detail": {"TrainingJobName": name, "TrainingJobStatus": status},
    }


def test_passing_job_is_registered_as_approved(world: World, lambda_context: Any) -> None:
    # Given a completed job whose metrics.json passes the gate
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then one Approved package points at the model, its evaluation report and the job
    assert result["decision"] == "Approved"
    assert result["duplicate"] is False
    (package,) = world.packages()
    assert package["ModelPackageArn"] == result["model_package_arn"]
    assert package["ModelApprovalStatus"] == "Approved"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/{PREFIX}1/output/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert package["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == ["ml.m5.xlarge"]
    assert package["CustomerMetadataProperties"] == {
        "training_job": PREFIX + "1",
        "metrics_split": "test",
        "accuracy": "0.91",
        "f1": "0.88",
        "clip_accuracy": "0.93",
        "test_accuracy": "0.91",
        "test_f1": "0.88",
        "test_clip_accuracy": "0.93",
        "test_loss": "0.3",
        "comparison": "no approved model yet",
    }
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"] == f"s3://{BUCKET}/evaluation/{PREFIX}1/evaluation.json"
    # And the evaluation report was copied there from the job's output
    report = world.s3.get_object(Bucket=BUCKET, Key=f"evaluation/{PREFIX}1/evaluation.json")["Body"].read()
    assert json.loads(report) == {"metrics": GOOD}
    # And people are told
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 Approved"
    assert "Metrics (test): accuracy 0.9100, f1 0.8800, clip_accuracy 0.9300" in message["Message"]


def test_final_metric_data_is_used_when_the_output_has_no_metrics(world: World, lambda_context: Any) -> None:
    # Given metrics only in FinalMetricDataList, and an output without metrics.json or evaluation.json
    event = training_job(
        world, PREFIX + "1", final_metrics=GOOD, output=archive({"confusion_matrix.png": b"png"})
    )

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the gate used them, and a report of what it saw stands in for the missing evaluation.json
    assert result["decision"] == "Approved"
    report = world.s3.get_object(Bucket=BUCKET, Key=f"evaluation/{PREFIX}1/evaluation.json")["Body"].read()
    assert json.loads(report)["metrics"]["test_f1"] == 0.88


def test_job_below_threshold_is_registered_as_rejected(world: World, lambda_context: Any) -> None:
    # Given a completed job whose f1 is below the minimum
    event = training_job(world, PREFIX + "1", metrics={**GOOD, "test_f1": 0.4})

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the package is registered as Rejected, saying why
    assert result["decision"] == "Rejected"
    assert result["reasons"] == ["test_f1 0.4000 < min_f1 0.7500"]
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ModelPackageDescription"] == "Rejected: test_f1 0.4000 < min_f1 0.7500"
    (message,) = world.messages()
    assert "- test_f1 0.4000 < min_f1 0.7500" in message["Message"]


def test_job_worse_than_the_approved_model_is_rejected(world: World, lambda_context: Any) -> None:
    # Given an approved model from an earlier job
    first = handler(training_job(world, PREFIX + "1", metrics=GOOD), lambda_context)
    assert first["decision"] == "Approved"
    # And a new job that passes the thresholds but is 0.05 worse on f1
    event = training_job(world, PREFIX + "2", metrics={**GOOD, "test_f1": 0.83})

    # When the promoter handles the new job's event
    result = handler(event, lambda_context)

    # Then the new package is rejected against the approved one, which stays approved
    assert result["decision"] == "Rejected"
    assert result["reasons"] == [
        "f1 0.8300 is 0.0500 below the best approved model's 0.8800 (version 1, max_regression 0.0100)"
    ]
    statuses = {
        p["CustomerMetadataProperties"]["training_job"]: p["ModelApprovalStatus"] for p in world.packages()
    }
    assert statuses == {PREFIX + "1": "Approved", PREFIX + "2": "Rejected"}


def test_manual_approval_registers_a_passing_job_as_pending(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given manual approval is on
    monkeypatch.setenv("MANUAL_APPROVAL", "true")
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles a passing job's event
    result = handler(event, lambda_context)

    # Then the package waits for a person, and the message says how to approve it
    assert result["decision"] == "PendingManualApproval"
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    (message,) = world.messages()
    assert (
        f"--model-package-arn {result['model_package_arn']} --model-approval-status Approved"
        in message["Message"]
    )


def test_duplicate_event_registers_no_second_package(world: World, lambda_context: Any) -> None:
    # Given an event that was already handled
    event = training_job(world, PREFIX + "1", metrics=GOOD)
    first = handler(event, lambda_context)

    # When EventBridge delivers it again
    second = handler(event, lambda_context)

    # Then the existing package is reported, and there is still only one
    assert second["duplicate"] is True
    assert second["model_package_arn"] == first["model_package_arn"]
    assert second["decision"] == "Approved"
    assert (
        second["reasons"][0]
        == f"already registered for this job as {first['model_package_arn']}; nothing new was created"
    )
    assert len(world.packages()) == 1
    # And people were told once: the first delivery's message went out
    (message,) = world.messages()
    assert "Repeated event" not in message["Message"]


class _MeetAtTheRegistryCheck:
    """A SageMaker client whose package listing waits (briefly) for a second caller to reach it too: the
    moment two deliveries would both find no package and both register one."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meeting = threading.Barrier(2)

    def get_paginator(self, operation: str) -> Any:
        if operation == "list_model_packages":
            with contextlib.suppress(threading.BrokenBarrierError):
                self.meeting.wait(timeout=3)
        return self._client.get_paginator(operation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_two_deliveries_at_once_register_one_package(world: World) -> None:
    """Lambda concurrency (AWS Lambda Developer Guide): the promoter reserves none (the unreserved pool may
    not drop below 100); "Amazon S3 conditional writes" (S3 User Guide): with If-None-Match only the first
    writer of a key succeeds, so one delivery holds the job's registration lease."""
    # Given a finished job, and a registry check that both deliveries reach together
    event = training_job(world, PREFIX + "1", metrics=GOOD)
    clients = Clients(sagemaker=_MeetAtTheRegistryCheck(world.sagemaker), s3=world.s3, sns=world.sns)
    topic_arn = world.sns.list_topics()["Topics"][0]["TopicArn"]
    settings = Settings.from_environment({**ENVIRONMENT, "TOPIC_ARN": topic_arn})
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            results.append(promote(event, settings, clients))
        except BaseException as error:  # the busy delivery fails, to be retried by Lambda
            errors.append(error)

    # When EventBridge delivers the event twice at the same moment
    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then one package is registered; the other delivery fails as busy and leaves the lease to the first
    assert len(world.packages()) == 1 and len(results) == 1
    (error,) = errors
    assert isinstance(error, RegistrationBusy) and "is registering it" in str(error)
    # And its retry finds the package the first delivery registered
    retry = promote(event, settings, clients)
    assert retry["duplicate"] is True and retry["model_package_arn"] == results[0]["model_package_arn"]


def test_a_message_lost_after_registering_is_sent_by_the_retry(world: World, lambda_context: Any) -> None:
    # Given a first delivery that registered the package but could not publish (the topic was gone)
    event = training_job(world, PREFIX + "1", metrics=GOOD)
    topic_arn = world.sns.list_topics()["Topics"][0]["TopicArn"]
    world.sns.delete_topic(TopicArn=topic_arn)
    with pytest.raises(ClientError, match="NotFound"):
        handler(event, lambda_context)
    assert len(world.packages()) == 1
    assert not world.marker_keys()  # the message's marker was withdrawn with the failure
    world.subscribe(world.sns.create_topic(Name="promotions")["TopicArn"])

    # When EventBridge retries the event
    second = handler(event, lambda_context)

    # Then nothing new is registered, and the message people never got is sent, marked as a repeat
    assert second["duplicate"] is True
    assert len(world.packages()) == 1
    (message,) = world.messages()
    assert "Repeated event" in message["Message"]
    assert world.marker_keys() == [f"evaluation/{PREFIX}1/notifications/outcome.json"]


def test_missing_output_rejects_the_job_without_crashing(world: World, lambda_context: Any) -> None:
    # Given a completed job with no metrics anywhere and no output.tar.gz
    event = training_job(world, PREFIX + "1", output=b"")

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is registered as Rejected, naming the missing metrics and the missing archive
    assert result["decision"] == "Rejected"
    assert "eval_f1 is missing from the job's metrics" in result["reasons"]
    assert f"s3://{BUCKET}/models/{PREFIX}1/output/output.tar.gz does not exist" in result["reasons"]
    assert [p["ModelApprovalStatus"] for p in world.packages()] == ["Rejected"]


class _ScopedListGrant:
    """The data bucket as the promoter's role sees it: its s3:ListBucket is conditioned on the models/
    prefix, so S3 answers a GetObject of a missing key with 403 AccessDenied (the emulator says NoSuchKey).
    ``deny`` makes every GetObject a 403, as a key policy or bucket policy gone wrong would."""

    def __init__(self, client: Any, *, deny: bool = False) -> None:
        self._client, self._deny = client, deny

    def get_object(self, **kwargs: Any) -> Any:
        denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
        if self._deny:
            raise denied
        try:
            return self._client.get_object(**kwargs)
        except self._client.exceptions.NoSuchKey:
            raise denied from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("deny", [False, True])
def test_a_403_on_the_archive_is_missing_only_when_the_listing_agrees(world: World, deny: bool) -> None:
    """GetObject (Amazon S3 API Reference): without s3:ListBucket, a missing key answers 403 Access Denied.
    The promoter asks ListObjectsV2 (its prefix-scoped grant allows it) before calling a 403 "missing", and
    never reads a real denial as a missing archive."""
    # Given a completed job, with its archive (deny) or without one, seen through the promoter's rights
    event = training_job(world, PREFIX + "1", metrics=GOOD if deny else None, output=None if deny else b"")
    topic_arn = world.sns.list_topics()["Topics"][0]["TopicArn"]
    settings = Settings.from_environment({**ENVIRONMENT, "TOPIC_ARN": topic_arn})
    clients = Clients(sagemaker=world.sagemaker, s3=_ScopedListGrant(world.s3, deny=deny), sns=world.sns)
    if deny:
        # When reading an archive that exists is denied / Then the error surfaces (and is retried)
        with pytest.raises(ClientError, match="AccessDenied"):
            promote(event, settings, clients)
        assert world.packages() == []
        return
    # When the missing archive's 403 is checked / Then the job is rejected for it, without crashing
    result = promote(event, settings, clients)
    assert result["decision"] == "Rejected"
    assert f"s3://{BUCKET}/models/{PREFIX}1/output/output.tar.gz does not exist" in result["reasons"]


def test_corrupt_output_rejects_the_job_without_crashing(world: World, lambda_context: Any) -> None:
    # Given a completed job whose output.tar.gz is not an archive
    event = training_job(world, PREFIX + "1", output=b"not a tarball")

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is rejected, saying the archive is unreadable
    assert result["decision"] == "Rejected"
    assert any("is not a readable tar.gz" in reason for reason in result["reasons"])


def test_failed_job_is_notified_and_registers_nothing(world: World, lambda_context: Any) -> None:
    # Given a job that failed
    event = training_job(
        world, PREFIX + "1", status="Failed", failure_reason="AlgorithmError: CUDA out of memory"
    )

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then people get the job, status and reason, and no package exists
    assert result == {
        "job": PREFIX + "1",
        "status": "Failed",
        "decision": "NotRegistered",
        "model_package_arn": None,
        "duplicate": False,
        "reasons": ["training job Failed: AlgorithmError: CUDA out of memory"],
        "rules": [],
    }
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 Failed"
    assert message["Message"] == (
        f"Training job {PREFIX}1 failed; no model package was registered.\n"
        "Reason: AlgorithmError: CUDA out of memory"
    )
    assert world.packages() == []


def test_stopped_job_is_notified_and_registers_nothing(world: World, lambda_context: Any) -> None:
    # Given a job that was stopped, with no failure reason
    event = training_job(world, PREFIX + "1", status="Stopped")

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the message says so and nothing is registered
    assert result["decision"] == "NotRegistered"
    assert world.messages()[0]["Message"].endswith("Reason: none given")
    assert world.packages() == []


def test_the_described_status_wins_over_the_event(world: World, lambda_context: Any) -> None:
    # Given an event that claims success for a job that actually failed
    event = training_job(world, PREFIX + "1", status="Failed", failure_reason="boom")
    event["detail"]["TrainingJobStatus"] = "Completed"

    # When the promoter handles it
    result = handler(event, lambda_context)

    # Then DescribeTrainingJob decides
    assert result["decision"] == "NotRegistered"
    assert world.packages() == []


def test_job_of_another_deployment_is_ignored(world: World, lambda_context: Any) -> None:
    # Given an event for a job without this deployment's prefix
    event = training_job(world, "someone-elses-job", metrics=GOOD)

    # When the promoter handles it
    result = handler(event, lambda_context)

    # Then nothing is registered or sent
    assert result["decision"] == "Ignored"
    assert world.packages() == []
    assert world.messages() == []


def test_aws_errors_propagate_so_the_event_is_retried(world: World, lambda_context: Any) -> None:
    # Given an event for a job SageMaker does not know
    event = {"detail": {"TrainingJobName": PREFIX + "missing", "TrainingJobStatus": "Completed"}}

    # When / Then the service's error reaches the caller
    with pytest.raises(ClientError, match="Could not find training job"):
        handler(event, lambda_context)


def test_bad_environment_fails_naming_the_variable(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container started without a threshold
    monkeypatch.delenv("MIN_CLIP_ACCURACY")
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When / Then the first invocation fails, naming it
    with pytest.raises(SettingsError, match="MIN_CLIP_ACCURACY is missing"):
        handler(event, lambda_context)


def logged(record: logging.LogRecord) -> dict[str, Any]:
    """The line the handler's logger writes for ``record`` (Powertools' JSON, with the Lambda context)."""
    line: dict[str, Any] = json.loads(handler_module.logger.registered_formatter.format(record))
    return line


def test_handler_logs_one_structured_line(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a passing job
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    with caplog.at_level("INFO", logger=handler_module.logger.name):
        result = handler(event, lambda_context)

    # Then one structured line records the outcome, the Lambda context and the event's id as correlation id
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    line = logged(record)
    assert line["decision"] == result["decision"] == "Approved"
    assert line["function_request_id"] == lambda_context.aws_request_id
    assert line["correlation_id"] == event.get("id", lambda_context.aws_request_id)
    assert line["service"] == "promoter"


def test_handler_logs_at_info_without_any_logging_configured(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a passing job, and no logging configured (Lambda leaves the root logger at WARNING)
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the handler's own setup lets its one line through, as the launcher's does (empty values left out)
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    assert record.levelno == logging.INFO and record.getMessage() == "promotion"
    line = logged(record)
    assert {key: line[key] for key in result if result[key] is not None} == {
        key: value for key, value in result.items() if value is not None
    }


def test_each_gate_decision_is_counted_once(world: World, lambda_context: Any, capsys: Any) -> None:
    # Given a passing job whose event is delivered twice
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles both deliveries
    first = handler(event, lambda_context)
    second = handler(event, lambda_context)

    # Then one embedded metric counts the approval, in the app's namespace; the redelivery counts nothing
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert first["decision"] == "Approved" and second["duplicate"] is True
    counted = [m for m in emf if "ModelApproved" in m]
    assert [m["ModelApproved"] for m in counted] == [[1.0]]
    assert counted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AcousticShield"
    assert counted[0]["service"] == "promoter"


def test_cold_start_in_lambda_names_every_bad_variable() -> None:
    # Given a container started with a threshold missing and a bucket given as a URI
    environ = {**ENVIRONMENT, "DATA_BUCKET": "s3://bucket"}
    del environ["MIN_CLIP_ACCURACY"]

    # When Lambda loads the handler
    started = cold_start("promoter", environ)

    # Then loading fails before any event, naming both
    assert started.returncode != 0
    assert "SettingsError: invalid promoter environment: " in started.stderr
    assert "MIN_CLIP_ACCURACY is missing" in started.stderr
    assert "DATA_BUCKET='s3://bucket' is invalid" in started.stderr
    # And with the environment the stack sets, it loads
    loaded = cold_start("promoter", ENVIRONMENT)
    assert loaded.returncode == 0, loaded.stderr


# --- the gate against every approved package ------------------------------------------------------------


def approve_by_hand(world: World, metadata: Mapping[str, str] | None) -> str:
    """An Approved package registered outside the promoter (by a person, or by an older tool)."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": GROUP,
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/by-hand/model.tar.gz"}],
            "SupportedContentTypes": ["audio/wav"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    }
    if metadata is not None:
        request["CustomerMetadataProperties"] = dict(metadata)
    arn: str = world.sagemaker.create_model_package(**request)["ModelPackageArn"]
    return arn


def statuses_by_job(world: World) -> dict[str, str]:
    return {
        p["CustomerMetadataProperties"]["training_job"]: p["ModelApprovalStatus"]
        for p in world.packages()
        if "training_job" in (p.get("CustomerMetadataProperties") or {})
    }


def test_step_by_step_decline_is_bounded_by_the_best_approved_model(
    world: World, lambda_context: Any
) -> None:
    # Given eight weekly jobs, each 0.009 f1 worse than the one before (within max_regression 0.01 of it):
    # f1 0.95, 0.941, ..., 0.887
    weekly_f1 = [round(0.95 - 0.009 * week, 3) for week in range(8)]

    # When the promoter handles each job's event in turn
    decisions = [
        handler(training_job(world, f"{PREFIX}{week}", metrics={**GOOD, "test_f1": f1}), lambda_context)[
            "decision"
        ]
        for week, f1 in enumerate(weekly_f1)
    ]

    # Then only the jobs within max_regression of the best approved f1 (0.95) are approved
    assert decisions == ["Approved", "Approved"] + ["Rejected"] * 6
    approved = [f1 for f1, decision in zip(weekly_f1, decisions, strict=True) if decision == "Approved"]
    assert max(approved) - min(approved) <= THRESHOLDS.max_regression
    # And the rejections name the best approved model, not the latest
    third = next(
        p for p in world.packages() if p["CustomerMetadataProperties"]["training_job"] == f"{PREFIX}2"
    )
    assert "f1 0.9320 is 0.0180 below the best approved model's 0.9500" in third["ModelPackageDescription"]


def test_the_best_approved_model_is_found_beyond_the_first_page(world: World, lambda_context: Any) -> None:
    # Given the group's best approved model (f1 0.95), then 100 newer approved ones with f1 0.88
    best = approve_by_hand(
        world, {"metrics_split": "test", "accuracy": "0.91", "f1": "0.95", "clip_accuracy": "0.93"}
    )
    for _ in range(100):
        approve_by_hand(
            world, {"metrics_split": "test", "accuracy": "0.91", "f1": "0.88", "clip_accuracy": "0.93"}
        )
    first_page = world.sagemaker.list_model_packages(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    assert "NextToken" in first_page
    assert best not in {s["ModelPackageArn"] for s in first_page["ModelPackageSummaryList"]}
    # And a new job as good as the latest approved model but 0.07 below the best
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is rejected against the best one
    assert result["decision"] == "Rejected"
    assert result["reasons"] == [
        "f1 0.8800 is 0.0700 below the best approved model's 0.9500 (version 1, max_regression 0.0100)"
    ]


EVAL_ONLY = {"eval_accuracy": 0.91, "eval_f1": 0.88, "eval_clip_accuracy": 0.93, "eval_loss": 0.3}


@pytest.mark.parametrize(
    ("approved_metrics", "new_metrics", "approved_split", "new_split"),
    [(EVAL_ONLY, GOOD, "eval", "test"), (GOOD, EVAL_ONLY, "test", "eval")],
    ids=["validation-then-test", "test-then-validation"],
)
def test_metrics_of_different_splits_are_never_compared(
    world: World,
    lambda_context: Any,
    approved_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    approved_split: str,
    new_split: str,
) -> None:
    # Given an approved model gated on one split
    first = handler(training_job(world, PREFIX + "1", metrics=approved_metrics), lambda_context)
    assert first["decision"] == "Approved"
    # And a new job, with automatic approval, that reports only metrics of the other split
    event = training_job(world, PREFIX + "2", metrics=new_metrics)

    # When the promoter handles the new job's event
    result = handler(event, lambda_context)

    # Then the gate cannot compare the two, and a person decides
    assert result["decision"] == "PendingManualApproval"
    reason = (
        f"cannot compare: the approved models were measured on {approved_split} metrics and this one "
        f"on {new_split} metrics, which are never compared"
    )
    assert result["reasons"][0] == reason
    # And the package, its metadata and the message say why
    package = next(p for p in world.packages() if p["ModelPackageArn"] == result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageDescription"].startswith(f"PendingManualApproval: {reason}")
    assert package["CustomerMetadataProperties"]["comparison"].startswith("cannot compare")
    message = world.messages()[-1]["Message"]
    assert f"- {reason}" in message
    assert "--model-approval-status Approved" in message


@pytest.mark.parametrize(
    ("metadata", "missing"),
    [
        (None, "metrics_split, accuracy, f1, clip_accuracy"),
        ({"accuracy": "0.91", "f1": "0.88", "clip_accuracy": "0.93"}, "metrics_split"),
        ({"metrics_split": "test", "accuracy": "0.91", "f1": "0.88"}, "clip_accuracy"),
        ({"metrics_split": "test", "accuracy": "91", "f1": "0.88", "clip_accuracy": "0.93"}, "accuracy"),
    ],
    ids=["no-metadata", "no-split", "no-clip-accuracy", "accuracy-not-a-fraction"],
)
def test_an_approved_package_without_stored_metrics_cannot_be_compared(
    world: World, lambda_context: Any, metadata: Mapping[str, str] | None, missing: str
) -> None:
    # Given an approved package registered by hand whose metrics the gate cannot read
    arn = approve_by_hand(world, metadata)
    # And a new job that passes every minimum, with automatic approval
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it waits for a person instead of being compared with nothing
    assert result["decision"] == "PendingManualApproval"
    assert result["reasons"][0] == (
        f"cannot compare: the approved package {arn} has no readable {missing} in its "
        "CustomerMetadataProperties"
    )
    package = next(p for p in world.packages() if p["ModelPackageArn"] == result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert "cannot compare" in package["ModelPackageDescription"]
    assert package["CustomerMetadataProperties"]["comparison"].startswith("cannot compare")
    assert "cannot compare" in world.messages()[-1]["Message"]


def test_a_tuning_trial_event_is_ignored(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the completed event of a hyperparameter tuning job's trial
    tuning = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{PREFIX}tune"
    event = training_job(world, PREFIX + "tune-001-1a2b3c4d", metrics=GOOD)
    event["detail"]["TuningJobArn"] = tuning

    # When the promoter handles it
    with caplog.at_level("INFO", logger=handler_module.logger.name):
        result = handler(event, lambda_context)

    # Then nothing is registered or sent, and the log line says why
    assert result["decision"] == "Ignored"
    assert result["reasons"] == [f"a trial of the tuning job {tuning}: trials are not registered"]
    assert world.packages() == []
    assert world.messages() == []
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    assert logged(record)["reasons"] == result["reasons"]


def test_a_tuning_trial_is_ignored_when_only_the_described_job_says_so(
    world: World, lambda_context: Any
) -> None:
    # Given an event that names only the job (a person re-running the promoter) for a tuning trial
    tuning = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{PREFIX}tune"
    training_job(world, PREFIX + "tune-002-1a2b3c4d", metrics=GOOD)
    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[PREFIX + "tune-002-1a2b3c4d"]
    job.tuning_job_arn = tuning  # type: ignore[attr-defined]

    # When the promoter handles it
    result = handler({"detail": {"TrainingJobName": PREFIX + "tune-002-1a2b3c4d"}}, lambda_context)

    # Then DescribeTrainingJob's TuningJobArn decides: nothing is registered or sent
    assert result["decision"] == "Ignored"
    assert result["reasons"] == [f"a trial of the tuning job {tuning}: trials are not registered"]
    assert world.packages() == []
    assert world.messages() == []


# --- tuning jobs: only the winner is registered ---------------------------------------------------------

TUNING_JOB = TUNING_PREFIX + "1a2b3c4d"


def trial(world: World, number: int, metrics: Mapping[str, float]) -> dict[str, Any]:
    """A completed trial of TUNING_JOB (named by SageMaker after it) and its training-state event."""
    name = f"{TUNING_JOB}-{number:03d}-0a1b2c3{number}"
    event = training_job(world, name, metrics=metrics, final_metrics={"eval_f1": metrics["test_f1"]})
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{TUNING_JOB}"
    sagemaker_backends[ACCOUNT][REGION].training_jobs[name].tuning_job_arn = arn  # type: ignore[attr-defined]
    event["detail"]["TuningJobArn"] = arn
    return event


def tuning_job(
    world: World,
    *,
    status: str = "Completed",
    best: str | None = None,
    tuned: Mapping[str, str] | None = None,
    objective: float = 0.0,
    counters: Mapping[str, int] | None = None,
    failure_reason: str = "",
) -> dict[str, Any]:
    """Creates TUNING_JOB as the launcher would, sets what SageMaker reports when it ends (moto completes
    tuning jobs at once, with a made-up winner), and returns the tuning job's state-change event."""
    world.sagemaker.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "eval_f1"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": "1e-5",
                        "MaxValue": "1e-3",
                        "ScalingType": "Logarithmic",
                    }
                ]
            },
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE.replace("inference", "training"),
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "eval_f1", "Regex": "eval_f1=([0-9.]+)"}],
            },
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/training",
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    )
    job = sagemaker_backends[ACCOUNT][REGION].hyper_parameter_tuning_jobs[TUNING_JOB]
    job.hyper_parameter_tuning_job_status = status
    job.failure_reason = failure_reason
    job.training_job_status_counters = dict(
        counters
        or {"Completed": 3, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
    )
    job.best_training_job = (
        {
            "TrainingJobName": best,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{best}",
            "TuningJobName": TUNING_JOB,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": dict(tuned or {}),
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "Maximize",
                "MetricName": "eval_f1",
                "Value": objective,
            },
            "ObjectiveStatus": "Succeeded",
        }
        if best
        else None
    )
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker HyperParameter Tuning Job State Change",
        "region": REGION,
        "account": ACCOUNT,
        "detail": {"HyperParameterTuningJobName": TUNING_JOB, "HyperParameterTuningJobStatus": status},
    }


def test_a_completed_tuning_job_registers_only_its_best_trial(world: World, lambda_context: Any) -> None:
    # Given three completed trials, whose own events register nothing
    events = [trial(world, n, {**GOOD, "test_f1": f1}) for n, f1 in ((1, 0.80), (2, 0.90), (3, 0.85))]
    tuning_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{TUNING_JOB}"
    for event in events:
        assert handler(event, lambda_context)["reasons"] == [logic.ignored_trial_reason(tuning_arn)]
        # also when a person re-runs the promoter with the trial's name only
        by_name = handler({"detail": {"TrainingJobName": event["detail"]["TrainingJobName"]}}, lambda_context)
        assert by_name["decision"] == "Ignored"
        assert by_name["reasons"] == [logic.ignored_trial_reason(tuning_arn)]
    assert world.packages() == [] and world.messages() == []
    best = events[1]["detail"]["TrainingJobName"]
    # And the tuning job that ran them, which reports the second as its best
    event = tuning_job(
        world,
        best=best,
        tuned={"learning_rate": "0.000123", "per_device_train_batch_size": "8"},
        objective=0.9,
    )

    # When the promoter handles the tuning job's event
    result = handler(event, lambda_context)

    # Then the winner alone is gated and registered, with the tuning job and the values it chose
    assert result["decision"] == "Approved"
    assert (result["job"], result["tuning_job"]) == (best, TUNING_JOB)
    (package,) = world.packages()
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/{best}/output/model.tar.gz"
    metadata = package["CustomerMetadataProperties"]
    assert metadata["training_job"] == best
    assert metadata["tuning_job"] == TUNING_JOB
    assert metadata["tuning_objective"] == "eval_f1 0.9"
    assert metadata["tuned_learning_rate"] == "0.000123"
    assert metadata["tuned_per_device_train_batch_size"] == "8"
    assert metadata["test_f1"] == "0.9"
    # And people are told which trial won, out of how many, on what, with which values
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {best} Approved"
    assert (
        f"Best of 3 completed trial(s) of tuning job {TUNING_JOB}: eval_f1 0.9000; "
        "learning_rate=0.000123, per_device_train_batch_size=8." in message["Message"]
    )


def test_a_redelivered_tuning_event_registers_the_winner_once(world: World, lambda_context: Any) -> None:
    # Given a tuning job whose winner was registered
    best = trial(world, 1, GOOD)["detail"]["TrainingJobName"]
    event = tuning_job(world, best=best, tuned={"learning_rate": "0.0001"}, objective=0.88)
    first = handler(event, lambda_context)

    # When its event arrives again
    second = handler(event, lambda_context)

    # Then the package is reported, not registered again, and nobody is told twice
    assert second["duplicate"] is True and second["model_package_arn"] == first["model_package_arn"]
    assert len(world.packages()) == 1
    assert len(world.messages()) == 1


@pytest.mark.parametrize(
    ("status", "counters", "failure_reason", "first_line"),
    [
        (
            "Completed",
            {"Completed": 0, "NonRetryableError": 3, "Stopped": 0},
            "",
            f"Tuning job {TUNING_JOB} completed without a completed training job; no model package was registered.",
        ),
        (
            "Failed",
            {"Completed": 0, "NonRetryableError": 1},
            "ResourceLimitExceeded: ml.g5.xlarge",
            f"Tuning job {TUNING_JOB} failed; no model package was registered.",
        ),
    ],
)
def test_a_tuning_job_without_a_completed_trial_is_announced(
    world: World,
    lambda_context: Any,
    status: str,
    counters: Mapping[str, int],
    failure_reason: str,
    first_line: str,
) -> None:
    # Given a tuning job that ended without any trial completing
    event = tuning_job(world, status=status, counters=counters, failure_reason=failure_reason)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then nothing is registered, and the failure topic says so with the trials' outcome
    assert result["decision"] == "NotRegistered" and result["tuning_job"] == TUNING_JOB
    assert world.packages() == []
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {TUNING_JOB} {status} without a model"
    lines = message["Message"].splitlines()
    assert lines[0] == first_line
    assert lines[1] == "Trials: " + ", ".join(f"{c} {s}" for s, c in sorted(counters.items()) if c) + "."
    assert lines[-1] == f"Reason: {failure_reason or 'none given'}"


def test_a_tuning_job_of_another_deployment_is_ignored(world: World, lambda_context: Any) -> None:
    event = {
        "detail": {
            "HyperParameterTuningJobName": "someone-else-hpo-1",
            "HyperParameterTuningJobStatus": "Completed",
        }
    }
    result = handler(event, lambda_context)
    assert result["decision"] == "Ignored" and result["tuning_job"] == "someone-else-hpo-1"
    assert world.packages() == [] and world.messages() == []


def test_the_tuning_model_package_request_is_valid_for_the_sagemaker_api(
    service_model: Callable[[str], Any],
) -> None:
    # Given a winner with long tuned values and odd characters
    tuning = logic.TuningResult(
        name=TUNING_JOB,
        arn="arn",
        best_job=TUNING_JOB + "-002-0a1b2c3d",
        objective="eval_f1",
        objective_value=0.912345,
        tuned={"learning_rate": "1.2345678901234567e-05", "per_device_train_batch_size": "16"},
        counters={"Completed": 8},
    )
    request = logic.model_package_request(
        settings=Settings.from_environment(ENVIRONMENT),
        job_name=tuning.best_job or "",
        model_data_url="s3://b/m.tar.gz",
        evaluation_uri="s3://b/e.json",
        decision=gate(GOOD),
        metrics=GOOD,
        tuning=tuning,
    )
    # Then botocore and the service's patterns accept it
    shape = service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request_violations(request, shape) == []
    assert request["CustomerMetadataProperties"]["tuning_objective"] == "eval_f1 0.912345"


# --- Debugger and Profiler rules that find issues ---------------------------------------------------------


def with_rules(world: World, event: dict[str, Any], statuses: Mapping[str, str]) -> dict[str, Any]:
    """The job's Profiler rules reporting these statuses, as DescribeTrainingJob and the event carry them."""
    name = event["detail"]["TrainingJobName"]
    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[name]
    job.profiler_config = {"S3OutputPath": f"s3://{BUCKET}/profiler/"}  # type: ignore[attr-defined]
    reported = [
        {
            "RuleConfigurationName": rule,
            "RuleEvaluationJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{name[:20]}-{rule[:10]}",
            "RuleEvaluationStatus": status,
            "StatusDetails": f"{rule}: {status}",
        }
        for rule, status in statuses.items()
    ]
    job.profiler_rule_evaluation_statuses = reported  # type: ignore[attr-defined]
    return {**event, "detail": {**event["detail"], "ProfilerRuleEvaluationStatuses": reported}}


def test_a_rule_that_found_issues_is_announced_once(world: World, lambda_context: Any) -> None:
    # Given a completed job whose LowGPUUtilization rule found issues, the report still running
    event = training_job(world, PREFIX + "1", metrics=GOOD)
    first = handler(
        with_rules(world, event, {"LowGPUUtilization": "IssuesFound", "ProfilerReport": "InProgress"}),
        lambda_context,
    )
    # When SageMaker sends the job's state again as the report finishes, with issues too
    second = handler(
        with_rules(world, event, {"LowGPUUtilization": "IssuesFound", "ProfilerReport": "IssuesFound"}),
        lambda_context,
    )

    # Then the model is registered once, and each rule's finding is announced once, with job and rule
    assert first["decision"] == "Approved" and first["rules"] == [
        "Profiler rule LowGPUUtilization: IssuesFound"
    ]
    assert second["duplicate"] is True and second["rules"] == ["Profiler rule ProfilerReport: IssuesFound"]
    assert len(world.packages()) == 1
    subjects = [m["Subject"] for m in world.messages()]
    assert subjects == [
        f"AcousticShield: {PREFIX}1 rule LowGPUUtilization IssuesFound",
        f"AcousticShield: {PREFIX}1 Approved",
        f"AcousticShield: {PREFIX}1 rule ProfilerReport IssuesFound",
    ]


def test_a_rule_firing_during_training_is_announced_before_the_job_ends(
    world: World, lambda_context: Any
) -> None:
    # Given a running job whose LowGPUUtilization rule just found issues
    event = training_job(world, PREFIX + "1", metrics=GOOD, status="InProgress")
    event = with_rules(world, event, {"LowGPUUtilization": "IssuesFound"})

    # When the promoter handles the state change
    result = handler(event, lambda_context)

    # Then people hear of the rule, with where its report is; nothing is registered yet
    assert result["decision"] == "Ignored" and result["rules"] == [
        "Profiler rule LowGPUUtilization: IssuesFound"
    ]
    assert world.packages() == []
    (message,) = world.messages()
    assert message["Message"].splitlines() == [
        f"Profiler rule LowGPUUtilization found issues in training job {PREFIX}1.",
        "Details: LowGPUUtilization: IssuesFound",
        f"Rule evaluation job: arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{PREFIX[:20]}-LowGPUUtil",
        f"Reports: s3://{BUCKET}/profiler/{PREFIX}1/rule-output/",
    ]
    assert world.marker_keys() == [f"evaluation/{PREFIX}1/notifications/profiler-LowGPUUtilization.json"]

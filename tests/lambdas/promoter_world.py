"""The promoter's test world, shared by its test files: the deployment's names and environment, the gate
with the stack's thresholds, and an emulated account (the ``world`` fixture) with helpers that create the
training jobs and outputs SageMaker would."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends

from common.lambda_contract import GateRule
from lambdas.promoter import handler as handler_module
from lambdas.promoter import logic
from lambdas.promoter.settings import Thresholds
from tests.lambdas.conftest import ACCOUNT, REGION

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
    "GATE_RULES": json.dumps(
        [
            {"higher_is_better": True, "metric": "accuracy", "threshold": 0.8},
            {"higher_is_better": True, "metric": "f1", "threshold": 0.75},
            {"higher_is_better": True, "metric": "clip_accuracy", "threshold": 0.8},
        ]
    ),
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
TUNING_JOB = TUNING_PREFIX + "1a2b3c4d"
THRESHOLDS = Thresholds(
    gate_rules=(
        GateRule("accuracy", True, 0.8),
        GateRule("f1", True, 0.75),
        GateRule("clip_accuracy", True, 0.8),
    ),
    max_regression=0.01,
)
# GATE_RULES values the promoter refuses at cold start (those that are JSON lists, the stack refuses at
# synthesis), by what is wrong.
BAD_GATE_RULES = {
    "not-json": "accuracy>=0.8",
    "not-a-list": '{"higher_is_better": true, "metric": "accuracy", "threshold": 0.8}',
    "empty": "[]",
    "duplicate-metric": json.dumps(
        [
            {"higher_is_better": True, "metric": "f1", "threshold": 0.75},
            {"higher_is_better": True, "metric": "f1", "threshold": 0.8},
        ]
    ),
    "bad-name": '[{"higher_is_better": true, "metric": "Test-F1", "threshold": 0.75}]',
    "missing-direction": '[{"metric": "f1", "threshold": 0.75}]',
    "infinite-threshold": '[{"higher_is_better": true, "metric": "f1", "threshold": Infinity}]',
    "bad-fraction": '[{"fraction": "no", "higher_is_better": false, "metric": "wer", "threshold": 0.3}]',
    "unknown-key": '[{"higher_is_better": false, "maximum": 1, "metric": "wer", "threshold": 0.3}]',
}
# What each of them is refused for, in the error that names the variable.
BAD_GATE_RULES_REASONS = {
    "not-json": "not JSON: Expecting value",
    "not-a-list": "not a list of gate rules",
    "empty": "the gate needs at least one rule",
    "duplicate-metric": "one rule per metric: f1 has more than one",
    "bad-name": "gate rule metric 'Test-F1' is not a metric name",
    "missing-direction": "a gate rule is an object with the keys higher_is_better, metric, threshold",
    "infinite-threshold": "gate rule 'f1': threshold inf is not a finite number",
    "bad-fraction": "gate rule 'wer': fraction 'no' is not true or false",
    "unknown-key": "a gate rule is an object with the keys higher_is_better, metric, threshold (and optionally "
    "fraction)",
}
GOOD = {"test_accuracy": 0.91, "test_f1": 0.88, "test_clip_accuracy": 0.93, "test_loss": 0.3}


def gate(
    metrics: Mapping[str, float],
    approved: Sequence[logic.ApprovedModel] = (),
    manual_approval: bool = False,
    thresholds: Thresholds = THRESHOLDS,
) -> logic.Decision:
    return logic.decide(metrics, thresholds=thresholds, approved=approved, manual_approval=manual_approval)


def approved_model(
    version: int = 1, split: str = "test", thresholds: Thresholds = THRESHOLDS, **metrics: float
) -> logic.ApprovedModel:
    """An approved package as the gate reads it back from its metadata (the gated metrics: ``thresholds``')."""
    return logic.approved_model_from_package(
        {
            "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}",
            "ModelPackageVersion": version,
            "CustomerMetadataProperties": {
                "metrics_split": split,
                **{name: str(value) for name, value in metrics.items()},
            },
        },
        thresholds.gate_rules,
    )


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
    hyperparameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Creates a training job and its output; returns the EventBridge event SageMaker would send.

    ``hyperparameters``: the job's, as the launcher encodes them (``{"task": '"asr"'}`` for a job of the asr
    task); none by default, as the default task's jobs have no ``task``.

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
        **({"HyperParameters": dict(hyperparameters)} if hyperparameters else {}),
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


def logged(record: logging.LogRecord) -> dict[str, Any]:
    """The line the handler's logger writes for ``record`` (Powertools' JSON, with the Lambda context)."""
    line: dict[str, Any] = json.loads(handler_module.logger.registered_formatter.format(record))
    return line

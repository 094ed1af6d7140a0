"""The promoter's model package: the CreateModelPackage request, the registration, duplicates and
redeliveries, the registration lease, and the job's output archive read from S3."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from lambdas.promoter import logic
from lambdas.promoter.handler import handler
from lambdas.promoter.orchestration import Clients, RegistrationBusy, promote
from lambdas.promoter.settings import Settings
from tests.lambdas import promoter_world
from tests.lambdas.conftest import request_violations
from tests.lambdas.promoter_world import (
    BUCKET,
    ENVIRONMENT,
    GOOD,
    IMAGE,
    PREFIX,
    TUNING_JOB,
    World,
    approved_model,
    archive,
    gate,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture


# --- the request ------------------------------------------------------------------------------------


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


# --- registration against emulated AWS --------------------------------------------------------------


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
        "task": "classification",  # the job names no task: the default one's, as jobs before tasks
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


# --- the output archive -----------------------------------------------------------------------------


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

"""The promoter's messages: what people are told of a decision, the markers that make each message go
out once, retried when lost, and the Debugger and Profiler rules that found issues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends

from lambdas.promoter import logic
from lambdas.promoter.handler import handler
from tests.lambdas import promoter_world
from tests.lambdas.conftest import ACCOUNT, REGION
from tests.lambdas.promoter_world import (
    BUCKET,
    GOOD,
    PREFIX,
    World,
    gate,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture


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


# --- Debugger and Profiler rules that find issues ---------------------------------------------------


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

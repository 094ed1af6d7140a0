"""Failure notices: alarms and EventBridge rules that tell an encrypted SNS topic what failed and where to look.

Two kinds, one topic per stack:

- **alarms** for failures that show as a metric (messages in a dead-letter queue, Lambda errors and
  throttles): CloudWatch publishes their state changes, ALARM and OK;
- **notices** for failures that are events (a build that failed, a training job stopped at a time limit,
  an endpoint that failed): an EventBridge rule turns the event into a message that names the build, the job
  or the endpoint and where its logs are.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .nag import acknowledge
from .queues import dead_letter_queue

FIVE_MINUTES = cdk.Duration.minutes(5)


def failure_alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: cloudwatch.IMetric,
    description: str,
    topic: sns.ITopic,
    threshold: float = 1,
) -> cloudwatch.Alarm:
    """An alarm at ``threshold`` or more in one period that tells ``topic`` when it fires and when it clears.

    Missing data is not a failure: queues, functions and builds that do nothing publish nothing.
    """
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        metric=metric,
        alarm_description=description,
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    action = actions.SnsAction(topic)
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)
    return alarm


def dead_letter_alarm(
    scope: Construct, construct_id: str, *, queue: sqs.IQueue, what: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """Alarms as soon as one message waits in ``queue``: ``what`` could not be delivered after its retries."""
    return failure_alarm(
        scope,
        construct_id,
        metric=queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
        description=(
            f"{what}: an event was not delivered after its retries and waits in SQS queue "
            f"{queue.queue_name}. Its ERROR_CODE and ERROR_MESSAGE attributes say why: aws sqs receive-message "
            f"--queue-url {queue.queue_url} --attribute-names All --message-attribute-names All. Fix the cause, "
            "send the event again (README, Operations), then delete the message."
        ),
        topic=topic,
    )


class FailureNotices(Construct):
    """EventBridge rules whose events become messages on ``topic``; one role and one dead-letter queue for all.

    EventBridge publishes as ``role`` (an execution role, which EventBridge supports for every target), not as
    its service principal: the role may publish to this topic and use its key. Neither the topic's nor the key's
    policy names EventBridge, so being an EventBridge rule gives no way in; only roles granted these rights do.
    """

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        self.topic = topic
        self.role = iam.Role(
            self,
            "PublishRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}
            ),
            description="AcousticShield failure notices: EventBridge publishes them to the notifications topic",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "CDK's grant to publish to a topic encrypted with a KMS key, on that one key.",
        )
        self.dead_letters = dead_letter_queue(self, target="failure notice rules")
        self.rules: list[events.Rule] = []

    def add(
        self,
        construct_id: str,
        *,
        description: str,
        pattern: events.EventPattern,
        message: str,
    ) -> events.Rule:
        """A rule that publishes ``message`` (with ``events.EventField`` placeholders) for each matching event."""
        rule = events.Rule(
            self,
            construct_id,
            description=description,
            event_pattern=pattern,
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_text(message),
                    role=self.role,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=10,
                    max_event_age=cdk.Duration.hours(6),
                )
            ],
        )
        self.rules.append(rule)
        return rule

    def metrics(self) -> Sequence[cloudwatch.IMetric]:
        """Notices sent per rule (``TriggeredRules``) and deliveries that failed (``FailedInvocations``)."""
        found: list[cloudwatch.IMetric] = []
        for rule in self.rules:
            for metric_name, label in (("TriggeredRules", "sent"), ("FailedInvocations", "failed")):
                found.append(
                    cloudwatch.Metric(
                        namespace="AWS/Events",
                        metric_name=metric_name,
                        dimensions_map={"RuleName": rule.rule_name},
                        statistic="Sum",
                        period=FIVE_MINUTES,
                        label=f"{rule.node.id} {label}",
                    )
                )
        return found

"""Failure notices: alarms and EventBridge rules that tell an encrypted SNS topic what failed and where to look.

Two kinds, one topic per stack:

- **alarms** for failures that show as a metric (messages in a dead-letter queue, Lambda errors and
  throttles): CloudWatch publishes their state changes, ALARM and OK;
- **notices** for failures that are events (a build that failed, a training job stopped at a time limit,
  an endpoint that failed): an EventBridge rule turns the event into a message that names the build, the job
  or the endpoint and where its logs are.

Both publish as their service principal. The topics are encrypted and SSL-only (``enforce_ssl``): their own
topic policy replaces SNS's default one, so each publisher is named in it, and in the policy of the topic's key.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from .queues import dead_letter_queue

FIVE_MINUTES = cdk.Duration.minutes(5)
CLOUDWATCH = "cloudwatch.amazonaws.com"
EVENTBRIDGE = "events.amazonaws.com"
# What an AWS service that publishes to a topic needs of the topic's customer managed key (Amazon SNS,
# "Enable compatibility between event sources from AWS services and encrypted topics").
SERVICE_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
NOTICE_RETRY_ATTEMPTS = 10
NOTICE_MAX_AGE = cdk.Duration.hours(6)


def allow_alarm_notifications(topic: sns.ITopic, key: kms.IKey) -> None:
    """Lets the CloudWatch alarms of this account and region publish to ``topic`` and use its ``key``.

    The alarms' names are generated, hence every alarm of the account and region (``alarm:*``).
    """
    stack = cdk.Stack.of(topic)
    alarms = stack.format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name="*",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarms",
            principals=[iam.ServicePrincipal(CLOUDWATCH)],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": alarms},
            },
        )
    )
    key.grant(iam.ServicePrincipal(CLOUDWATCH), *SERVICE_KEY_ACTIONS)


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


@jsii.implements(events.IRuleTarget)
class _NoticeTarget:
    """``topic`` as a rule target that EventBridge publishes to as itself: no role, and none of the unscoped
    grants that ``aws_events_targets.SnsTopic`` adds; ``FailureNotices`` grants its rules by ARN instead."""

    def __init__(self, topic: sns.ITopic, *, message: str, dead_letters: sqs.IQueue) -> None:
        self.topic = topic
        self.message = message
        self.dead_letters = dead_letters

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(
            arn=self.topic.topic_arn,
            input=events.RuleTargetInput.from_text(self.message),
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letters.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=NOTICE_RETRY_ATTEMPTS,
                maximum_event_age_in_seconds=int(NOTICE_MAX_AGE.to_seconds()),
            ),
            target_resource=self.topic,
        )


class FailureNotices(Construct):
    """EventBridge rules whose events become messages on ``topic``, and one dead-letter queue for all.

    EventBridge publishes as its service principal, with no role on the target: AWS documents resource-based
    policies for SNS targets, and a role may fail to deliver to a topic encrypted with a KMS key. The topic's
    policy lets ``events.amazonaws.com`` publish for these rules only (``aws:SourceArn``); the key's policy lets
    EventBridge use the key, without source conditions, which SNS does not support for EventBridge.
    """

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        self.topic = topic
        self.dead_letters = dead_letter_queue(self, target="failure notice rules")
        self.rules: list[events.Rule] = []
        self._publish: iam.PolicyStatement | None = None
        if topic.master_key is not None:
            topic.master_key.grant(iam.ServicePrincipal(EVENTBRIDGE), *SERVICE_KEY_ACTIONS)

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
            targets=[_NoticeTarget(self.topic, message=message, dead_letters=self.dead_letters)],
        )
        self.rules.append(rule)
        self._allow(rule)
        return rule

    def _allow(self, rule: events.Rule) -> None:
        """``rule`` may publish to the topic and, when delivery fails, to the dead-letter queue."""
        # EventBridge writes to a dead-letter queue as itself, whatever the target: CDK's targets add this.
        self.dead_letters.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"AllowEventRule{cdk.Names.node_unique_id(rule.node)}",
                principals=[iam.ServicePrincipal(EVENTBRIDGE)],
                actions=["sqs:SendMessage"],
                resources=[self.dead_letters.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.rule_arn}},
            )
        )
        rules = [r.rule_arn for r in self.rules]
        if self._publish is None:
            self._publish = iam.PolicyStatement(
                sid=f"EventBridge{self.node.id}",
                principals=[iam.ServicePrincipal(EVENTBRIDGE)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rules}},
            )
            self.topic.add_to_resource_policy(self._publish)
        else:
            self._publish.add_condition("ArnEquals", {"aws:SourceArn": rules})

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

"""The Serving stack's SNS topics: endpoint alarms, and async results when the endpoint is async."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..operations import allow_alarm_notifications


@dataclass(frozen=True, kw_only=True)
class NotificationsProps:
    """``async_results``: also create the success and error topics of an async endpoint."""

    async_results: bool


class ServingNotifications(Construct):
    """Encrypted topics with their own key: CloudWatch alarms publish to ``alarms``, SageMaker (as the model's
    role) to the async topics.

    A key of this stack, not the Data stack's: CloudWatch alarm actions need ``cloudwatch.amazonaws.com``
    in the key policy, and the Data key stays untouched by the serving lifecycle.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: NotificationsProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="AcousticShield endpoint notifications",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        self.alarms = sns.Topic(self, "Alarms", master_key=self.key, enforce_ssl=True)
        allow_alarm_notifications(self.alarms, self.key)
        self.async_success: sns.Topic | None = None
        self.async_error: sns.Topic | None = None
        if props.async_results:
            self.async_success = sns.Topic(self, "AsyncSuccess", master_key=self.key, enforce_ssl=True)
            self.async_error = sns.Topic(self, "AsyncError", master_key=self.key, enforce_ssl=True)

    @property
    def async_topics(self) -> tuple[sns.ITopic, ...]:
        return tuple(t for t in (self.async_success, self.async_error) if t is not None)

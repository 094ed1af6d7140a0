"""Where trained models are registered, and where failures are announced."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct


@dataclass(frozen=True, kw_only=True)
class RegistryProps:
    """``group_name`` is a contract with the promoter and the Serving stack, hence a physical name."""

    group_name: str


class ModelRegistry(Construct):
    """The model package group, and the encrypted SNS topic that hears about every training outcome.

    The topic has a key of its own, not the Data stack's: CloudWatch alarms and EventBridge rules publish
    failures into it, and their grants belong on a key that encrypts notifications and nothing else.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: RegistryProps) -> None:
        super().__init__(scope, construct_id)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=props.group_name,
            model_package_group_description="AcousticShield audio-event classifiers",
        )
        self.key = kms.Key(
            self,
            "NotificationsKey",
            description="AcousticShield training notifications",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(7),
        )
        self.topic = sns.Topic(self, "Notifications", master_key=self.key, enforce_ssl=True)

    def grant_notify(self, grantee: iam.IGrantable) -> None:
        """What a publisher needs besides ``sns:Publish``: data keys of the topic's key."""
        self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey")

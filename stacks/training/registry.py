"""Where trained models are registered, and where failures are announced."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct


@dataclass(frozen=True, kw_only=True)
class RegistryProps:
    """``group_name`` is a contract with the promoter and the Serving stack, hence a physical name."""

    group_name: str
    key: kms.IKey


class ModelRegistry(Construct):
    """The model package group, and the encrypted SNS topic that hears about every training outcome."""

    def __init__(self, scope: Construct, construct_id: str, *, props: RegistryProps) -> None:
        super().__init__(scope, construct_id)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=props.group_name,
            model_package_group_description="AcousticShield audio-event classifiers",
        )
        self.topic = sns.Topic(self, "Notifications", master_key=props.key, enforce_ssl=True)

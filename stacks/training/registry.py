"""Where trained models are registered, and where failures are announced."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct


@dataclass(frozen=True, kw_only=True)
class RegistryProps:
    """``group_name`` is a contract with the promoter and the Serving stack, hence a physical name."""

    group_name: str
    job_name_prefix: str
    key: kms.IKey


class ModelRegistry(Construct):
    """The model package group, and an encrypted SNS topic told about every failed training job."""

    def __init__(self, scope: Construct, construct_id: str, *, props: RegistryProps) -> None:
        super().__init__(scope, construct_id)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=props.group_name,
            model_package_group_description="AcousticShield audio-event classifiers",
        )
        self.topic = sns.Topic(self, "Notifications", master_key=props.key, enforce_ssl=True)
        self.failures = events.Rule(
            self,
            "TrainingFailed",
            description="Announce failed AcousticShield training jobs",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={
                    "TrainingJobName": [{"prefix": props.job_name_prefix}],
                    "TrainingJobStatus": ["Failed"],
                },
            ),
            targets=[
                targets.SnsTopic(
                    self.topic,
                    message=events.RuleTargetInput.from_text(
                        f"Training job {events.EventField.from_path('$.detail.TrainingJobName')} failed: "
                        f"{events.EventField.from_path('$.detail.FailureReason')}"
                    ),
                )
            ],
        )

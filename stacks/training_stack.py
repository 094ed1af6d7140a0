"""The training lifecycle: execution role, source bundle, launcher + schedule, staging, registry."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from .bundling import ML_CODE, TarGzBundler, bundling
from .config import AppConfig, stack_name
from .data_stack import DataStack
from .images import huggingface_image
from .training.deployer import DeployerProps, ModelDeployer
from .training.execution_role import ExecutionRoleProps, TrainingExecutionRole
from .training.launcher import LauncherProps, TrainingLauncher
from .training.promoter import ModelPromoter, PromoterProps
from .training.registry import ModelRegistry, RegistryProps
from .training.stager import DatasetStager, StagerProps


def job_name_prefix(config: AppConfig) -> str:
    """Training jobs are named ``<name_prefix>-train-<trigger>``; every right is scoped to this."""
    return f"{config.name_prefix}-train-"


class TrainingStack(cdk.Stack):
    """Wires the training constructs to the Data stack's bucket and key."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefix = job_name_prefix(config)
        shared = data.shared(self)
        image = huggingface_image(
            self,
            kind="training",
            version=config.training.image_version,
            instance_type=config.training.instance_type,
        )
        # ml_code/ as SageMaker's sourcedir.tar.gz: byte-identical for identical sources.
        self.source_dir = s3_assets.Asset(
            self,
            "SourceDir",
            path=str(ML_CODE),
            bundling=bundling(TarGzBundler(ML_CODE, "sourcedir.tar.gz"), cdk.BundlingOutput.ARCHIVED),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )
        self.execution_role = TrainingExecutionRole(
            self,
            "ExecutionRole",
            props=ExecutionRoleProps(
                bucket=shared.bucket, key=shared.key, image=image, source=self.source_dir
            ),
        ).role
        self.launcher = TrainingLauncher(
            self,
            "Launcher",
            props=LauncherProps(
                job_name_prefix=prefix,
                execution_role=self.execution_role,
                image_uri=image.uri,
                source_dir=self.source_dir.s3_object_url,
                bucket=shared.bucket,
                key=shared.key,
                dataset_prefix=config.dataset_prefix,
                training=config.training,
                schedule=config.schedule,
                tags=config.tags,
            ),
        )
        self.stager = DatasetStager(
            self,
            "DatasetStager",
            props=StagerProps(
                bucket=shared.bucket,
                key=shared.key,
                dataset_prefix=config.dataset_prefix,
                staging=config.staging,
            ),
        )
        self.registry = ModelRegistry(
            self,
            "Registry",
            props=RegistryProps(group_name=config.name_prefix, key=shared.key),
        )
        serving_image = huggingface_image(
            self,
            kind="inference",
            version=config.serving.image_version,
            instance_type=config.serving.instance_type,
        )
        self.promoter = ModelPromoter(
            self,
            "Promoter",
            props=PromoterProps(
                group_name=config.name_prefix,
                job_name_prefix=prefix,
                quality=config.quality,
                topic=self.registry.topic,
                bucket=shared.bucket,
                key=shared.key,
                inference_image=serving_image.uri,
                serving_instance_type=config.serving.instance_type,
            ),
        )
        self.deployer = ModelDeployer(
            self,
            "Deployer",
            props=DeployerProps(
                env_name=config.env_name,
                stack_name=stack_name(config, "Serving"),
                group_name=config.name_prefix,
                key=shared.key,
            ),
        )

        cdk.CfnOutput(self, "LauncherFunctionName", value=self.launcher.function.function_name)
        cdk.CfnOutput(self, "StagingProjectName", value=self.stager.project.project_name)
        cdk.CfnOutput(self, "ModelPackageGroupName", value=config.name_prefix)
        cdk.CfnOutput(self, "NotificationsTopicArn", value=self.registry.topic.topic_arn)
        cdk.CfnOutput(self, "TrainingImage", value=image.uri)
        cdk.CfnOutput(self, "DeployProjectName", value=self.deployer.project.project_name)

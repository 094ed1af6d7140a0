"""The training lifecycle: execution role, source bundle, launcher + schedule (training and tuning jobs),
staging, registry, promotion."""

from __future__ import annotations

import hashlib
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from common import lambda_contract
from common.contract import DEBUG_PREFIX, PROFILER_PREFIX

from .assets import ROOT, training_source_dir
from .bundling import TarGzBundler, bundling
from .config import AppConfig, stack_name
from .data_stack import DataStack
from .images import huggingface_image, rule_evaluator_image
from .training.deployer import DeployerProps, ModelDeployer
from .training.execution_role import ExecutionRoleProps, TrainingExecutionRole
from .training.launcher import LauncherProps, TrainingLauncher
from .training.operations import (
    OperationsProps,
    TrainingOperations,
    WatchedBuild,
    WatchedFunction,
    WatchedQueue,
)
from .training.promoter import ModelPromoter, PromoterProps
from .training.registry import ModelRegistry, RegistryProps
from .training.stager import DatasetStager, StagerProps


def job_name_prefix(config: AppConfig) -> str:
    """Training jobs are named ``<name_prefix>-train-<trigger>``; every right is scoped to this."""
    return f"{config.name_prefix}-train-"


def tuning_job_prefix(config: AppConfig) -> str:
    """Tuning jobs are named ``<name_prefix>-hpo-<8 characters>`` and their trials after them.

    A name prefix too long for that (over 19 characters) keeps its first characters and a digest of the
    whole, so the prefix still fits and stays unique to this app.
    """
    suffix = "-hpo-"
    # SageMaker allows 32 characters; the launcher ends each name with 8 of the trigger's digest.
    room = lambda_contract.TUNING_NAME_LIMIT - lambda_contract.TUNING_SUFFIX_LENGTH - len(suffix)
    name = config.name_prefix
    if len(name) > room:
        digest = hashlib.sha256(name.encode()).hexdigest()[:4]
        name = f"{name[: room - len(digest)]}{digest}"
    return f"{name}{suffix}"


class TrainingStack(cdk.Stack):
    """Wires the training constructs to the Data stack's bucket and key."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefix = job_name_prefix(config)
        tuning_prefix = tuning_job_prefix(config)
        rules = config.training.rules
        shared = data.shared(self)
        image = huggingface_image(
            self,
            kind="training",
            version=config.training.image_version,
            instance_type=config.training.instance_type,
        )
        # The training source dir (assets.training_source_dir) as SageMaker's sourcedir.tar.gz: byte-identical
        # for identical sources.
        self.source_dir = s3_assets.Asset(
            self,
            "SourceDir",
            path=str(ROOT / "training"),
            bundling=bundling(
                TarGzBundler(training_source_dir(), "sourcedir.tar.gz"), cdk.BundlingOutput.ARCHIVED
            ),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )
        # Only a deployment whose jobs carry rules looks up (and depends on) the rule evaluator image.
        rule_image = rule_evaluator_image(self) if rules.any_rules else None
        self.execution_role = TrainingExecutionRole(
            self,
            "ExecutionRole",
            props=ExecutionRoleProps(
                bucket=shared.bucket,
                key=shared.key,
                image=image,
                source=self.source_dir,
                rule_image=rule_image,
                debug_outputs=bool(rules.debugger_rules),
                profiler_outputs=rules.profiler_enabled,
            ),
        ).role
        self.launcher = TrainingLauncher(
            self,
            "Launcher",
            props=LauncherProps(
                job_name_prefix=prefix,
                tuning_job_name_prefix=tuning_prefix,
                execution_role=self.execution_role,
                image_uri=image.uri,
                source_dir=self.source_dir.s3_object_url,
                bucket=shared.bucket,
                key=shared.key,
                dataset_prefix=config.dataset_prefix,
                training=config.training,
                schedule=config.schedule,
                tags=config.tags,
                rule_image_uri=rule_image.uri if rule_image else None,
                debug_prefix=DEBUG_PREFIX,
                profiler_prefix=PROFILER_PREFIX,
                reserved_concurrency=config.operations.reserved_concurrency or None,
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
            props=RegistryProps(group_name=config.name_prefix),
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
                tuning_job_name_prefix=tuning_prefix,
                quality=config.quality,
                topic=self.registry.topic,
                bucket=shared.bucket,
                key=shared.key,
                inference_image=serving_image.uri,
                serving_instance_type=config.serving.instance_type,
                reserved_concurrency=config.operations.reserved_concurrency or None,
            ),
        )
        self.registry.grant_notify(self.promoter.handler.role)
        self.deployer = ModelDeployer(
            self,
            "Deployer",
            props=DeployerProps(
                env_name=config.env_name,
                stack_name=stack_name(config, "Serving"),
                group_name=config.name_prefix,
                key=shared.key,
                bucket=shared.bucket,
                endpoint_name_prefix=f"{config.name_prefix}-",
                verify=config.operations.verify_deployments,
            ),
        )
        self.operations: TrainingOperations | None = None
        if config.operations.failure_alarms:
            self.operations = TrainingOperations(
                self,
                "Operations",
                props=OperationsProps(
                    job_name_prefix=prefix,
                    tuning_job_name_prefix=tuning_prefix,
                    topic=self.registry.topic,
                    key=self.registry.key,
                    functions=[
                        WatchedFunction("Launcher", "no training job started", self.launcher.handler),
                        WatchedFunction("Promoter", "a finished job was not gated", self.promoter.handler),
                    ],
                    queues=[
                        WatchedQueue("Schedule", "schedule → launcher", self.launcher.dead_letters),
                        WatchedQueue("TrainingFinished", "job state → promoter", self.promoter.dead_letters),
                        WatchedQueue(
                            "Approval", "approved package → deploy build", self.deployer.dead_letters
                        ),
                    ],
                    builds=[
                        WatchedBuild("Staging", self.stager.project, self.stager.log_group),
                        WatchedBuild("Deploy", self.deployer.project, self.deployer.log_group),
                    ],
                ),
            )

        cdk.CfnOutput(self, "LauncherFunctionName", value=self.launcher.function.function_name)
        cdk.CfnOutput(self, "StagingProjectName", value=self.stager.project.project_name)
        cdk.CfnOutput(self, "ModelPackageGroupName", value=config.name_prefix)
        cdk.CfnOutput(self, "NotificationsTopicArn", value=self.registry.topic.topic_arn)
        cdk.CfnOutput(self, "TrainingImage", value=image.uri)
        cdk.CfnOutput(self, "DeployProjectName", value=self.deployer.project.project_name)
        if self.operations is not None:
            cdk.CfnOutput(self, "OperationsDashboardName", value=self.operations.dashboard.dashboard_name)

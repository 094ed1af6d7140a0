"""The training lifecycle: execution role, source bundle, launcher + schedule (training and tuning jobs),
staging, registry, promotion."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from common import lambda_contract
from common.contract import DEBUG_PREFIX, PROFILER_PREFIX

from .assets import ROOT, training_source_dir
from .bundling import TarGzBundler, bundling
from .config import AppConfig, runtime_name, stack_name
from .data_stack import DataStack, SharedData
from .images import ImageRef, huggingface_image, rule_evaluator_image
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


def _fitted(name: str, room: int) -> str:
    """``name``, or, when it is longer than ``room``, its first characters and 4 of its digest: a prefix that
    fits and stays unique to this app."""
    if len(name) <= room:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:4]
    return f"{name[: room - len(digest)]}{digest}"


def job_name_prefix(config: AppConfig) -> str:
    """Training jobs are named ``<runtime name>-train-<trigger>`` (``runtime_name``: the name prefix and the
    task's suffix); every right is scoped to this.

    A runtime name too long for that (over 32 characters: only a task's suffix makes one) keeps its first
    characters and a digest of the whole, so the prefix still fits and stays unique to this app.
    """
    suffix = "-train-"
    # SageMaker allows 63 characters; the launcher ends each name with a timestamp and the trigger's digest.
    room = lambda_contract.JOB_NAME_LIMIT - lambda_contract.JOB_SUFFIX_LENGTH - len(suffix)
    return f"{_fitted(runtime_name(config), room)}{suffix}"


def tuning_job_prefix(config: AppConfig) -> str:
    """Tuning jobs are named ``<runtime name>-hpo-<8 characters>`` and their trials after them.

    A runtime name too long for that (over 19 characters) keeps its first characters and a digest of the
    whole, so the prefix still fits and stays unique to this app.
    """
    suffix = "-hpo-"
    # SageMaker allows 32 characters; the launcher ends each name with 8 of the trigger's digest.
    room = lambda_contract.TUNING_NAME_LIMIT - lambda_contract.TUNING_SUFFIX_LENGTH - len(suffix)
    return f"{_fitted(runtime_name(config), room)}{suffix}"


@dataclass(frozen=True)
class _Prefixes:
    """The name prefixes of this app's training jobs and tuning jobs: every right is scoped to them."""

    jobs: str
    tuning_jobs: str


class TrainingStack(cdk.Stack):
    """Wires the training constructs to the Data stack's bucket and key."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        prefixes = _Prefixes(jobs=job_name_prefix(config), tuning_jobs=tuning_job_prefix(config))
        shared = data.shared(self)
        image = huggingface_image(
            self,
            kind="training",
            version=config.training.image_version,
            instance_type=config.training.instance_type,
        )
        self.source_dir = self._source_dir()
        # Only a deployment whose jobs carry rules looks up (and depends on) the rule evaluator image.
        rule_image = rule_evaluator_image(self) if config.training.rules.any_rules else None
        self.execution_role = self._execution_role(config, shared, image, rule_image)
        self.launcher = self._launcher(config, shared, prefixes, image, rule_image)
        self.stager = self._stager(config, shared)
        self.registry = ModelRegistry(self, "Registry", props=RegistryProps(group_name=runtime_name(config)))
        self.promoter = self._promoter(config, shared, prefixes)
        self.registry.grant_notify(self.promoter.handler.role)
        self.deployer = self._deployer(config, shared)
        self.operations: TrainingOperations | None = (
            self._operations(prefixes) if config.operations.failure_alarms else None
        )
        self._outputs(config, image)

    def _source_dir(self) -> s3_assets.Asset:
        """The training source dir (assets.training_source_dir) as SageMaker's sourcedir.tar.gz:
        byte-identical for identical sources."""
        return s3_assets.Asset(
            self,
            "SourceDir",
            path=str(ROOT / "training"),
            bundling=bundling(
                TarGzBundler(training_source_dir(), "sourcedir.tar.gz"), cdk.BundlingOutput.ARCHIVED
            ),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )

    def _execution_role(
        self, config: AppConfig, shared: SharedData, image: ImageRef, rule_image: ImageRef | None
    ) -> iam.Role:
        rules = config.training.rules
        return TrainingExecutionRole(
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

    def _launcher(
        self,
        config: AppConfig,
        shared: SharedData,
        prefixes: _Prefixes,
        image: ImageRef,
        rule_image: ImageRef | None,
    ) -> TrainingLauncher:
        return TrainingLauncher(
            self,
            "Launcher",
            props=LauncherProps(
                job_name_prefix=prefixes.jobs,
                tuning_job_name_prefix=prefixes.tuning_jobs,
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
                task=config.task,
            ),
        )

    def _stager(self, config: AppConfig, shared: SharedData) -> DatasetStager:
        return DatasetStager(
            self,
            "DatasetStager",
            props=StagerProps(
                bucket=shared.bucket,
                key=shared.key,
                dataset_prefix=config.dataset_prefix,
                staging=config.staging,
                task=config.task,
            ),
        )

    def _promoter(self, config: AppConfig, shared: SharedData, prefixes: _Prefixes) -> ModelPromoter:
        """Gates finished jobs and registers their models, to be served on the configured serving image."""
        serving_image = huggingface_image(
            self,
            kind="inference",
            version=config.serving.image_version,
            instance_type=config.serving.instance_type,
        )
        return ModelPromoter(
            self,
            "Promoter",
            props=PromoterProps(
                group_name=runtime_name(config),
                job_name_prefix=prefixes.jobs,
                tuning_job_name_prefix=prefixes.tuning_jobs,
                quality=config.quality,
                topic=self.registry.topic,
                bucket=shared.bucket,
                key=shared.key,
                inference_image=serving_image.uri,
                serving_instance_type=config.serving.instance_type,
                reserved_concurrency=config.operations.reserved_concurrency or None,
                task=config.task,
            ),
        )

    def _deployer(self, config: AppConfig, shared: SharedData) -> ModelDeployer:
        return ModelDeployer(
            self,
            "Deployer",
            props=DeployerProps(
                env_name=config.env_name,
                stack_name=stack_name(config, "Serving"),
                group_name=runtime_name(config),
                key=shared.key,
                bucket=shared.bucket,
                endpoint_name_prefix=f"{runtime_name(config)}-",
                verify=config.operations.verify_deployments,
                task=config.task,
            ),
        )

    def _operations(self, prefixes: _Prefixes) -> TrainingOperations:
        """Failure alarms on the functions, dead-letter queues and builds above, and their dashboard."""
        return TrainingOperations(
            self,
            "Operations",
            props=OperationsProps(
                job_name_prefix=prefixes.jobs,
                tuning_job_name_prefix=prefixes.tuning_jobs,
                topic=self.registry.topic,
                key=self.registry.key,
                functions=[
                    WatchedFunction("Launcher", "no training job started", self.launcher.handler),
                    WatchedFunction("Promoter", "a finished job was not gated", self.promoter.handler),
                ],
                queues=[
                    WatchedQueue("Schedule", "schedule → launcher", self.launcher.dead_letters),
                    WatchedQueue("TrainingFinished", "job state → promoter", self.promoter.dead_letters),
                    WatchedQueue("Approval", "approved package → deploy build", self.deployer.dead_letters),
                ],
                builds=[
                    WatchedBuild("Staging", self.stager.project, self.stager.log_group),
                    WatchedBuild("Deploy", self.deployer.project, self.deployer.log_group),
                ],
            ),
        )

    def _outputs(self, config: AppConfig, image: ImageRef) -> None:
        cdk.CfnOutput(self, "LauncherFunctionName", value=self.launcher.function.function_name)
        cdk.CfnOutput(self, "StagingProjectName", value=self.stager.project.project_name)
        cdk.CfnOutput(self, "ModelPackageGroupName", value=runtime_name(config))
        cdk.CfnOutput(self, "NotificationsTopicArn", value=self.registry.topic.topic_arn)
        cdk.CfnOutput(self, "TrainingImage", value=image.uri)
        cdk.CfnOutput(self, "DeployProjectName", value=self.deployer.project.project_name)
        if self.operations is not None:
            cdk.CfnOutput(self, "OperationsDashboardName", value=self.operations.dashboard.dashboard_name)

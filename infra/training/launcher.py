"""The launcher Lambda, its least-privilege rights and the retraining schedule that fires it.

It starts single training jobs (with the configured Debugger and Profiler rules) and hyperparameter
tuning jobs; every SageMaker right is scoped to this app's training-job or tuning-job name prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

import tasks
from common import lambda_contract
from common.contract import CHECKPOINTS_PREFIX, DATASETS_PREFIX, LOCKS_PREFIX, MODELS_PREFIX, TASK_ARGUMENT
from common.contract import MANIFEST_FILE as MANIFEST
from common.lambda_contract import TUNING_FIELDS, LauncherEnvironment

from ..config import ScheduleConfig, TrainingConfig, metric_line_names, tuning_objective
from ..nag import acknowledge, finding
from ..python_function import PythonFunction, PythonFunctionProps
from ..queues import dead_letter_queue


@dataclass(frozen=True, kw_only=True)
class LauncherProps:
    """``job_name_prefix`` and ``tuning_job_name_prefix`` scope every SageMaker right; ``source_dir`` is
    the sourcedir.tar.gz URL; ``rule_image_uri`` the Debugger rule evaluator image, needed when
    ``training.rules`` has rules (default none); ``debug_prefix`` / ``profiler_prefix`` where rules write;
    ``task`` the task the jobs train (a task of tasks/)."""

    job_name_prefix: str
    tuning_job_name_prefix: str
    execution_role: iam.IRole
    image_uri: str
    source_dir: str
    bucket: s3.IBucket
    key: kms.IKey
    dataset_prefix: str
    training: TrainingConfig
    schedule: ScheduleConfig
    tags: dict[str, str]
    rule_image_uri: str | None = None
    debug_prefix: str = ""
    profiler_prefix: str = ""
    reserved_concurrency: int | None = None  # None: the account's unreserved pool
    task: str = tasks.DEFAULT_TASK


def launch_lock_key(task: str) -> str:
    """The launcher's lease, one launch at a time (lambdas/lease.py), per task: ``locks/launcher.json`` for
    the default task, ``locks/launcher-<task>.json`` for another, so that the launchers of two tasks never
    skip each other's launches."""
    return f"{LOCKS_PREFIX}launcher{tasks.runtime_suffix(task)}.json"


LAUNCH_LOCK_KEY = launch_lock_key(tasks.DEFAULT_TASK)  # the default task's


def _hyperparameters(props: LauncherProps) -> dict[str, str]:
    """The jobs' static hyperparameters: the configured ones, and ``task`` for a task other than the default
    one (train.py's default is the default task)."""
    arguments = props.training.hyperparameters.as_arguments()
    if props.task != tasks.DEFAULT_TASK:
        arguments[TASK_ARGUMENT] = props.task
    return arguments


def _tuning(props: LauncherProps) -> dict[str, Any]:
    """TUNING: the configured search, its objective resolved for the task and the objective's direction,
    which the default task's TUNING leaves out where TUNING_OBJECTIVES (its objectives, which predate the
    field) gives it: that TUNING stays as it always was."""
    tuning = props.training.tuning
    objective, direction = tuning_objective(tuning, tasks.load(props.task))
    fields = {name: getattr(tuning, name) for name in TUNING_FIELDS} | {"objective": objective}
    predates = (
        props.task == tasks.DEFAULT_TASK and lambda_contract.TUNING_OBJECTIVES.get(objective) == direction
    )
    if not predates:
        fields[lambda_contract.TUNING_OBJECTIVE_TYPE] = direction
    return fields


def _environment(props: LauncherProps) -> dict[str, str]:
    """What the handler validates at cold start (lambdas/launcher/settings.py, LaunchSettings)."""
    t, rules = props.training, props.training.rules
    if rules.any_rules and not props.rule_image_uri:
        raise ValueError("training jobs carry rules: LauncherProps.rule_image_uri is required")
    return LauncherEnvironment(
        job_name_prefix=props.job_name_prefix,
        execution_role_arn=props.execution_role.role_arn,
        training_image=props.image_uri,
        source_dir=props.source_dir,
        data_bucket=props.bucket.bucket_name,
        dataset_prefix=props.dataset_prefix,
        models_prefix=MODELS_PREFIX,
        checkpoints_prefix=CHECKPOINTS_PREFIX,
        launch_lock_key=launch_lock_key(props.task),
        kms_key_arn=props.key.key_arn,
        instance_type=t.instance_type,
        instance_count=t.instance_count,
        volume_size_gb=t.volume_size_gb,
        use_spot=t.use_spot,
        max_runtime_seconds=t.max_runtime_seconds,
        max_wait_seconds=t.max_wait_seconds,
        hyperparameters=_hyperparameters(props),
        tags=props.tags,
        retrain_debounce_minutes=props.schedule.debounce_minutes,
        tuning_job_prefix=props.tuning_job_name_prefix,
        tuning=_tuning(props),
        profiler_enabled=rules.profiler_enabled,
        debugger_rules=list(rules.debugger_rules) if rules.debugger_rules else None,
        debug_prefix=props.debug_prefix if rules.debugger_rules else None,
        profiler_rules=list(rules.profiler_rules) if rules.profiler_enabled else None,
        profiling_interval_ms=rules.profiling_interval_ms if rules.profiler_enabled else None,
        profiler_prefix=props.profiler_prefix if rules.profiler_enabled else None,
        rule_evaluator_image=props.rule_image_uri if rules.any_rules else None,
        metric_names=(
            list(metric_line_names(tasks.load(props.task))) if props.task != tasks.DEFAULT_TASK else None
        ),
    ).variables()


class TrainingLauncher(Construct):
    """Starts at most one training or tuning job per trigger; skips while one of this app is running."""

    def __init__(self, scope: Construct, construct_id: str, *, props: LauncherProps) -> None:
        super().__init__(scope, construct_id)
        self.handler = self._handler(props)
        self.function = self.handler.function
        role = self.handler.role
        job_arn = _sagemaker_arn(f"training-job/{props.job_name_prefix}*")
        tuning_job_arn = _sagemaker_arn(f"hyper-parameter-tuning-job/{props.tuning_job_name_prefix}*")
        _grant_jobs(role, props, job_arn=job_arn, tuning_job_arn=tuning_job_arn)
        _grant_data(role, props)
        self._acknowledge_job_names(role, job_arn=job_arn, tuning_job_arn=tuning_job_arn)

        # Failed deliveries (after retries) land here instead of vanishing.
        self.dead_letters = dead_letter_queue(self, target="schedule target")
        self.schedule = self._schedule(props)
        self.new_data: events.Rule | None = self._new_data(props) if props.schedule.on_new_data else None

    def _handler(self, props: LauncherProps) -> PythonFunction:
        return PythonFunction(
            self,
            "Handler",
            props=PythonFunctionProps(
                package="launcher",
                # The hyperparameters an event may set and the tuning grammar (the contracts), beside the code.
                description="Starts an AcousticShield training job (schedule or manual invocation)",
                # One launch at a time comes from the lease at LAUNCH_LOCK_KEY, not from this.
                reserved_concurrency=props.reserved_concurrency,
                wildcard_reason="sagemaker:ListTrainingJobs and ListHyperParameterTuningJobs support no "
                "resource-level permissions; they only list names.",
                environment=_environment(props),
            ),
        )

    def _acknowledge_job_names(self, role: iam.Role, *, job_arn: str, tuning_job_arn: str) -> None:
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{finding(self, job_arn)}]",
            "Job names are made per trigger at run time; the prefix confines them to this app.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{finding(self, tuning_job_arn)}]",
            "Tuning job names are made per trigger at run time; the prefix confines them to this app.",
        )

    def _schedule(self, props: LauncherProps) -> events.Rule:
        return events.Rule(
            self,
            "Schedule",
            description="Retrain the AcousticShield model",
            schedule=events.Schedule.expression(props.schedule.expression),
            enabled=props.schedule.enabled,
            targets=[self._target()],
        )

    def _new_data(self, props: LauncherProps) -> events.Rule:
        """New data: staging writes datasets/<name>/manifest.jsonl last, so its creation means the whole
        dataset is there. The bucket sends its object events to EventBridge (Data stack)."""
        return events.Rule(
            self,
            "NewData",
            description="Retrain the AcousticShield model when a dataset is staged",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [props.bucket.bucket_name]},
                    "object": {"key": events.Match.wildcard(f"{DATASETS_PREFIX}*/{MANIFEST}")},
                },
            ),
            targets=[self._target()],
        )

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function,
            dead_letter_queue=self.dead_letters,
            retry_attempts=2,
            max_event_age=cdk.Duration.hours(2),
        )


def _sagemaker_arn(resource: str) -> str:
    """The ARN of a SageMaker ``resource`` (``<type>/<name>``) in this stack's account and region."""
    return f"arn:{cdk.Aws.PARTITION}:sagemaker:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:{resource}"


def _grant_jobs(role: iam.Role, props: LauncherProps, *, job_arn: str, tuning_job_arn: str) -> None:
    """Start and follow this app's training and tuning jobs, find running ones, pass the jobs their role."""
    role.add_to_policy(
        iam.PolicyStatement(
            sid="StartOwnTrainingJobs",
            actions=["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:AddTags"],
            resources=[job_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="StartOwnTuningJobs",
            actions=[
                "sagemaker:CreateHyperParameterTuningJob",
                "sagemaker:DescribeHyperParameterTuningJob",
                "sagemaker:AddTags",
            ],
            resources=[tuning_job_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="FindRunningJobs",
            actions=["sagemaker:ListTrainingJobs", "sagemaker:ListHyperParameterTuningJobs"],
            resources=["*"],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PassExecutionRole",
            actions=["iam:PassRole"],
            resources=[props.execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
    )


def _grant_data(role: iam.Role, props: LauncherProps) -> None:
    """Find the dataset's channels, hold the launch lease, use the data key and let SageMaker encrypt the
    jobs' volumes with it."""
    role.add_to_policy(
        iam.PolicyStatement(
            sid="FindChannels",
            actions=["s3:ListBucket"],
            resources=[props.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*"]}},
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="HoldLaunchLease",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resources=[props.bucket.arn_for_objects(launch_lock_key(props.task))],
        )
    )
    props.key.grant(role, "kms:Decrypt", "kms:GenerateDataKey")
    role.add_to_policy(
        iam.PolicyStatement(
            sid="EncryptJobVolumes",
            actions=["kms:CreateGrant", "kms:DescribeKey"],
            resources=[props.key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
    )

"""The SageMaker model: a registered model package or a model archive, and the role it runs as."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from common import contract
from common.contract import (
    ASYNC_FAILURE_PREFIX,
    ASYNC_INPUT_PREFIX,
    ASYNC_OUTPUT_PREFIX,
    DATACAPTURE_PREFIX,
    MODELS_PREFIX,
)

from ..config import ServingConfig
from ..images import ImageRef
from ..nag import acknowledge_findings, finding, objects_finding
from ..sagemaker_runtime import UNSCOPED_REASON, log_group_arn, runtime_statements
from .placement import digest

# Where SageMaker writes the logs of batch transform jobs (streams per job and instance).
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"


def container_environment(serving: ServingConfig) -> dict[str, str]:
    """What the container and ``serving/inference.py`` read at start-up."""
    environment = {
        **contract.HANDLER_ENVIRONMENT,
        "SAGEMAKER_REGION": cdk.Aws.REGION,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        contract.ENV_WORKERS: str(serving.workers),
        contract.ENV_FAST_PATH: serving.fast_path,
        contract.ENV_MAX_AUDIO_SECONDS: f"{serving.max_audio_seconds:g}",
    }
    if serving.threads:
        environment[contract.ENV_THREADS] = str(serving.threads)
    return environment


@dataclass(frozen=True, kw_only=True)
class ModelProps:
    """``image``: the inference image (used for a model archive; a package names its own).

    ``endpoint_name`` scopes the role's log rights; ``async_topics`` (async mode) are the topics
    SageMaker publishes results to as this role.
    """

    serving: ServingConfig
    bucket: s3.IBucket
    key: kms.IKey
    image: ImageRef
    endpoint_name: str
    async_topics: tuple[sns.ITopic, ...] = ()


class ServingModel(Construct):
    """A ``CfnModel`` whose logical ID changes with its content, so a new model means a new resource."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ModelProps) -> None:
        super().__init__(scope, construct_id)
        serving = props.serving
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="AcousticShield endpoint: reads models, pulls the inference image",
        )
        self._grant(props)

        environment = container_environment(serving)
        if serving.model_package_arn:
            container = sagemaker.CfnModel.ContainerDefinitionProperty(
                model_package_name=serving.model_package_arn, environment=environment
            )
            source = {"package": serving.model_package_arn}
        else:
            container = sagemaker.CfnModel.ContainerDefinitionProperty(
                image=props.image.uri, model_data_url=serving.model_data_url, environment=environment
            )
            source = {"image": props.image.uri, "model_data_url": serving.model_data_url}
        revision = digest(self, {**source, "environment": environment, "role": self.role.role_arn})
        # No network isolation: the inference toolkit installs code/requirements.txt from PyPI at start-up.
        self.model = sagemaker.CfnModel(
            self,
            f"Revision{revision}",
            execution_role_arn=self.role.role_arn,
            containers=[container],
        )
        # The model is created only once its role may read the archive and pull the image.
        default_policy = self.role.node.try_find_child("DefaultPolicy")
        if default_policy is not None:
            self.model.node.add_dependency(default_policy)
        self.revision = revision

    def _grant(self, props: ModelProps) -> None:
        for statement in _role_statements(props, log_group=self._log_group(props.endpoint_name)):
            self.role.add_to_policy(statement)
        for topic in props.async_topics:
            if topic.master_key is not None:
                topic.master_key.grant(self.role, "kms:Decrypt", "kms:GenerateDataKey")
        self._acknowledge_findings(props)

    def _acknowledge_findings(self, props: ModelProps) -> None:
        """Why each wildcard the role keeps is needed: object and log stream names chosen at run time."""
        serving = props.serving

        def objects(prefix: str) -> str:
            return objects_finding(self, props.bucket, prefix)

        findings = {
            "Resource::*": UNSCOPED_REASON,
            objects(MODELS_PREFIX): "Model archives live under models/<job>/output/ for job names chosen "
            "at run time; the deployed archive changes with every model.",
            "Resource::"
            + finding(self, log_group_arn(self._log_group(props.endpoint_name))): "SageMaker names the "
            "log streams per variant and instance at run time, inside this endpoint's log group.",
        }
        if serving.data_capture_percent:
            findings[objects(DATACAPTURE_PREFIX)] = "Data capture writes one object per request batch "
            "under datacapture/, named by SageMaker."
        if serving.batch_inference:
            findings[objects(contract.BATCH_INPUT_PREFIX)] = "Batch transform reads the files you put under "
            "batch-input/<prefix>/; their names are yours."
            findings[objects(contract.BATCH_OUTPUT_PREFIX)] = (
                "Batch transform writes one <file>.out per input under "
            )
            "batch-output/<prefix>/."
            findings["Resource::" + finding(self, log_group_arn(TRANSFORM_LOG_GROUP))] = "SageMaker names "
            "the log streams per transform job and instance, inside its fixed TransformJobs log group."
        if serving.mode == "async":
            findings[objects(ASYNC_INPUT_PREFIX)] = "Async requests are uploaded under async-input/ "
            "with names chosen by callers."
            findings[objects(ASYNC_OUTPUT_PREFIX)] = "SageMaker names each async response object."
            findings[objects(ASYNC_FAILURE_PREFIX)] = "SageMaker names each async error object."
        acknowledge_findings(self.role, "AwsSolutions-IAM5", findings)

    @staticmethod
    def _log_group(endpoint_name: str) -> str:
        return f"/aws/sagemaker/Endpoints/{endpoint_name}"


def _role_statements(props: ModelProps, *, log_group: str) -> list[iam.PolicyStatement]:
    """The model's archive, image, logs and metrics; batch and async inputs; the result prefixes; the key."""
    bucket, serving = props.bucket, props.serving
    statements = [
        iam.PolicyStatement(
            sid="ReadModels",
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
        ),
        *runtime_statements(
            image=props.image,
            log_group=log_group,
            image_sid="PullInferenceImage",
            logs_sid="EndpointLogs",
            metrics_sid="EndpointMetrics",
        ),
    ]
    if serving.batch_inference:
        statements += _batch_statements(bucket)
    if serving.mode == "async":
        statements += _async_statements(props)
    writes = _written_objects(props)
    if writes:
        statements.append(
            iam.PolicyStatement(
                sid="WriteResults", actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=writes
            )
        )
    statements.append(
        iam.PolicyStatement(
            sid="UseDataKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] if writes else ["kms:Decrypt"],
            resources=[props.key.key_arn],
        )
    )
    return statements


def _batch_statements(bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """Batch transform jobs run as this role: they list and read batch-input/ (and write batch-output/)."""
    return [
        iam.PolicyStatement(
            sid="ListBatchInput",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{contract.BATCH_INPUT_PREFIX}*"]}},
        ),
        iam.PolicyStatement(
            sid="ReadBatchInput",
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{contract.BATCH_INPUT_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="TransformJobLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group_arn(TRANSFORM_LOG_GROUP)],
        ),
    ]


def _async_statements(props: ModelProps) -> list[iam.PolicyStatement]:
    """An async endpoint reads the requests under async-input/ and announces results on the topics."""
    return [
        iam.PolicyStatement(
            sid="ReadAsyncRequests",
            actions=["s3:GetObject"],
            resources=[props.bucket.arn_for_objects(f"{ASYNC_INPUT_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="PublishAsyncResults",
            actions=["sns:Publish"],
            resources=[topic.topic_arn for topic in props.async_topics],
        ),
    ]


def _written_objects(props: ModelProps) -> list[str]:
    """Where the model's results go: captured data, batch outputs, async responses and errors."""
    bucket, serving = props.bucket, props.serving
    writes = []
    if serving.data_capture_percent:
        writes.append(bucket.arn_for_objects(f"{DATACAPTURE_PREFIX}*"))
    if serving.batch_inference:
        writes.append(bucket.arn_for_objects(f"{contract.BATCH_OUTPUT_PREFIX}*"))
    if serving.mode == "async":
        writes += [
            bucket.arn_for_objects(f"{ASYNC_OUTPUT_PREFIX}*"),
            bucket.arn_for_objects(f"{ASYNC_FAILURE_PREFIX}*"),
        ]
    return writes

"""The endpoint configuration (one per model revision) and the endpoint, updated blue/green."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from common import contract
from common.contract import ASYNC_FAILURE_PREFIX, ASYNC_OUTPUT_PREFIX, DATACAPTURE_PREFIX

from ..config import ServingConfig
from .placement import VARIANT_NAME, digest
from .scaling import deployment_capacities

# SageMaker's bounds for a blue/green deployment's overall time.
MIN_DEPLOYMENT_SECONDS, MAX_DEPLOYMENT_SECONDS = 600, 14400
PROVISIONING_SECONDS = 3600  # room for the new fleet to start before and between the baking periods


@dataclass(frozen=True, kw_only=True)
class EndpointProps:
    """``model``: the revision to serve; ``rollback_alarms``: any of them in alarm during a deployment
    sends all traffic back to the old fleet. ``async_success``/``async_error``: async mode only."""

    serving: ServingConfig
    endpoint_name: str
    model: sagemaker.CfnModel
    bucket: s3.IBucket
    key: kms.IKey
    rollback_alarms: list[cloudwatch.Alarm]
    async_success: sns.ITopic | None = None
    async_error: sns.ITopic | None = None


def initial_instance_count(serving: ServingConfig) -> int:
    """Autoscaling's minimum for realtime; an async endpoint starts with one and may scale to zero."""
    return 1 if serving.mode == "async" else serving.autoscaling_min_capacity


def canary_instances(percent: int, fleet: int) -> int:
    """Instances a canary of ``percent`` of ``fleet`` turns on: a whole instance at least, rounded up."""
    return max(1, math.ceil(percent * fleet / 100))


def uses_canary(serving: ServingConfig) -> bool:
    """Whether a canary is valid at every fleet size a deployment can meet (scheduled capacity included).

    TrafficRoutingConfig (API reference): CanarySize must be at most 50 % of the variant's instance count.
    Where some fleet size breaks that (one instance at night, or a share that rounds up past half), the
    endpoint deploys all at once, still baking and rolling back on the alarms.
    """
    if serving.mode != "realtime":
        return False
    return all(
        2 * canary_instances(serving.canary_percent, fleet) <= fleet
        for fleet in deployment_capacities(serving)
    )


class ServingEndpoint(Construct):
    """A new ``EndpointConfig`` resource for every model or setting; the same ``Endpoint`` resource."""

    def __init__(self, scope: Construct, construct_id: str, *, props: EndpointProps) -> None:
        super().__init__(scope, construct_id)
        serving = props.serving
        settings = self._settings(props)
        # EndpointConfigs are immutable. A content-derived logical ID makes every change a new config
        # beside the old one; the endpoint switches to it and CloudFormation deletes the old one last.
        self.config = sagemaker.CfnEndpointConfig(self, f"Config{digest(self, settings)}", **settings)
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=props.endpoint_name,
            endpoint_config_name=self.config.attr_endpoint_config_name,
            deployment_config=self._deployment(serving, props.rollback_alarms),
            # Keep the instance count autoscaling has reached instead of resetting it to the initial count.
            retain_all_variant_properties=True if serving.mode != "serverless" else None,
        )

    @staticmethod
    def _settings(props: EndpointProps) -> dict[str, Any]:
        """The ``CfnEndpointConfig`` keyword arguments."""
        serving, bucket, key = props.serving, props.bucket, props.key
        cfn = sagemaker.CfnEndpointConfig
        settings: dict[str, Any] = {}
        if serving.mode == "serverless":
            variant = cfn.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=props.model.attr_model_name,
                initial_variant_weight=1,
                serverless_config=cfn.ServerlessConfigProperty(
                    memory_size_in_mb=serving.serverless_memory_mb,
                    max_concurrency=serving.serverless_max_concurrency,
                ),
            )
        else:
            variant = cfn.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=props.model.attr_model_name,
                initial_variant_weight=1,
                instance_type=serving.instance_type,
                initial_instance_count=initial_instance_count(serving),
            )
            # Serverless takes no volume key, and instance types with NVMe instance storage (encrypted
            # by the hardware) refuse one.
            if contract.volume_key(serving.instance_type, key.key_arn):
                settings["kms_key_id"] = key.key_arn
        settings["production_variants"] = [variant]
        if serving.data_capture_percent:
            settings["data_capture_config"] = cfn.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=serving.data_capture_percent,
                destination_s3_uri=f"s3://{bucket.bucket_name}/{DATACAPTURE_PREFIX.rstrip('/')}",
                kms_key_id=key.key_arn,
                capture_options=[
                    cfn.CaptureOptionProperty(capture_mode="Input"),
                    cfn.CaptureOptionProperty(capture_mode="Output"),
                ],
            )
        if serving.mode == "async":
            assert props.async_success is not None and props.async_error is not None
            settings["async_inference_config"] = cfn.AsyncInferenceConfigProperty(
                output_config=cfn.AsyncInferenceOutputConfigProperty(
                    s3_output_path=f"s3://{bucket.bucket_name}/{ASYNC_OUTPUT_PREFIX.rstrip('/')}",
                    s3_failure_path=f"s3://{bucket.bucket_name}/{ASYNC_FAILURE_PREFIX.rstrip('/')}",
                    kms_key_id=key.key_arn,
                    notification_config=cfn.AsyncInferenceNotificationConfigProperty(
                        success_topic=props.async_success.topic_arn,
                        error_topic=props.async_error.topic_arn,
                    ),
                ),
                client_config=cfn.AsyncInferenceClientConfigProperty(
                    max_concurrent_invocations_per_instance=serving.workers
                ),
            )
        return settings

    @staticmethod
    def _deployment(
        serving: ServingConfig, alarms: list[cloudwatch.Alarm]
    ) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
        wait = serving.canary_wait_seconds
        if uses_canary(serving):
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                    type="CAPACITY_PERCENT", value=serving.canary_percent
                ),
                wait_interval_in_seconds=wait,
            )
            steps = 2
        else:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=wait
            )
            steps = 1
        timeout = min(
            MAX_DEPLOYMENT_SECONDS, max(MIN_DEPLOYMENT_SECONDS, steps * wait + PROVISIONING_SECONDS)
        )
        return sagemaker.CfnEndpoint.DeploymentConfigProperty(
            blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                traffic_routing_configuration=routing,
                maximum_execution_timeout_in_seconds=timeout,
            ),
            auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in alarms]
            ),
        )

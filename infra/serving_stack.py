"""The serving lifecycle: model, endpoint (blue/green with auto-rollback), autoscaling, alarms, dashboard."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common import contract
from common.contract import ASYNC_INPUT_PREFIX

from .config import AppConfig, ServingConfig, runtime_name
from .data_stack import DataStack, SharedData
from .images import ImageRef, huggingface_image
from .serving.endpoint import EndpointProps, ServingEndpoint
from .serving.failures import EndpointFailures, FailuresProps
from .serving.model import ModelProps, ServingModel
from .serving.monitoring import EndpointMonitoring, MonitoringProps
from .serving.notifications import NotificationsProps, ServingNotifications
from .serving.placement import check_serving, endpoint_name, image_instance_type
from .serving.scaling import EndpointScaling, ScalingProps


class ServingStack(cdk.Stack):
    """Wires the serving constructs to the Data stack's bucket and key; exists only with a model."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, data: DataStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        serving = config.serving
        check_serving(serving)
        name = endpoint_name(runtime_name(config), serving)
        shared = data.shared(self)
        image = huggingface_image(
            self, kind="inference", version=serving.image_version, instance_type=image_instance_type(serving)
        )
        self.notifications = ServingNotifications(
            self, "Notifications", props=NotificationsProps(async_results=serving.mode == "async")
        )
        self.model = self._serving_model(serving, shared, image, name)
        self.monitoring = EndpointMonitoring(
            self,
            "Monitoring",
            props=MonitoringProps(serving=serving, endpoint_name=name, topic=self.notifications.alarms),
        )
        self.endpoint = self._serving_endpoint(serving, shared, name)
        self.scaling = self._endpoint_scaling(serving, name)
        self.failures = self._endpoint_failures(config, name)
        self._outputs(serving, shared.bucket)

    def _serving_model(
        self, serving: ServingConfig, shared: SharedData, image: ImageRef, name: str
    ) -> ServingModel:
        return ServingModel(
            self,
            "Model",
            props=ModelProps(
                serving=serving,
                bucket=shared.bucket,
                key=shared.key,
                image=image,
                endpoint_name=name,
                async_topics=self.notifications.async_topics,
            ),
        )

    def _serving_endpoint(self, serving: ServingConfig, shared: SharedData, name: str) -> ServingEndpoint:
        return ServingEndpoint(
            self,
            "Endpoint",
            props=EndpointProps(
                serving=serving,
                endpoint_name=name,
                model=self.model.model,
                bucket=shared.bucket,
                key=shared.key,
                rollback_alarms=self.monitoring.rollback_alarms,
                async_success=self.notifications.async_success,
                async_error=self.notifications.async_error,
            ),
        )

    def _endpoint_scaling(self, serving: ServingConfig, name: str) -> EndpointScaling | None:
        """A serverless endpoint scales by itself; the others scale their instance count."""
        if serving.mode == "serverless":
            return None
        return EndpointScaling(
            self,
            "Scaling",
            props=ScalingProps(serving=serving, endpoint_name=name, endpoint=self.endpoint.endpoint),
        )

    def _endpoint_failures(self, config: AppConfig, name: str) -> EndpointFailures | None:
        """With failure alarms on: a notice whenever the endpoint fails or rolls back, its widgets on the
        endpoint's dashboard."""
        if not config.operations.failure_alarms:
            return None
        failures = EndpointFailures(
            self,
            "Failures",
            props=FailuresProps(endpoint_name=name, topic=self.notifications.alarms),
        )
        self.monitoring.dashboard.add_widgets(*failures.widgets())
        return failures

    def _outputs(self, serving: ServingConfig, bucket: s3.IBucket) -> None:
        cdk.CfnOutput(self, "EndpointName", value=self.endpoint.endpoint.attr_endpoint_name)
        cdk.CfnOutput(self, "ModelName", value=self.model.model.attr_model_name)
        # What the deploy build expects the endpoint to serve after `cdk deploy`.
        cdk.CfnOutput(self, "EndpointConfigName", value=self.endpoint.config.attr_endpoint_config_name)
        cdk.CfnOutput(self, "AlarmsTopicArn", value=self.notifications.alarms.topic_arn)
        cdk.CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        if serving.mode == "async":
            cdk.CfnOutput(self, "AsyncInputLocation", value=f"s3://{bucket.bucket_name}/{ASYNC_INPUT_PREFIX}")
        if serving.batch_inference:
            cdk.CfnOutput(
                self,
                "BatchInputLocation",
                value=f"s3://{bucket.bucket_name}/{contract.BATCH_INPUT_PREFIX}",
            )

"""Endpoint alarms (two of them roll a deployment back) and the endpoint's dashboard."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..config import ServingConfig
from .placement import VARIANT_NAME, vcpus

NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
MINUTE = cdk.Duration.minutes(1)


@dataclass(frozen=True, kw_only=True)
class MonitoringProps:
    """``endpoint_name`` is known before the endpoint exists: the endpoint names these alarms for rollback."""

    serving: ServingConfig
    endpoint_name: str
    topic: sns.ITopic


class EndpointMonitoring(Construct):
    """Errors and p90 model latency (rollback alarms), memory and CPU (instances), a dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        serving = props.serving
        self._endpoint = props.endpoint_name
        self._instances = serving.mode != "serverless"
        self._async = serving.mode == "async"
        # An async endpoint publishes InvocationFailures, per endpoint and variant, instead of 5XX errors.
        errors = self._metric("InvocationFailures" if self._async else "Invocation5XXErrors", "Sum")
        self.errors = self._errors_alarm(serving, errors)
        self.latency = self._latency_alarm(serving)
        self.rollback_alarms: list[cloudwatch.Alarm] = [self.errors, self.latency]
        alarms = list(self.rollback_alarms)
        if self._instances:
            alarms += self._instance_alarms(serving)
        action = actions.SnsAction(props.topic)
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.alarms = alarms
        self.dashboard = self._dashboard(serving, errors)

    def _errors_alarm(self, serving: ServingConfig, errors: cloudwatch.Metric) -> cloudwatch.Alarm:
        return errors.create_alarm(
            self,
            "Errors",
            alarm_description=f"{self._endpoint}: {errors.metric_name} >= {serving.alarm_5xx_errors} "
            "a minute, two minutes running. Rolls back a deployment in progress.",
            threshold=serving.alarm_5xx_errors,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _latency_alarm(self, serving: ServingConfig) -> cloudwatch.Alarm:
        latency = self._metric("ModelLatency", "p90")  # microseconds
        return latency.create_alarm(
            self,
            "Latency",
            alarm_description=f"{self._endpoint}: p90 model latency >= {serving.alarm_latency_ms} ms, "
            "two minutes running. Rolls back a deployment in progress.",
            threshold=serving.alarm_latency_ms * 1000,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _instance_alarms(self, serving: ServingConfig) -> list[cloudwatch.Alarm]:
        """Memory, then CPU, of the endpoint's instances."""
        memory = self._metric("MemoryUtilization", "Average", namespace=INSTANCE_NAMESPACE)
        cpu = self._metric("CPUUtilization", "Average", namespace=INSTANCE_NAMESPACE)
        # CPUUtilization adds up all vCPUs: 400% is a 4-vCPU instance at full load.
        cpu_threshold = serving.alarm_cpu_percent * vcpus(serving.instance_type)
        return [
            memory.create_alarm(
                self,
                "Memory",
                alarm_description=f"{self._endpoint}: memory >= {serving.alarm_memory_percent}% "
                "for five minutes.",
                threshold=serving.alarm_memory_percent,
                evaluation_periods=5,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            cpu.create_alarm(
                self,
                "Cpu",
                alarm_description=f"{self._endpoint}: CPU >= {serving.alarm_cpu_percent}% of all "
                f"vCPUs ({cpu_threshold}%) for five minutes.",
                threshold=cpu_threshold,
                evaluation_periods=5,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
        ]

    def _metric(
        self, name: str, statistic: str, *, namespace: str = NAMESPACE, variant: bool = True
    ) -> cloudwatch.Metric:
        dimensions = {"EndpointName": self._endpoint}
        if variant:
            dimensions["VariantName"] = VARIANT_NAME
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=MINUTE,
        )

    def _dashboard(self, serving: ServingConfig, errors: cloudwatch.Metric) -> cloudwatch.Dashboard:
        """Two widgets a row: requests, latency and errors; instances (not serverless); the async backlog;
        cold starts (serverless)."""
        widgets = self._traffic_widgets(serving, errors)
        if self._instances:
            widgets += self._instance_widgets()
        if self._async:
            widgets.append(
                cloudwatch.GraphWidget(
                    title="Async backlog",
                    left=[self._metric("ApproximateBacklogSize", "Average", variant=False)],
                    right=[self._metric("HasBacklogWithoutCapacity", "Maximum", variant=False)],
                    width=12,
                )
            )
        if serving.mode == "serverless":
            widgets.append(
                cloudwatch.GraphWidget(
                    title="Cold starts (model setup, µs)",
                    left=[self._metric("ModelSetupTime", "Average")],
                    width=12,
                )
            )
        rows = [widgets[i : i + 2] for i in range(0, len(widgets), 2)]
        return cloudwatch.Dashboard(self, "Dashboard", widgets=rows)

    def _traffic_widgets(self, serving: ServingConfig, errors: cloudwatch.Metric) -> list[cloudwatch.IWidget]:
        """Requests (or, async, the oldest waiting one), latency, and errors against the rollback threshold."""
        latency = [
            self._metric("ModelLatency", stat).with_(label=f"model {stat} (µs)")
            for stat in ("p50", "p90", "p99")
        ]
        failures = [errors, self._metric("Invocation4XXErrors", "Sum")]
        if self._async:
            # An async endpoint publishes neither Invocations nor OverheadLatency; its requests wait in a queue.
            requests = cloudwatch.GraphWidget(
                title="Oldest waiting request (s)",
                left=[self._metric("ApproximateAgeOfOldestRequest", "Maximum", variant=False)],
                width=12,
            )
            failures.append(self._metric("NotificationFailures", "Sum"))
        else:
            requests = cloudwatch.GraphWidget(
                title="Invocations", left=[self._metric("Invocations", "Sum")], width=12
            )
            latency.append(self._metric("OverheadLatency", "p90").with_(label="overhead p90 (µs)"))
        return [
            requests,
            cloudwatch.GraphWidget(title="Latency", left=latency, width=12),
            cloudwatch.GraphWidget(
                title="Errors",
                left=failures,
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=serving.alarm_5xx_errors, label="rollback alarm")
                ],
                width=12,
            ),
        ]

    def _instance_widgets(self) -> list[cloudwatch.IWidget]:
        """How many instances run (CPU samples a minute), and their CPU and memory."""
        return [
            cloudwatch.GraphWidget(
                title="Instances (CPU samples a minute)",
                left=[
                    self._metric("CPUUtilization", "SampleCount", namespace=INSTANCE_NAMESPACE).with_(
                        label="instances"
                    )
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="CPU and memory (%)",
                left=[self._metric("CPUUtilization", "Average", namespace=INSTANCE_NAMESPACE)],
                right=[self._metric("MemoryUtilization", "Average", namespace=INSTANCE_NAMESPACE)],
                width=12,
            ),
        ]

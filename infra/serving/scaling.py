"""Application Auto Scaling of the endpoint variant's instance count (realtime and async)."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
import jsii
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from ..config import ServingConfig
from .placement import VARIANT_NAME

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Fewest instances a realtime variant runs on: only async endpoints (and inference components) scale to zero.
SLEEP_CAPACITY = 1


@dataclass(frozen=True, kw_only=True)
class ScalingProps:
    """``endpoint``: the scalable target is registered only once its variant exists."""

    serving: ServingConfig
    endpoint_name: str
    endpoint: sagemaker.CfnEndpoint


@jsii.implements(cloudwatch.IAlarmAction)
class _PolicyAction:
    """An alarm action that runs a scaling policy of this stack."""

    def __init__(self, policy: appscaling.CfnScalingPolicy) -> None:
        self.policy = policy

    def bind(self, scope: Construct, alarm: cloudwatch.IAlarm) -> cloudwatch.AlarmActionConfig:
        return cloudwatch.AlarmActionConfig(alarm_action_arn=self.policy.ref)


def deployment_capacities(serving: ServingConfig) -> range | tuple[int, ...]:
    """Every instance count a realtime variant can have when a deployment starts: autoscaling's range,
    and the scheduled night-and-weekend capacity. The new fleet starts at the old fleet's count."""
    capacities = range(serving.autoscaling_min_capacity, serving.autoscaling_max_capacity + 1)
    if scheduled_actions(serving):
        return (SLEEP_CAPACITY, *capacities)
    return capacities


def scheduled_actions(serving: ServingConfig) -> list[appscaling.CfnScalableTarget.ScheduledActionProperty]:
    """Realtime with ``scale_down_schedule``: down to one instance at ``scale_down_at``, back to the configured
    range at ``scale_up_at``. Async endpoints scale to zero by themselves; serverless ones have no instances."""
    if serving.mode != "realtime" or not serving.scale_down_schedule:
        return []
    action = appscaling.CfnScalableTarget.ScheduledActionProperty
    capacity = appscaling.CfnScalableTarget.ScalableTargetActionProperty
    return [
        action(
            scheduled_action_name="scale-down",
            schedule=serving.scale_down_at,
            timezone=serving.scale_schedule_timezone,
            scalable_target_action=capacity(min_capacity=SLEEP_CAPACITY, max_capacity=SLEEP_CAPACITY),
        ),
        action(
            scheduled_action_name="scale-up",
            schedule=serving.scale_up_at,
            timezone=serving.scale_schedule_timezone,
            scalable_target_action=capacity(
                min_capacity=serving.autoscaling_min_capacity, max_capacity=serving.autoscaling_max_capacity
            ),
        ),
    ]


class EndpointScaling(Construct):
    """Target tracking on invocations per instance (realtime) or backlog per instance (async).

    An async endpoint scales to zero; with no instance, target tracking sees no metric, so a step policy
    on ``HasBacklogWithoutCapacity`` starts the first instance. A realtime endpoint can hold one instance
    on a schedule (nights, weekends) and return to its range after.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: ScalingProps) -> None:
        super().__init__(scope, construct_id)
        is_async = props.serving.mode == "async"
        self.target = self._scalable_target(props, is_async)
        self.tracking = appscaling.CfnScalingPolicy(
            self,
            "Tracking",
            policy_name="track-backlog" if is_async else "track-invocations",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.target.ref,
            target_tracking_scaling_policy_configuration=_tracking(props, is_async),
        )
        self.from_zero: appscaling.CfnScalingPolicy | None = None
        if is_async:
            self.from_zero = self._from_zero(props.serving)
            self.backlog_alarm = self._backlog_alarm(props.endpoint_name, self.from_zero)

    def _scalable_target(self, props: ScalingProps, is_async: bool) -> appscaling.CfnScalableTarget:
        serving = props.serving
        # No RoleARN: Application Auto Scaling uses its SageMaker service-linked role.
        target = appscaling.CfnScalableTarget(
            self,
            "Target",
            service_namespace="sagemaker",
            scalable_dimension=DIMENSION,
            resource_id=f"endpoint/{props.endpoint_name}/variant/{VARIANT_NAME}",
            min_capacity=0 if is_async else serving.autoscaling_min_capacity,
            max_capacity=serving.autoscaling_max_capacity,
            scheduled_actions=scheduled_actions(serving) or None,
        )
        target.node.add_dependency(props.endpoint)
        return target

    def _from_zero(self, serving: ServingConfig) -> appscaling.CfnScalingPolicy:
        """Adds an instance whenever its alarm fires (see ``_backlog_alarm``)."""
        return appscaling.CfnScalingPolicy(
            self,
            "FromZero",
            policy_name="scale-out-from-zero",
            policy_type="StepScaling",
            scaling_target_id=self.target.ref,
            step_scaling_policy_configuration=appscaling.CfnScalingPolicy.StepScalingPolicyConfigurationProperty(
                adjustment_type="ChangeInCapacity",
                cooldown=serving.scale_out_cooldown_seconds,
                metric_aggregation_type="Maximum",
                step_adjustments=[
                    appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                        metric_interval_lower_bound=0, scaling_adjustment=1
                    )
                ],
            ),
        )

    def _backlog_alarm(self, endpoint_name: str, from_zero: appscaling.CfnScalingPolicy) -> cloudwatch.Alarm:
        """Requests wait and no instance runs: runs ``from_zero``."""
        backlog = cloudwatch.Metric(
            namespace="AWS/SageMaker",
            metric_name="HasBacklogWithoutCapacity",
            dimensions_map={"EndpointName": endpoint_name},
            statistic="Maximum",
            period=cdk.Duration.minutes(1),
        )
        alarm = backlog.create_alarm(
            self,
            "BacklogWithoutCapacity",
            alarm_description=f"{endpoint_name}: requests wait and no instance runs; starts one.",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(_PolicyAction(from_zero))
        return alarm


def _tracking(
    props: ScalingProps, is_async: bool
) -> appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty:
    """Backlog per instance (async, a custom metric) or invocations per instance (realtime, predefined)."""
    serving = props.serving
    policy = appscaling.CfnScalingPolicy
    if is_async:
        target_value = serving.autoscaling_target_backlog
        predefined = None
        customized = policy.CustomizedMetricSpecificationProperty(
            namespace="AWS/SageMaker",
            metric_name="ApproximateBacklogSizePerInstance",
            dimensions=[policy.MetricDimensionProperty(name="EndpointName", value=props.endpoint_name)],
            statistic="Average",
        )
    else:
        target_value = serving.autoscaling_target_invocations
        predefined = policy.PredefinedMetricSpecificationProperty(
            predefined_metric_type="SageMakerVariantInvocationsPerInstance"
        )
        customized = None
    return policy.TargetTrackingScalingPolicyConfigurationProperty(
        target_value=target_value,
        predefined_metric_specification=predefined,
        customized_metric_specification=customized,
        scale_in_cooldown=serving.scale_in_cooldown_seconds,
        scale_out_cooldown=serving.scale_out_cooldown_seconds,
    )

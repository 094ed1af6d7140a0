"""The Serving stack: model, endpoint config, blue/green endpoint, autoscaling, alarms, variants, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from common import contract
from infra.app_builder import AcousticShieldApp
from infra.config import ConfigError, load_config
from infra.serving.endpoint import uses_canary
from infra.serving.placement import check_serving, endpoint_name, vcpus
from infra.serving.scaling import scheduled_actions

from .conftest import MODEL_A, PACKAGE_B, cdk_context
from .test_training_stack import by_sid, statements

Templates = Callable[[str], Template]


def only(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = template.find_resources(kind).items()
    return found


def endpoint(template: Template) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::SageMaker::Endpoint")


def endpoint_config(template: Template) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::SageMaker::EndpointConfig")


def variant(template: Template) -> dict[str, Any]:
    (found,) = endpoint_config(template)[1]["Properties"]["ProductionVariants"]
    return found


def container(template: Template) -> dict[str, Any]:
    (found,) = only(template, "AWS::SageMaker::Model")[1]["Properties"]["Containers"]
    return found


def endpoint_alarms(template: Template) -> dict[str, dict[str, Any]]:
    """The alarms on the endpoint's metrics, by metric name (not the failure notices' queue alarm)."""
    return {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") != "AWS/SQS"
    }


def test_no_serving_stack_until_a_model_is_given(dev_app: AcousticShieldApp) -> None:
    # Given the dev app, synthesized without a model
    app = dev_app.data.node.root
    # Then it has the Data and Training stacks and no Serving stack
    assert dev_app.serving is None
    assert app.node.try_find_child("AcousticShield-dev-Serving") is None
    assert app.node.try_find_child("AcousticShield-dev-Training") is dev_app.training


def test_a_model_adds_the_serving_stack(serving_app: Callable[[str], AcousticShieldApp]) -> None:
    # Given `-c model_data_url=...`
    built = serving_app("realtime")
    # When the app is synthesized / Then it has the Serving stack, deployed after the Data stack it imports
    serving = built.serving
    assert serving is not None and serving.stack_name == "AcousticShield-dev-Serving"
    assert [stack.stack_name for stack in serving.dependencies] == ["AcousticShield-dev-Data"]


# --- the model ------------------------------------------------------------------------------------


def test_model_archive_runs_the_regional_cpu_inference_image_with_the_handler(
    serving_template: Templates,
) -> None:
    # Given a model archive on the default (CPU) instance type
    spec = container(serving_template("realtime"))
    # When the model's container is read
    image = json.dumps(spec["Image"])
    # Then it runs the region's CPU inference image on the archive, with the handler's environment
    assert "InferenceImageRegistry" in image and "AWS::Region" in image
    assert "huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312" in image
    assert spec["ModelDataUrl"] == MODEL_A
    assert spec["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_REGION": {"Ref": "AWS::Region"},
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "ACOUSTIC_FAST_PATH": "off",
        "ACOUSTIC_MAX_AUDIO_SECONDS": "600",
    }


def test_model_package_brings_its_own_image_and_archive(serving_template: Templates) -> None:
    # Given a registered model package
    spec = container(serving_template("package"))
    # Then the container names the package alone (its image and archive are the package's), with the
    # handler's environment
    assert spec["ModelPackageName"] == PACKAGE_B
    assert "Image" not in spec and "ModelDataUrl" not in spec
    assert spec["Environment"]["ACOUSTIC_FAST_PATH"] == "off"


def test_gpu_instance_type_gets_the_gpu_image(serving_template: Templates) -> None:
    # Given a GPU instance type (ml.g5.xlarge)
    image = json.dumps(container(serving_template("gpu"))["Image"])
    # Then the model runs the GPU build of the inference image, not the CPU one
    assert "-gpu-py312-cu124" in image and "-cpu-" not in image


def prod_realtime(synth_app: Callable[..., AcousticShieldApp]) -> Template:
    """prod: no scale-down schedule, no batch inference (one of the synthesis matrix's rows)."""
    serving = synth_app(env="prod", model_data_url=MODEL_A).serving
    assert serving is not None
    return Template.from_stack(serving)


def test_model_role_reads_models_pulls_the_inference_image_and_writes_its_logs(
    synth_app: Callable[..., AcousticShieldApp],
) -> None:
    # Given prod's realtime endpoint (no data capture, no batch inference)
    template = prod_realtime(synth_app)
    # When the model role's statements are read
    roles = template.find_resources("AWS::IAM::Role")
    sids = by_sid(template, "ModelRole")
    # Then no role has managed policies, and the model's reads models/, pulls the inference image and writes
    # its endpoint's logs and metrics
    assert roles and all("ManagedPolicyArns" not in role["Properties"] for role in roles.values())
    assert json.dumps(sids["ReadModels"]["Resource"]).endswith('"/models/*"]]}')
    assert sids["ReadModels"]["Action"] == "s3:GetObject"
    assert json.dumps(sids["PullInferenceImage"]["Resource"]).endswith(
        ':repository/huggingface-pytorch-inference"]]}'
    )
    assert json.dumps(sids["EndpointLogs"]["Resource"]).endswith(
        ':log-group:/aws/sagemaker/Endpoints/acoustic-shield-c6i-xlarge:*"]]}'
    )
    assert sids["EndpointMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}
    }
    assert sids["UseDataKey"] == {
        "Action": "kms:Decrypt",
        "Effect": "Allow",
        "Resource": {"Fn::ImportValue": "AcousticShield-prod-Data-KeyArn"},
        "Sid": "UseDataKey",
    }
    # And it writes nothing without data capture, async or batch, and is never granted a wildcard action
    assert "WriteResults" not in sids
    assert "ReadBatchInput" not in sids and "ListBatchInput" not in sids
    for statement in statements(template, "ModelRole"):
        assert statement["Action"] not in ("s3:*", "*", "kms:*")


# --- endpoint config and endpoint -----------------------------------------------------------------


def test_endpoint_config_encrypts_instance_volumes_with_the_data_key(serving_template: Templates) -> None:
    # Given dev's realtime endpoint on ml.m5.xlarge (EBS volumes)
    template = serving_template("realtime")
    # When its endpoint config is read
    props = endpoint_config(template)[1]["Properties"]
    # Then the volumes are encrypted with the data key, nothing is captured, and one variant serves the model
    assert props["KmsKeyId"] == {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"}
    assert "DataCaptureConfig" not in props
    assert variant(template) == {
        "VariantName": "AllTraffic",
        "ModelName": {"Fn::GetAtt": [only(template, "AWS::SageMaker::Model")[0], "ModelName"]},
        "InitialVariantWeight": 1,
        "InstanceType": "ml.m5.xlarge",
        "InitialInstanceCount": 1,
    }


def test_instance_storage_types_get_no_volume_key_and_data_capture_is_encrypted(
    serving_template: Templates,
) -> None:
    # Given ml.g5.xlarge (NVMe instance storage) with 20 % data capture
    template = serving_template("gpu")
    # When its endpoint config is read
    props = endpoint_config(template)[1]["Properties"]
    # Then SageMaker gets no volume key (it would refuse one) and capture goes to datacapture/ with the key
    assert "KmsKeyId" not in props
    assert props["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": {
            "Fn::Join": [
                "",
                ["s3://", {"Fn::ImportValue": "AcousticShield-dev-Data-DataBucketName"}, "/datacapture"],
            ]
        },
        "KmsKeyId": {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"},
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    # And the model role may write datacapture/, encrypting with the data key
    writes = by_sid(template, "ModelRole")["WriteResults"]
    assert '"/datacapture/*"]]}' in json.dumps(writes["Resource"])
    assert by_sid(template, "ModelRole")["UseDataKey"]["Action"] == [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]


def test_endpoint_updates_blue_green_rolls_back_on_alarms_and_keeps_its_instance_count(
    serving_template: Templates,
) -> None:
    # Given dev's realtime endpoint (one instance) and its alarms
    template = serving_template("realtime")
    logical_id, resource = endpoint(template)
    props = resource["Properties"]
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    errors = next(k for k in alarms if k.startswith("MonitoringErrors"))
    latency = next(k for k in alarms if k.startswith("MonitoringLatency"))
    # Then an update keeps the instance count autoscaling set, goes blue/green all at once, bakes, and
    # rolls back when the error or latency alarm fires
    assert props["EndpointName"] == "acoustic-shield-dev-m5-xlarge"
    assert props["RetainAllVariantProperties"] is True
    assert props["EndpointConfigName"] == {"Fn::GetAtt": [endpoint_config(template)[0], "EndpointConfigName"]}
    assert props["DeploymentConfig"] == {
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": {"Ref": errors}}, {"AlarmName": {"Ref": latency}}]
        },
        # One instance cannot hold a canary of at most half the fleet: all at once, then the baking period.
        "BlueGreenUpdatePolicy": {
            "MaximumExecutionTimeoutInSeconds": 4200,
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600},
        },
    }
    assert logical_id.startswith("Endpoint")


def test_fleets_of_two_or_more_take_a_canary_first(serving_template: Templates) -> None:
    # Given an endpoint of two to four instances, never scaled down by a schedule
    template = serving_template("canary")
    # When its blue/green policy is read
    routing = endpoint(template)[1]["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    # Then 10 % of the capacity takes the new model first, for ten minutes, before the rest
    assert routing == {
        "MaximumExecutionTimeoutInSeconds": 4800,
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 600,
        },
    }


def test_a_fleet_scaled_down_at_night_deploys_all_at_once(serving_template: Templates) -> None:
    """TrafficRoutingConfig (Amazon SageMaker API Reference): CanarySize "must be less than or equal to 50%
    of the variant's total instance count". The scheduled scale-down holds the variant at one instance,
    when the weekly retrain's deploy may land."""
    # Given two instances by day and one at night (the gpu variant: dev's scale_down_schedule)
    template = serving_template("gpu")
    assert template.find_resources("AWS::ApplicationAutoScaling::ScalableTarget")
    # When its blue/green policy is read
    policy = endpoint(template)[1]["Properties"]["DeploymentConfig"]
    # Then it shifts all at once, bakes, and rolls back on the alarms
    routing = policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert len(policy["AutoRollbackConfiguration"]["Alarms"]) == 2


def _canary_fits(percent: int, fleet: int) -> bool:
    """A canary of ``percent`` of ``fleet`` instances is a whole instance at least, and at most half."""
    instances = max(1, -(-percent * fleet // 100))
    return instances * 2 <= fleet


@pytest.mark.parametrize("percent", [1, 10, 34, 50])
@pytest.mark.parametrize("schedule", [False, True])
def test_every_allowed_capacity_gets_a_valid_deployment_policy(percent: int, schedule: bool) -> None:
    """TrafficRoutingConfig (Amazon SageMaker API Reference): CanarySize at most 50 % of the variant's
    instance count; WaitIntervalInSeconds 0-3600. "Use canary traffic shifting" (SageMaker Developer
    Guide): the canary is at most half of the new fleet. Every fleet size a deployment can meet counts:
    autoscaling's range and, with the scale-down schedule, its one instance."""
    for low in range(1, 6):
        for high in range(low, 7):
            # Given a capacity configuration
            serving = config(
                autoscaling_min_capacity=str(low),
                autoscaling_max_capacity=str(high),
                scale_down_schedule=str(schedule).lower(),
                canary_percent=str(percent),
            ).serving
            fleets = set(range(low, high + 1)) | ({1} if schedule else set())
            # When the endpoint's policy is chosen
            canary = uses_canary(serving)
            # Then a canary fits every fleet it may meet; otherwise some fleet could not hold one
            assert canary == all(_canary_fits(percent, fleet) for fleet in fleets), (low, high, schedule)
            assert 0 <= serving.canary_wait_seconds <= 3600


def test_a_new_model_updates_the_same_endpoint_through_a_new_endpoint_config(
    serving_template: Templates,
) -> None:
    # Given the same settings with model A (an archive) and model B (a registered package)
    a, b = serving_template("realtime"), serving_template("package")
    # When their endpoints and endpoint configs are compared
    (endpoint_a, resource_a), (endpoint_b, resource_b) = endpoint(a), endpoint(b)
    config_a, config_b = endpoint_config(a)[0], endpoint_config(b)[0]
    # Then the model and the endpoint config are new resources...
    assert config_a != config_b
    assert only(a, "AWS::SageMaker::Model")[0] != only(b, "AWS::SageMaker::Model")[0]
    # ...and the endpoint is the same resource, pointed at the new config
    assert endpoint_a == endpoint_b
    assert resource_a["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_a, "EndpointConfigName"]}
    assert resource_b["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_b, "EndpointConfigName"]}
    # ...with nothing else changed: no replacement, an in-place blue/green update
    unchanged_a = {k: v for k, v in resource_a["Properties"].items() if k != "EndpointConfigName"}
    unchanged_b = {k: v for k, v in resource_b["Properties"].items() if k != "EndpointConfigName"}
    assert unchanged_a == unchanged_b
    assert resource_a.get("DependsOn") == resource_b.get("DependsOn")


def test_a_new_instance_type_replaces_the_endpoint_under_a_new_name(serving_template: Templates) -> None:
    # Given the instance type changes from ml.m5.xlarge to ml.g5.xlarge while autoscaling is registered
    a, b = serving_template("realtime"), serving_template("gpu")
    # When their endpoints are compared
    # Then the endpoint gets a new name: CloudFormation creates a new endpoint (and a new scalable
    # target) beside the old one instead of an update that Application Auto Scaling would refuse
    assert endpoint(a)[0] == endpoint(b)[0]
    assert endpoint(a)[1]["Properties"]["EndpointName"] == "acoustic-shield-dev-m5-xlarge"
    assert endpoint(b)[1]["Properties"]["EndpointName"] == "acoustic-shield-dev-g5-xlarge"
    assert only(b, "AWS::ApplicationAutoScaling::ScalableTarget")[1]["Properties"]["ResourceId"] == (
        "endpoint/acoustic-shield-dev-g5-xlarge/variant/AllTraffic"
    )


# --- autoscaling, alarms, dashboard ---------------------------------------------------------------


def test_autoscaling_tracks_invocations_per_instance_after_the_endpoint_exists(
    serving_template: Templates,
) -> None:
    # Given dev's realtime endpoint
    template = serving_template("realtime")
    # When its scalable target is read
    target_id, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    # Then it scales the variant between dev's bounds, once the endpoint exists, with the service-linked role
    assert {k: v for k, v in target["Properties"].items() if k not in ("Tags", "ScheduledActions")} == {
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "ResourceId": "endpoint/acoustic-shield-dev-m5-xlarge/variant/AllTraffic",
        "MinCapacity": 1,
        "MaxCapacity": 2,  # cdk.json dev
    }
    assert "RoleARN" not in target["Properties"]  # Application Auto Scaling's service-linked role
    assert target["DependsOn"] == [endpoint(template)[0]]
    # And a policy tracks 60 invocations per instance, scaling in slowly and out quickly
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": {"Ref": target_id},
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 60,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )


def test_alarms_tell_an_encrypted_topic_and_a_dashboard_shows_the_endpoint(
    serving_template: Templates,
) -> None:
    # Given dev's realtime endpoint
    template = serving_template("realtime")
    # When its topic, key, alarms and dashboard are read
    topic_id, topic = only(template, "AWS::SNS::Topic")
    key_id, key = only(template, "AWS::KMS::Key")
    by_metric = endpoint_alarms(template)
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")[1]["Properties"]["DashboardBody"])
    # Then the topic is encrypted with its own rotated key, which CloudWatch may use for alarm actions
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    assert "cloudwatch.amazonaws.com" in json.dumps(key["Properties"]["KeyPolicy"])
    # And errors, latency, memory and CPU alarm at their thresholds, on this endpoint, telling the topic
    assert set(by_metric) == {"Invocation5XXErrors", "ModelLatency", "MemoryUtilization", "CPUUtilization"}
    assert by_metric["ModelLatency"]["ExtendedStatistic"] == "p90"
    assert by_metric["ModelLatency"]["Threshold"] == 2_000_000  # µs
    assert by_metric["Invocation5XXErrors"]["Threshold"] == 5
    assert by_metric["CPUUtilization"]["Threshold"] == 360  # 90 % of 4 vCPUs
    for alarm in by_metric.values():
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        assert {"Name": "EndpointName", "Value": "acoustic-shield-dev-m5-xlarge"} in alarm["Dimensions"]
    # And the dashboard graphs the endpoint's traffic, latency, errors and resources
    for metric in (
        "Invocations",
        "ModelLatency",
        "Invocation5XXErrors",
        "CPUUtilization",
        "MemoryUtilization",
    ):
        assert metric in body


def test_a_realtime_endpoint_sleeps_on_one_instance_on_schedule_and_wakes_to_its_range(
    serving_template: Templates,
) -> None:
    # Given dev (scale_down_schedule on in cdk.json, default times)
    template = serving_template("realtime")
    # When its scalable target is read
    target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")[1]
    # Then at 19:00 UTC on weekdays it is held at one instance, and from 07:00 on weekdays autoscaling's
    # range applies again (the weekend sleeps through: nothing wakes it on Saturday or Sunday)
    assert target["Properties"]["ScheduledActions"] == [
        {
            "ScheduledActionName": "scale-down",
            "Schedule": "cron(0 19 ? * MON-FRI *)",
            "Timezone": "UTC",
            "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 1},
        },
        {
            "ScheduledActionName": "scale-up",
            "Schedule": "cron(0 7 ? * MON-FRI *)",
            "Timezone": "UTC",
            "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 2},
        },
    ]


def test_prod_and_async_endpoints_keep_no_schedule(
    serving_template: Templates, synth_app: Callable[..., AcousticShieldApp]
) -> None:
    # Given prod (scale_down_schedule off) and an async endpoint in dev (it scales to zero by itself)
    for template in (prod_realtime(synth_app), serving_template("async")):
        # When its scalable target is read
        target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")[1]
        # Then no scheduled action touches their capacity
        assert "ScheduledActions" not in target["Properties"]


def test_the_schedule_is_configurable_per_environment() -> None:
    # Given other times, a time zone and capacities
    serving = config(
        scale_down_at="cron(30 18 ? * MON-FRI *)",
        scale_up_at="cron(0 6 ? * MON-FRI *)",
        scale_schedule_timezone="Europe/Berlin",
        autoscaling_min_capacity="2",
        autoscaling_max_capacity="3",
    ).serving
    # When the scheduled actions are made
    (down, up) = scheduled_actions(serving)
    # Then they use them; prod and serverless endpoints get none
    assert (down.schedule, down.timezone, up.schedule) == (
        "cron(30 18 ? * MON-FRI *)",
        "Europe/Berlin",
        "cron(0 6 ? * MON-FRI *)",
    )
    assert up.scalable_target_action.min_capacity == 2 and up.scalable_target_action.max_capacity == 3
    assert scheduled_actions(config(env="prod").serving) == []
    assert scheduled_actions(config(serving_mode="serverless").serving) == []


def test_batch_inference_lets_the_model_read_batch_input_and_write_batch_output(
    serving_template: Templates,
) -> None:
    # Given dev (batch_inference on in cdk.json)
    template = serving_template("realtime")
    # When the model role's statements are read
    sids = by_sid(template, "ModelRole")
    # Then transform jobs running as the model's role list and read batch-input/ only...
    assert sids["ListBatchInput"]["Condition"] == {"StringLike": {"s3:prefix": ["batch-input/*"]}}
    assert sids["ListBatchInput"]["Resource"] == {"Fn::ImportValue": "AcousticShield-dev-Data-DataBucketArn"}
    assert sids["ReadBatchInput"]["Action"] == "s3:GetObject"
    assert json.dumps(sids["ReadBatchInput"]["Resource"]).endswith('"/batch-input/*"]]}')
    # ...write batch-output/ only, encrypted with the data key, and log in SageMaker's transform log group
    assert sorted(sids["WriteResults"]["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert json.dumps(sids["WriteResults"]["Resource"]).endswith('"/batch-output/*"]]}')
    assert sids["UseDataKey"]["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    assert json.dumps(sids["TransformJobLogs"]["Resource"]).endswith(
        ':log-group:/aws/sagemaker/TransformJobs:*"]]}'
    )
    # And the stack says where to put batch input
    outputs = template.to_json()["Outputs"]
    assert outputs["BatchInputLocation"]["Value"] == {
        "Fn::Join": [
            "",
            ["s3://", {"Fn::ImportValue": "AcousticShield-dev-Data-DataBucketName"}, "/batch-input/"],
        ]
    }


def test_the_stack_outputs_the_endpoint_config_the_deploy_build_expects(serving_template: Templates) -> None:
    # Given the Serving stack
    template = serving_template("realtime")
    # When its outputs are read
    outputs = template.to_json()["Outputs"]
    # Then they name the endpoint and the endpoint config the deployment created, the two values the
    # deploy build's verification reads (infra/training/deployer.py)
    assert outputs["EndpointConfigName"]["Value"] == {
        "Fn::GetAtt": [endpoint_config(template)[0], "EndpointConfigName"]
    }
    assert outputs["EndpointName"]["Value"] == {"Fn::GetAtt": [endpoint(template)[0], "EndpointName"]}


# --- failure notices ----------------------------------------------------------------------------------


def test_an_endpoint_that_leaves_its_normal_lifecycle_is_announced_on_the_alarms_topic(
    serving_template: Templates,
) -> None:
    # Given the Serving stack's one rule
    template = serving_template("realtime")
    topic_id = only(template, "AWS::SNS::Topic")[0]
    (rule,) = template.find_resources("AWS::Events::Rule").values()
    props = rule["Properties"]
    # Then it matches every status but the five of a healthy lifecycle, in both spellings, for this endpoint
    assert props["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {
            "EndpointName": ["acoustic-shield-dev-m5-xlarge"],
            "EndpointStatus": [
                {
                    "anything-but": [
                        *("IN_SERVICE", "CREATING", "UPDATING", "SYSTEM_UPDATING", "DELETING"),
                        *("InService", "Creating", "Updating", "SystemUpdating", "Deleting"),
                    ]
                }
            ],
        },
    }
    # And it tells the alarms topic, with retries and a dead-letter queue, what happened and where to look
    (target,) = props["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 21600}
    assert "DeadLetterConfig" in target and "RoleArn" not in target
    message = target["InputTransformer"]["InputTemplate"]
    assert "endpoint acoustic-shield-dev-m5-xlarge is <detail-EndpointStatus>" in message
    assert "log group /aws/sagemaker/Endpoints/acoustic-shield-dev-m5-xlarge" in message
    assert "describe-endpoint --endpoint-name acoustic-shield-dev-m5-xlarge --query FailureReason" in message


def test_eventbridge_publishes_as_itself_for_this_rule_and_may_use_the_topics_key(
    serving_template: Templates,
) -> None:
    # Given the Serving stack's alarms topic, its key and its one rule
    template = serving_template("realtime")
    topic_id = only(template, "AWS::SNS::Topic")[0]
    _, key = only(template, "AWS::KMS::Key")
    rule_id = only(template, "AWS::Events::Rule")[0]
    # When the key's and the topic's policies are read
    services = [
        s["Principal"]["Service"]
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "Service" in s.get("Principal", {})
    ]
    (policy,) = template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    # Then the key lets the two services that publish to the topic use it: CloudWatch and EventBridge...
    assert services == [["cloudwatch.amazonaws.com", "events.amazonaws.com"]]
    # ...the topic lets EventBridge publish for this rule only, and CloudWatch for this account's alarms...
    assert statements["EventBridgeNotices"]["Principal"] == {"Service": "events.amazonaws.com"}
    assert statements["EventBridgeNotices"]["Resource"] == {"Ref": topic_id}
    assert statements["EventBridgeNotices"]["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [rule_id, "Arn"]}]}
    }
    assert statements["CloudWatchAlarms"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    # ...and no role publishes notices
    assert not [k for k in template.find_resources("AWS::IAM::Role") if k.startswith("FailuresNotices")]


def test_undelivered_notices_alarm_and_the_dashboard_shows_them(serving_template: Templates) -> None:
    # Given the Serving stack's topic and its notices' dead-letter queue
    template = serving_template("realtime")
    topic_id = only(template, "AWS::SNS::Topic")[0]
    (queue_id,) = template.find_resources("AWS::SQS::Queue")
    # When the alarm on the queue is picked out
    (queue_alarm,) = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
    ]
    # Then it watches that queue and fires on its first message, telling the topic how to read it
    assert queue_alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    assert queue_alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (
        queue_alarm["Threshold"] == 1 and queue_alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    )
    assert queue_alarm["AlarmActions"] == [{"Ref": topic_id}] and queue_alarm["OKActions"] == [
        {"Ref": topic_id}
    ]
    assert "aws sqs receive-message" in json.dumps(queue_alarm["AlarmDescription"])
    # And the dashboard shows the rule's deliveries and failures
    body = json.dumps(only(template, "AWS::CloudWatch::Dashboard")[1]["Properties"]["DashboardBody"])
    assert "TriggeredRules" in body and "FailedInvocations" in body


# --- variants -------------------------------------------------------------------------------------


def test_serverless_variant_has_memory_and_concurrency_no_instances_and_no_volume_key(
    serving_template: Templates,
) -> None:
    # Given serving_mode=serverless with the ONNX int8 fast path
    template = serving_template("serverless")
    # When its endpoint config is read
    props = endpoint_config(template)[1]["Properties"]
    # Then the one variant has memory and concurrency, no instances, and SageMaker gets no volume key
    assert "KmsKeyId" not in props
    (only_variant,) = props["ProductionVariants"]
    assert only_variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 5}
    assert "InstanceType" not in only_variant and "InitialInstanceCount" not in only_variant
    # And nothing scales it but SageMaker; the endpoint is named for its mode, on the CPU image with the
    # fast path; only errors and latency alarm (no instance metrics)
    template.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    resource = endpoint(template)[1]["Properties"]
    assert resource["EndpointName"] == "acoustic-shield-dev-serverless"
    assert "RetainAllVariantProperties" not in resource
    assert "-cpu-py312" in json.dumps(container(template)["Image"])
    assert container(template)["Environment"]["ACOUSTIC_FAST_PATH"] == "onnx-int8"
    assert set(endpoint_alarms(template)) == {"Invocation5XXErrors", "ModelLatency"}


def test_async_variant_writes_results_to_the_bucket_notifies_and_scales_to_zero(
    serving_template: Templates,
) -> None:
    # Given serving_mode=async
    template = serving_template("async")
    # When its topics and endpoint config are read
    topics = template.find_resources("AWS::SNS::Topic")
    success = next(k for k in topics if k.startswith("NotificationsAsyncSuccess"))
    error = next(k for k in topics if k.startswith("NotificationsAsyncError"))
    bucket = {"Fn::ImportValue": "AcousticShield-dev-Data-DataBucketName"}
    # Then results and failures go to the data bucket, encrypted, announced on their own topics
    assert endpoint_config(template)[1]["Properties"]["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": {"Fn::Join": ["", ["s3://", bucket, "/async-output"]]},
            "S3FailurePath": {"Fn::Join": ["", ["s3://", bucket, "/async-failures"]]},
            "KmsKeyId": {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"},
            "NotificationConfig": {"SuccessTopic": {"Ref": success}, "ErrorTopic": {"Ref": error}},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    # And the endpoint scales to zero, and back to one when a request waits without capacity
    assert endpoint(template)[1]["Properties"]["EndpointName"] == "acoustic-shield-dev-async-m5-xlarge"
    target_id, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["MinCapacity"] == 0
    step_id, step = next(
        (k, p)
        for k, p in template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if p["Properties"]["PolicyType"] == "StepScaling"
    )
    assert step["Properties"]["ScalingTargetId"] == {"Ref": target_id}
    assert step["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "HasBacklogWithoutCapacity",
            "Threshold": 1,
            "AlarmActions": [{"Ref": step_id}],
            "Dimensions": [{"Name": "EndpointName", "Value": "acoustic-shield-dev-async-m5-xlarge"}],
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "CustomizedMetricSpecification": Match.object_like(
                        {"MetricName": "ApproximateBacklogSizePerInstance"}
                    )
                }
            ),
        },
    )
    # And the model role reads async-input/, writes the results and publishes to the two topics only
    sids = by_sid(template, "ModelRole")
    assert json.dumps(sids["ReadAsyncRequests"]["Resource"]).endswith('"/async-input/*"]]}')
    written = json.dumps(sids["WriteResults"]["Resource"])
    assert '"/async-output/*"' in written and '"/async-failures/*"' in written
    published = sids["PublishAsyncResults"]["Resource"]
    assert sorted(published, key=json.dumps) == sorted([{"Ref": success}, {"Ref": error}], key=json.dumps)


# --- configuration --------------------------------------------------------------------------------


def config(**overrides: Any) -> Any:
    return load_config(cdk_context(**overrides).get)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"model_data_url": MODEL_A, "model_package_arn": PACKAGE_B},
            "model_package_arn and model_data_url are both set; give one",
        ),
        (
            {"model_package_arn": "arn:aws:sagemaker:eu-west-1:111122223333:model/x"},
            "expected a model package ARN",
        ),
        ({"model_package_arn": "acoustic-shield-dev/3"}, "expected a model package ARN"),
        (
            {"model_data_url": "s3://bucket/models/job/output/model.zip"},
            "expected an S3 URL of a model archive",
        ),
        ({"model_data_url": "https://bucket/model.tar.gz"}, "expected an S3 URL of a model archive"),
        ({"serving_mode": "batch"}, "expected one of 'realtime', 'serverless', 'async'"),
        ({"serverless_memory_mb": "3000"}, "expected 1024, 2048, 3072, 4096, 5120 or 6144"),
        ({"serverless_max_concurrency": "500"}, "expected an integer from 1 to 200"),
        ({"canary_percent": "60"}, "expected an integer from 1 to 50"),
        ({"data_capture_percent": "101"}, "expected an integer from 0 to 100"),
        ({"inference_fast_path": "tensorrt"}, "expected one of 'off', 'onnx', 'onnx-int8'"),
        ({"scale_down_at": "cron(0 19 * *)"}, "expected a six-field cron expression"),
        ({"scale_up_at": "rate(1 day)"}, "expected a six-field cron expression"),
        ({"scale_schedule_timezone": "Mars/Olympus_Mons"}, "expected an IANA time zone"),
        (
            {"scale_down_schedule": "nights"},
            "'scale_down_schedule' = 'nights' is invalid: expected true or false",
        ),
        ({"batch_inference": "yes"}, "'batch_inference' = 'yes' is invalid: expected true or false"),
        (
            {"serving_mode": "serverless", "data_capture_percent": "10"},
            "serverless endpoints do not support data capture",
        ),
    ],
)
def test_invalid_serving_settings_are_refused(overrides: dict[str, str], message: str) -> None:
    # Given one invalid serving setting (or two that conflict)
    # When the context is loaded / Then synthesis stops, saying what is wrong and what is allowed
    with pytest.raises(ConfigError, match=message):
        config(**overrides)


def test_the_onnx_fast_path_is_refused_on_gpu_instances() -> None:
    # Given the ONNX fast path on a GPU instance
    serving = config(serving_instance_type="ml.g5.xlarge", inference_fast_path="onnx").serving
    # When the serving settings are checked / Then they are refused: the fast path is CPU-only
    with pytest.raises(ConfigError, match="runs ONNX Runtime on the CPU only"):
        check_serving(serving)


def test_valid_model_references_are_accepted() -> None:
    # Given a package ARN (also in another partition), a model archive, or no model
    # When each is loaded / Then the first three configure a model, the last none
    assert config(model_package_arn=PACKAGE_B).serving.model_configured
    gov = "arn:aws-us-gov:sagemaker:us-gov-west-1:111122223333:model-package/group-1/12"
    assert config(model_package_arn=gov).serving.model_package_arn == gov
    assert config(model_data_url="s3://b/models/j/output/model.tar.gz").serving.model_configured
    assert not config().serving.model_configured


@pytest.mark.parametrize(
    ("instance_type", "local", "cpus"),
    [
        ("ml.m5.xlarge", False, 4),
        ("ml.c6i.2xlarge", False, 8),
        ("ml.m5.large", False, 2),
        ("ml.g5.xlarge", True, 4),
        ("ml.g4dn.xlarge", True, 4),
        ("ml.m5d.4xlarge", True, 16),
        ("ml.p4d.24xlarge", True, 96),
        ("ml.g6.xlarge", True, 4),
        ("ml.g6e.2xlarge", True, 8),
        ("ml.p5.48xlarge", True, 192),
        ("ml.trn1.2xlarge", True, 8),
        ("ml.p3.2xlarge", False, 8),
    ],
)
def test_instance_facts(instance_type: str, local: bool, cpus: int) -> None:
    # Given an instance type / When its facts are looked up / Then they are AWS's: NVMe instance storage
    # (no volume key) and vCPUs (the CPU alarm's scale)
    assert contract.has_local_storage(instance_type) is local
    assert vcpus(instance_type) == cpus


def test_endpoint_name_follows_mode_and_instance_type() -> None:
    # Given dev's realtime, async and serverless settings
    serving = config().serving
    # When the endpoint is named / Then the name says the mode and, where there are instances, their type
    assert endpoint_name("acoustic-shield", serving) == "acoustic-shield-m5-xlarge"
    assert endpoint_name("p", config(serving_mode="async").serving) == "p-async-m5-xlarge"
    assert endpoint_name("p", config(serving_mode="serverless").serving) == "p-serverless"

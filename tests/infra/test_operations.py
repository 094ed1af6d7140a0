"""Every failure alarms: the Training stack's alarms, failure notices and operations dashboard."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_cdk.assertions import Template

from common import contract
from infra.app_builder import AcousticShieldApp
from infra.config import load_config

from .conftest import MODEL_A, cdk_context
from .test_alarm_metrics import text as dashboard_text
from .test_training_stack import statements


def resources(template: Template, kind: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.find_resources(kind).items() if k.startswith(prefix)}


def only_id(template: Template, kind: str, prefix: str) -> str:
    (found,) = resources(template, kind, prefix)
    return found


def topic_id(template: Template) -> str:
    return only_id(template, "AWS::SNS::Topic", "RegistryNotifications")


def alarms_by_id(template: Template) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::CloudWatch::Alarm").items()}


def text(value: Any) -> str:
    return json.dumps(value)


def by_sid_of(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in found if "Sid" in s}


def test_the_notifications_topic_has_a_key_of_its_own_that_only_its_publishing_services_may_use(
    training_template: Template,
) -> None:
    # Given the Training stack's notifications topic
    key_id = only_id(training_template, "AWS::KMS::Key", "RegistryNotificationsKey")
    topic = resources(training_template, "AWS::SNS::Topic")[topic_id(training_template)]["Properties"]
    key = resources(training_template, "AWS::KMS::Key")[key_id]["Properties"]
    # When the key's policy is read
    services = [
        s["Principal"]["Service"] for s in key["KeyPolicy"]["Statement"] if "Service" in s["Principal"]
    ]
    # Then the topic is encrypted with its own rotated key, whose policy names the two services that publish
    # to it, CloudWatch (alarm actions) and EventBridge (notices), for data keys only
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["EnableKeyRotation"] is True
    assert services == [["cloudwatch.amazonaws.com", "events.amazonaws.com"]]
    (service_statement,) = [s for s in key["KeyPolicy"]["Statement"] if "Service" in s["Principal"]]
    assert service_statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_the_topic_policy_lets_this_accounts_alarms_and_the_notice_rules_publish(
    training_template: Template,
) -> None:
    # Given the Training stack's notifications topic and its notice rules
    topic = topic_id(training_template)
    rules = [
        only_id(training_template, "AWS::Events::Rule", f"OperationsNotices{n}")
        for n in ("BuildFailed", "TrainingTimeLimit")
    ]
    # When its policy is read
    (policy,) = resources(training_template, "AWS::SNS::TopicPolicy").values()
    statements = by_sid_of(policy["Properties"]["PolicyDocument"]["Statement"])
    # Then CloudWatch may publish for the alarms of this account and region...
    alarms = statements["CloudWatchAlarms"]
    assert (alarms["Principal"], alarms["Action"], alarms["Resource"]) == (
        {"Service": "cloudwatch.amazonaws.com"},
        "sns:Publish",
        {"Ref": topic},
    )
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert text(alarms["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(':alarm:*"]]}')
    # ...EventBridge for the two notice rules only...
    notices = statements["EventBridgeNotices"]
    assert notices["Principal"] == {"Service": "events.amazonaws.com"} and notices["Action"] == "sns:Publish"
    assert notices["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [r, "Arn"]} for r in rules]}
    }
    # ...and anything else only over TLS
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_promoter_may_still_publish_to_the_re_keyed_topic(training_template: Template) -> None:
    # Given the notifications topic's own key
    key_id = only_id(training_template, "AWS::KMS::Key", "RegistryNotificationsKey")
    # When the promoter's statements are read
    found = statements(training_template, "PromoterHandlerRole")
    # Then it may publish to the topic and use the topic's key to do so
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
    } in found
    assert by_sid_of(found)["Notify"]["Resource"] == {"Ref": topic_id(training_template)}


def test_every_dead_letter_queue_alarms_on_its_first_message(training_template: Template) -> None:
    # Given the queues behind the schedule, the promoter's rule, the approval rule and the notices
    queues = resources(training_template, "AWS::SQS::Queue")
    assert len(queues) == 4
    # When the SQS alarms are listed by the queue they watch
    by_queue = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a
        for a in alarms_by_id(training_template).values()
        if a.get("Namespace") == "AWS/SQS"
    }
    # Then each has an alarm at one visible message that tells the topic, and says how to read it
    assert set(by_queue) == set(queues)
    for queue, alarm in by_queue.items():
        assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Maximum", 300, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic_id(training_template)}]
        description = text(alarm["AlarmDescription"])
        assert f'"Fn::GetAtt": ["{queue}", "QueueName"]' in description
        assert "aws sqs receive-message --queue-url" in description and "ERROR_MESSAGE" in description


def test_lambda_errors_and_throttles_alarm_naming_the_log_group(training_template: Template) -> None:
    # Given the Training stack's alarms
    alarms = alarms_by_id(training_template)
    # When those of each function are picked out / Then each function has one alarm on its errors and one
    # on its throttles, at the first one, telling the topic and naming the function's log group
    for name in ("Launcher", "Promoter"):
        function = only_id(training_template, "AWS::Lambda::Function", f"{name}HandlerFunction")
        logs = only_id(training_template, "AWS::Logs::LogGroup", f"{name}HandlerLogs")
        for metric in ("Errors", "Throttles"):
            (alarm,) = [
                a
                for k, a in alarms.items()
                if k.startswith(f"Operations{name}{metric}")
                and a["MetricName"] == metric
                and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
            ]
            assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == ("AWS/Lambda", "Sum", 1)
            assert alarm["AlarmActions"] == [{"Ref": topic_id(training_template)}]
            assert {"Ref": logs} in alarm["AlarmDescription"]["Fn::Join"][1]


def notice_rule(template: Template, prefix: str) -> dict[str, Any]:
    (rule,) = resources(template, "AWS::Events::Rule", f"OperationsNotices{prefix}").values()
    props: dict[str, Any] = rule["Properties"]
    return props


def test_failed_and_timed_out_builds_are_announced_with_their_build_id_and_logs(
    training_template: Template,
) -> None:
    # Given the failed-build notice rule
    rule = notice_rule(training_template, "BuildFailed")
    # Then it matches the staging and deploy projects' failed, faulted and timed-out builds...
    assert rule["EventPattern"] == {
        "source": ["aws.codebuild"],
        "detail-type": ["CodeBuild Build State Change"],
        "detail": {
            "build-status": ["FAILED", "FAULT", "TIMED_OUT"],
            "project-name": [
                {"Ref": only_id(training_template, "AWS::CodeBuild::Project", "DatasetStagerProject")},
                {"Ref": only_id(training_template, "AWS::CodeBuild::Project", "DeployerProject")},
            ],
        },
    }
    # ...and tells the topic the build, its status and where its logs are
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": topic_id(training_template)}
    paths = target["InputTransformer"]["InputPathsMap"]
    assert paths["detail-build-id"] == "$.detail.build-id"
    assert paths["detail-additional-information-logs-group-name"] == (
        "$.detail.additional-information.logs.group-name"
    )
    message = target["InputTransformer"]["InputTemplate"]
    for placeholder in ("<detail-build-id>", "<detail-project-name>", "<detail-build-status>"):
        assert placeholder in message
    assert "<detail-additional-information-logs-deep-link>" in message


def test_training_jobs_stopped_at_a_time_limit_are_announced(training_template: Template) -> None:
    # Given the time-limit notice rule
    rule = notice_rule(training_template, "TrainingTimeLimit")
    # Then it matches this app's jobs and its tuning jobs' trials (named after the tuning job) by their
    # secondary status, which names the limit (the primary one, Stopped, does not)...
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {
            "TrainingJobName": [
                {"prefix": "acoustic-shield-dev-train-"},
                {"prefix": "acoustic-shield-dev-hpo-"},
            ],
            "SecondaryStatus": ["MaxWaitTimeExceeded", "MaxRuntimeExceeded"],
        },
    }
    # ...and the message names the job, the limit, where its logs are and which setting raises the limit
    message = rule["Targets"][0]["InputTransformer"]["InputTemplate"]
    assert (
        "training job <detail-TrainingJobName> stopped at a time limit: <detail-SecondaryStatus>" in message
    )
    assert "log group /aws/sagemaker/TrainingJobs" in message and "training_max_wait_seconds" in message


def test_notices_are_published_by_eventbridge_itself_with_retries_and_a_dead_letter_queue(
    training_template: Template,
) -> None:
    # Given the notices' dead-letter queue
    queue = only_id(training_template, "AWS::SQS::Queue", "OperationsNotices")
    (queue_policy,) = [
        p["Properties"]
        for p in resources(training_template, "AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    # Then no role publishes notices any more...
    assert not resources(training_template, "AWS::IAM::Role", "OperationsNoticesPublishRole")
    for prefix in ("BuildFailed", "TrainingTimeLimit"):
        rule = only_id(training_template, "AWS::Events::Rule", f"OperationsNotices{prefix}")
        (target,) = notice_rule(training_template, prefix)["Targets"]
        # ...each rule's target has retries and the queue, and no role...
        assert "RoleArn" not in target
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 21600}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
        # ...and the queue takes that rule's undelivered events
        assert [
            (s["Principal"], s["Action"], s["Resource"])
            for s in queue_policy["PolicyDocument"]["Statement"]
            if s.get("Condition") == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}}
        ] == [({"Service": "events.amazonaws.com"}, "sqs:SendMessage", {"Fn::GetAtt": [queue, "Arn"]})]


def test_the_operations_dashboard_shows_every_alarm_and_failure_metric(training_template: Template) -> None:
    # Given the operations dashboard
    dashboard_id = only_id(training_template, "AWS::CloudWatch::Dashboard", "OperationsDashboard")
    body = text(resources(training_template, "AWS::CloudWatch::Dashboard")[dashboard_id]["Properties"])
    # When the stack's alarms are listed
    alarms = alarms_by_id(training_template)
    # Then its alarm status widget shows each (by its ARN, built from its name)...
    assert alarms
    for alarm in alarms:
        assert f':alarm:", {{"Ref": "{alarm}"}}' in body
    # ...its graphs the functions', builds', queues' and rules' failure metrics, and its name is an output
    for metric in ("Invocations", "Errors", "Throttles", "SucceededBuilds", "FailedBuilds"):
        assert f'\\"{metric}\\"' in body
    assert "ApproximateNumberOfMessagesVisible" in body and "TriggeredRules" in body
    outputs = training_template.to_json()["Outputs"]
    assert outputs["OperationsDashboardName"]["Value"] == {"Ref": dashboard_id}


def test_the_operations_dashboard_finds_this_apps_training_jobs_by_search(
    training_template: Template,
) -> None:
    """Amazon SageMaker AI metrics in Amazon CloudWatch: every training job publishes its instances' utilization
    to /aws/sagemaker/TrainingJobs per Host (<job>/algo-<n>); Amazon CloudWatch Metrics for Monitoring and
    Analyzing Training Jobs: what its metric definitions scrape, per TrainingJobName. Job names change every
    run, so the graphs search (CloudWatch search expression syntax), matching this app's job-name prefix."""
    # Given the operations dashboard of the dev Training stack
    dashboard_id = only_id(training_template, "AWS::CloudWatch::Dashboard", "OperationsDashboard")
    dashboard = resources(training_template, "AWS::CloudWatch::Dashboard")[dashboard_id]
    body = json.loads(dashboard_text(dashboard["Properties"]["DashboardBody"]))
    # When its search expressions are listed, by graph
    searched = {
        widget["properties"]["title"]: [
            part["expression"] for line in widget["properties"]["metrics"] for part in line
        ]
        for widget in body["widgets"]
        if widget["properties"].get("title", "").startswith("Training ")
    }
    # Then the health flags and values of every rule are searched per job, single jobs and tuning trials...
    schema = '{"/aws/sagemaker/TrainingJobs",TrainingJobName}'
    jobs = "(TrainingJobName=acoustic-shield-dev-train OR TrainingJobName=acoustic-shield-dev-hpo)"
    hosts = "(Host=acoustic-shield-dev-train OR Host=acoustic-shield-dev-hpo)"
    flags = " OR ".join(f'MetricName="health_{rule}"' for rule in contract.HEALTH_RULES)
    values = " OR ".join(f'MetricName="health_{rule}_value"' for rule in contract.HEALTH_RULES)
    assert searched["Training health: rules that fired (1) or stayed silent (0), per job"] == [
        f"SEARCH('{schema} ({flags}) {jobs}', 'Maximum', 300)"
    ]
    assert searched["Training health: what each rule measured, per job"] == [
        f"SEARCH('{schema} ({values}) {jobs}', 'Maximum', 300)"
    ]
    # ...and SageMaker's own instance metrics per host of those jobs, which need no Debugger or Profiler
    host = '{"/aws/sagemaker/TrainingJobs",Host}'
    assert [
        *searched["Training instances: CPU (all cores), memory and disk"],
        *searched["Training instances: GPU and GPU memory (summed over GPUs)"],
    ] == [
        f"SEARCH('{host} MetricName=\"{metric}\" {hosts}', 'Maximum', 300)"
        for metric in (
            "CPUUtilization",
            "MemoryUtilization",
            "DiskUtilization",
            "GPUUtilization",
            "GPUMemoryUtilization",
        )
    ]


def test_failure_alarms_can_be_turned_off_per_environment(
    synth_app: Callable[..., AcousticShieldApp],
) -> None:
    # Given failure_alarms=false, with an endpoint
    built = synth_app(failure_alarms="false", model_data_url=MODEL_A)
    assert built.serving is not None
    # When the Training and Serving stacks are synthesized
    training, serving = Template.from_stack(built.training), Template.from_stack(built.serving)
    # Then neither stack has notices, and the Training stack has no alarms and no operations dashboard
    assert not resources(training, "AWS::CloudWatch::Alarm")
    assert not resources(training, "AWS::Events::Rule", "Operations")
    assert not resources(serving, "AWS::Events::Rule")
    assert "OperationsDashboardName" not in training.to_json()["Outputs"]
    # ...while the endpoint keeps the alarms its deployments roll back on
    alarms = resources(serving, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 4
    assert {a["Properties"]["MetricName"] for a in alarms.values()} == {
        "Invocation5XXErrors",
        "ModelLatency",
        "MemoryUtilization",
        "CPUUtilization",
    }


def test_environments_turn_the_behaviours_on_and_off() -> None:
    # Given cdk.json's dev and prod
    # When each is loaded
    dev = load_config(cdk_context().get)
    prod = load_config(cdk_context(env="prod").get)
    # Then dev sleeps at night and runs batch inference, prod does neither; both alarm and verify
    assert (dev.serving.scale_down_schedule, prod.serving.scale_down_schedule) == (True, False)
    assert (dev.serving.batch_inference, prod.serving.batch_inference) == (True, False)
    for env in (dev, prod):
        assert env.operations.failure_alarms and env.operations.verify_deployments

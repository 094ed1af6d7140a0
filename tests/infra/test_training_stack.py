"""The Training stack: least privilege, the launcher and its schedule, staging, registry, images."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra.app_builder import AcousticShieldApp
from infra.config import ConfigError, load_config, load_image_table
from infra.images import rule_evaluator_image
from infra.python_function import POWERTOOLS_VERSION, RUNTIME
from infra.training_stack import tuning_job_prefix
from lambdas.launcher.logic import parse_event, tuning_job_name
from lambdas.launcher.settings import TuningSettings
from lambdas.promoter.logic import notification_key
from tests.infra.conftest import cdk_context

# What the Training stack gives the launcher as TUNING (the defaults).
TUNING = {
    "enabled": False,
    "strategy": "Bayesian",
    "objective": "eval_f1",
    "ranges": "learning_rate=1e-5..1e-3:log, per_device_train_batch_size=4|8|16",
    "max_jobs": 8,
    "max_parallel_jobs": 2,
    "early_stopping": "Auto",
}


def statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    """All statements of the policies attached to the role whose logical ID starts with ``role_prefix``."""
    found = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if f'"{role_prefix}' in roles:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found, f"no policy for role {role_prefix}"
    return found


def by_sid(template: Template, role_prefix: str) -> dict[str, dict[str, Any]]:
    return {s.get("Sid", ""): s for s in statements(template, role_prefix)}


def resolved(value: Any) -> str:
    return json.dumps(value)


def test_no_role_has_managed_policies(training_template: Template) -> None:
    # Given the Training stack's roles: execution, launcher, promoter, staging, deploy and the one EventBridge
    # assumes to start the deploy build (failure notices need none: the topic's policy lets EventBridge publish)
    roles = training_template.find_resources("AWS::IAM::Role")
    assert len(roles) == 6, sorted(roles)
    # When their managed policies are listed
    managed = {
        k: r["Properties"]["ManagedPolicyArns"]
        for k, r in roles.items()
        if "ManagedPolicyArns" in r["Properties"]
    }
    # Then there are none: every right is a statement of the role's own policy
    assert managed == {}


def test_execution_role_reads_only_datasets_and_writes_only_outputs(training_template: Template) -> None:
    # Given the training execution role's statements
    sids = by_sid(training_template, "ExecutionRole")
    # Then it reads datasets/ and writes models/ and checkpoints/ only
    assert sids["ReadDatasets"]["Action"] == "s3:GetObject"
    assert resolved(sids["ReadDatasets"]["Resource"]).endswith('"/datasets/*"]]}')
    writes = resolved(sids["WriteOutputs"]["Resource"])
    assert '"/models/*"' in writes and "datasets" not in writes
    # evaluation/ is written by the promoter alone: a job cannot forge the report it is gated on
    for statement in statements(training_template, "ExecutionRole"):
        assert "evaluation" not in resolved(statement.get("Resource", "")), statement
    assert resolved(sids["SyncCheckpoints"]["Resource"]).endswith('"/checkpoints/*"]]}')
    assert sids["ListOwnPrefixes"]["Condition"] == {
        "StringLike": {"s3:prefix": ["datasets/*", "checkpoints/*"]}
    }
    # And no statement grants every S3 action, or every action
    for statement in statements(training_template, "ExecutionRole"):
        assert statement["Action"] not in ("s3:*", "*")


def test_execution_role_pulls_only_the_training_image(training_template: Template) -> None:
    # Given the training execution role's statements
    sids = by_sid(training_template, "ExecutionRole")
    # When its ECR rights are picked out
    pull, login = sids["PullTrainingImage"], sids["EcrLogin"]
    # Then it pulls from the training image's repository only, and logs in to ECR (IAM cannot scope that)
    assert resolved(pull["Resource"]).endswith(':repository/huggingface-pytorch-training"]]}')
    assert login == {
        "Action": "ecr:GetAuthorizationToken",
        "Effect": "Allow",
        "Resource": "*",
        "Sid": "EcrLogin",
    }


def test_execution_role_metrics_limited_to_sagemaker_namespaces(training_template: Template) -> None:
    # Given the training execution role's metrics statement
    metrics = by_sid(training_template, "ExecutionRole")["JobMetrics"]
    # Then it puts metric data into SageMaker's namespaces only
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


def test_execution_role_is_assumed_only_by_sagemaker(training_template: Template) -> None:
    # Given the training execution role
    (role,) = [
        r
        for k, r in training_template.find_resources("AWS::IAM::Role").items()
        if k.startswith("ExecutionRole")
    ]
    # When its trust policy is read
    trust = role["Properties"]["AssumeRolePolicyDocument"]
    # Then SageMaker is the one principal that may assume it
    assert trust == {
        "Statement": [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
            }
        ],
        "Version": "2012-10-17",
    }
    assert role["Properties"]["Description"] == "AcousticShield training jobs"


def test_launcher_may_create_only_prefixed_training_jobs(training_template: Template) -> None:
    # Given the launcher's right to start training jobs
    start = by_sid(training_template, "LauncherHandlerRole")["StartOwnTrainingJobs"]
    # Then it creates, tags and describes jobs named with this app's prefix, nothing else
    assert sorted(start["Action"]) == [
        "sagemaker:AddTags",
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
    ]
    assert start["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":sagemaker:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":training-job/acoustic-shield-dev-train-*",
            ],
        ]
    }


def test_launcher_holds_its_lease_and_nothing_else_in_the_bucket(training_template: Template) -> None:
    # Given the launcher's rights on the data bucket's objects
    launcher = statements(training_template, "LauncherHandlerRole")
    lease = by_sid(training_template, "LauncherHandlerRole")["HoldLaunchLease"]
    # Then it reads, writes and deletes exactly its lease object (its key encrypted with the data key)
    assert sorted(lease["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert resolved(lease["Resource"]).endswith('"/locks/launcher.json"]]}')
    object_rights = [s for s in launcher if "s3:PutObject" in resolved(s) or "s3:GetObject" in resolved(s)]
    assert object_rights == [lease]
    assert any(
        sorted(s["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"] for s in launcher if "Action" in s
    )


def test_launcher_passes_only_the_execution_role_to_sagemaker(training_template: Template) -> None:
    # Given the launcher's PassRole statement and the execution role
    passing = by_sid(training_template, "LauncherHandlerRole")["PassExecutionRole"]
    (role_id,) = [
        k for k in training_template.find_resources("AWS::IAM::Role") if k.startswith("ExecutionRole")
    ]
    # Then it passes that one role, to SageMaker only, and no other statement passes a role
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    passes = [
        s for s in statements(training_template, "LauncherHandlerRole") if "iam:PassRole" in resolved(s)
    ]
    assert passes == [passing]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_launcher_runs_newest_python_with_validated_environment(training_template: Template) -> None:
    # Given the Training stack / Then a launcher function runs the newest Python runtime, reserving no
    # concurrency, with the validated configuration as its environment (the source dir a content-addressed
    # asset) and the key of the lease that lets one launch through at a time
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": RUNTIME.name,
            "Handler": "lambdas.launcher.handler.handler",
            "ReservedConcurrentExecutions": Match.absent(),
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "JOB_NAME_PREFIX": "acoustic-shield-dev-train-",
                        "LAUNCH_LOCK_KEY": "locks/launcher.json",
                        "DATASET_PREFIX": "datasets/esc50/",
                        "INSTANCE_TYPE": "ml.g5.xlarge",
                        "USE_SPOT": "true",
                        "SOURCE_DIR": {"Fn::Sub": Match.string_like_regexp(r"^s3://.*/[0-9a-f]{64}\.gz$")},
                        "HYPERPARAMETERS": json.dumps(
                            {
                                "learning_rate": "3e-05",
                                "max_length_seconds": "5",
                                "model_name_or_path": "facebook/wav2vec2-base",
                                "num_train_epochs": "4",
                                "per_device_train_batch_size": "8",
                            },
                            sort_keys=True,
                        ),
                    }
                )
            },
        },
    )


# Run with the site-packages out of reach (python -S): the package and what the Lambda runtime adds to it.
RUNTIME_PROBE = """
import json, sys
sys.path[:0] = sys.argv[1:3]
import importlib
handler = importlib.import_module("lambdas." + sys.argv[3] + ".handler")
import aws_lambda_powertools, aws_xray_sdk, wrapt, typing_extensions
from wrapt import __wrapt__
print(json.dumps({
    "modules": {m.__name__: m.__file__ for m in (handler, aws_lambda_powertools, aws_xray_sdk, wrapt, typing_extensions)},
    "version": aws_lambda_powertools.__version__,
    "wrapt_extension": __wrapt__._using_c_extension,
}))
"""
# What the Python runtime of Lambda provides beside a function's code: boto3 and its dependencies.
RUNTIME_PROVIDED = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six")


@pytest.mark.parametrize("package_name", ["launcher", "promoter"])
def test_each_lambda_package_carries_powertools_in_pure_python(
    dev_app: AcousticShieldApp, package_name: str, tmp_path: Path
) -> None:
    # Given the function's synthesized package, and a folder with only what the Lambda runtime provides
    outdir = Path(cdk.Stage.of(dev_app.training).outdir)  # type: ignore[union-attr]
    (package,) = {
        p.parents[2]
        for p in outdir.glob(f"asset.*/lambdas/{package_name}/handler.py")
        if not (p.parents[2] / "infra").exists()  # the deploy build carries the whole app
    }
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PROVIDED:
        module = __import__(name)
        source = (
            Path(module.__file__).parent if module.__file__.endswith("__init__.py") else Path(module.__file__)
        )
        (runtime / source.name).symlink_to(source)
    # When its handler is imported without the site-packages, as the runtime would (outside Lambda)
    environ = {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_FUNCTION_NAME", "PYTHONPATH")}
    run = subprocess.run(
        [sys.executable, "-S", "-c", RUNTIME_PROBE, str(package), str(runtime), package_name],
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it loads, with Powertools (the pinned version), the X-Ray SDK and wrapt from the package itself
    assert run.returncode == 0, run.stderr
    probed = json.loads(run.stdout)
    assert all(Path(file).is_relative_to(package) for file in probed["modules"].values()), probed
    assert probed["version"] == POWERTOOLS_VERSION
    # And wrapt runs its Python implementation: no compiled file built for this machine is in the package
    assert probed["wrapt_extension"] is False
    assert not [p for p in package.rglob("*") if p.suffix in (".so", ".pyd", ".c")]


@pytest.mark.parametrize("package_name", ["launcher", "promoter"])
def test_each_function_traces_actively_and_may_send_only_its_traces(
    training_template: Template, package_name: str
) -> None:
    # Given dev's function
    (function,) = training_template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": f"lambdas.{package_name}.handler.handler"}}
    ).values()
    # Then X-Ray traces it (Powertools' Tracer records its AWS calls as subsegments)
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    # And its role may send traces, the one right X-Ray cannot scope to a resource
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = training_template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role}]}}
    )
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    xray = [s for s in statements if any(str(a).startswith("xray:") for a in s["Action"])]
    assert [(sorted(s["Action"]), s["Resource"]) for s in xray] == [
        (["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "*")
    ]


def test_schedule_targets_launcher_with_retries_and_dead_letters(training_template: Template) -> None:
    # Given dev's retraining schedule (disabled in cdk.json) / Then it still exists, weekly, and targets the
    # launcher with two retries within two hours and a dead-letter queue
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(0 3 ? * SUN *)",
            "State": "DISABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("LauncherHandlerFunction"), "Arn"]},
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 2},
                        "DeadLetterConfig": {
                            "Arn": {"Fn::GetAtt": [Match.string_like_regexp("LauncherDeadLetters"), "Arn"]}
                        },
                    }
                )
            ],
        },
    )


def test_prod_schedule_is_enabled(synth_app: Any) -> None:
    # Given `-c env=prod`
    prod: AcousticShieldApp = synth_app(env="prod")
    # When its Training stack is synthesized
    template = Template.from_stack(prod.training)
    # Then the weekly schedule is enabled, in prod's own stack
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "cron(0 3 ? * SUN *)", "State": "ENABLED"}
    )
    assert prod.training.stack_name == "AcousticShield-prod-Training"


def test_staging_project_is_encrypted_and_runs_the_stage_command(training_template: Template) -> None:
    # Given the staging project
    (project,) = [
        p
        for k, p in training_template.find_resources("AWS::CodeBuild::Project").items()
        if k.startswith("DatasetStager")
    ]
    props = project["Properties"]
    # Then it is encrypted with the data key, unprivileged, and built from its S3 source asset...
    assert props["EncryptionKey"] == {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"}
    assert props["Source"]["Type"] == "S3"
    assert props["Environment"]["PrivilegedMode"] is False
    # ...runs the staging tool with the configured dataset as its defaults...
    spec = json.loads(props["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == [
        'python -m staging "$DATASET_SOURCE" --to "s3://$DATA_BUCKET/$DATASET_PREFIX" '
        '${SOURCE_URL:+--source-url "$SOURCE_URL"}'
    ]
    variables = {v["Name"]: v.get("Value") for v in props["Environment"]["EnvironmentVariables"]}
    assert variables["DATASET_SOURCE"] == "esc50"
    assert variables["DATASET_PREFIX"] == "datasets/esc50/"
    # ...and writes under datasets/ only
    writes = by_sid(training_template, "DatasetStagerRole")["WriteDatasets"]
    assert resolved(writes["Resource"]).endswith('"/datasets/*"]]}')


def test_registry_group_and_encrypted_topic(training_template: Template) -> None:
    # Given the Training stack's model package groups and topics
    groups = training_template.find_resources("AWS::SageMaker::ModelPackageGroup")
    topics = training_template.find_resources("AWS::SNS::Topic")
    # Then there is one group, named after the app, and one topic, encrypted with a key of this stack
    assert [g["Properties"]["ModelPackageGroupName"] for g in groups.values()] == ["acoustic-shield-dev"]
    (topic,) = topics.values()
    key_id, attribute = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"]
    assert attribute == "Arn" and key_id in training_template.find_resources("AWS::KMS::Key")


def test_every_finished_job_of_this_app_reaches_the_promoter(training_template: Template) -> None:
    # Given the Training stack / Then a rule sends each state change of this app's jobs that finishes them
    # (or reports a rule's issues) to the promoter, with retries and a dead-letter queue
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Training Job State Change"],
                "detail": {
                    "TrainingJobName": [{"prefix": "acoustic-shield-dev-train-"}],
                    "$or": [
                        {"TrainingJobStatus": ["Completed", "Failed", "Stopped"]},
                        {"DebugRuleEvaluationStatuses": {"RuleEvaluationStatus": ["IssuesFound"]}},
                        {"ProfilerRuleEvaluationStatuses": {"RuleEvaluationStatus": ["IssuesFound"]}},
                    ],
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("PromoterHandlerFunction"), "Arn"]},
                        "DeadLetterConfig": Match.any_value(),
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 21600, "MaximumRetryAttempts": 4},
                    }
                )
            ],
        },
    )


def test_promoter_gets_the_quality_gate_and_the_inference_image(training_template: Template) -> None:
    # Given the Training stack / Then the promoter reserves no concurrency (a lease per job serializes its
    # registrations), told dev's quality gate, where the evaluation reports go and how registered models are
    # served (the region's CPU inference image)
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.promoter.handler.handler",
            "ReservedConcurrentExecutions": Match.absent(),
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "MODEL_PACKAGE_GROUP": "acoustic-shield-dev",
                        "JOB_NAME_PREFIX": "acoustic-shield-dev-train-",
                        "GATE_RULES": '[{"higher_is_better": true, "metric": "accuracy", "threshold": 0.5}, '
                        '{"higher_is_better": true, "metric": "f1", "threshold": 0.5}, '
                        '{"higher_is_better": true, "metric": "clip_accuracy", "threshold": 0.5}]',
                        "MAX_REGRESSION": "0.01",
                        "MANUAL_APPROVAL": "false",
                        "HEALTH_BLOCKING_RULES": '["loss_not_decreasing", "exploding_gradient"]',
                        "EVALUATION_PREFIX": "evaluation/",
                        "SERVING_INSTANCE_TYPE": "ml.m5.xlarge",
                        "INFERENCE_IMAGE": {
                            "Fn::Join": [
                                "",
                                Match.array_with(
                                    [
                                        "/huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04"
                                    ]
                                ),
                            ]
                        },
                    }
                )
            },
        },
    )


def test_promoter_is_told_the_configured_blocking_health_rules(synth_app: Any) -> None:
    # Given health_blocking_rules chosen on the command line: none, or overfit and the GPU's memory
    # When the Training stack is synthesized
    environments = {
        value: Template.from_stack(synth_app(health_blocking_rules=value).training)
        for value in ("[]", "overfit,gpu_memory")
    }
    # Then the promoter gets them as a JSON list, in the order given
    for value, expected in (("[]", "[]"), ("overfit,gpu_memory", '["overfit", "gpu_memory"]')):
        environments[value].has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": "lambdas.promoter.handler.handler",
                "Environment": {"Variables": Match.object_like({"HEALTH_BLOCKING_RULES": expected})},
            },
        )


def test_promoter_registers_only_in_its_group_and_reads_only_job_outputs(training_template: Template) -> None:
    # Given the promoter's statements
    sids = by_sid(training_template, "PromoterHandlerRole")
    # Then it registers packages in this app's group, reads models/, writes evaluation/ and notifies
    assert resolved(sids["RegisterModels"]["Resource"]).count("acoustic-shield-dev") == 2
    assert ":model-package-group/acoustic-shield-dev" in resolved(sids["RegisterModels"]["Resource"])
    assert resolved(sids["ReadJobOutputs"]["Resource"]).endswith('"/models/*"]]}')
    assert resolved(sids["WriteEvaluations"]["Resource"]).endswith('"/evaluation/*"]]}')
    assert sids["ReadOwnTrainingJobs"]["Action"] == "sagemaker:DescribeTrainingJob"
    assert sids["Notify"]["Action"] == "sns:Publish"


def test_training_image_is_resolved_per_region(training_template: Template) -> None:
    # Given the environment-agnostic Training stack
    mapping = training_template.to_json()["Mappings"]["TrainingImageRegistry"]
    # Then the registry account comes from a per-region mapping, looked up with AWS::Region at deploy time
    assert mapping["us-east-1"] == {"account": "763104351884"}
    assert mapping["cn-north-1"] == {"account": "727897471807"}
    image = training_template.to_json()["Outputs"]["TrainingImage"]["Value"]
    text = resolved(image)
    assert '"Fn::FindInMap": ["TrainingImageRegistry", {"Ref": "AWS::Region"}, "account"]' in text
    assert "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04" in text


# Tags: test_every_taggable_resource_is_tagged (test_compliance_and_determinism.py), for every stack.


# --- tuning jobs, Debugger and Profiler rules ---------------------------------------------------------


def arn_of(statement: dict[str, Any]) -> list[str]:
    """Each resource of a statement as one string (an ARN's Fn::Join parts, tokens as their JSON)."""
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [
        "".join(p if isinstance(p, str) else json.dumps(p) for p in r["Fn::Join"][1])
        if "Fn::Join" in r
        else r
        for r in resources
    ]


def test_launcher_may_create_only_prefixed_tuning_jobs(training_template: Template) -> None:
    # Given the launcher's statements
    sids = by_sid(training_template, "LauncherHandlerRole")
    # When its tuning right is picked out
    tune = sids["StartOwnTuningJobs"]
    # Then it creates, tags and describes tuning jobs with this app's tuning prefix only
    assert sorted(tune["Action"]) == [
        "sagemaker:AddTags",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeHyperParameterTuningJob",
    ]
    (resource,) = arn_of(tune)
    assert re.fullmatch(
        r'arn:\{"Ref": "AWS::Partition"\}:sagemaker:\{"Ref": "AWS::Region"\}:\{"Ref": "AWS::AccountId"\}'
        r":hyper-parameter-tuning-job/acoustic-shield-dev-hpo-\*",
        resource,
    )
    # Listing has no resource-level permissions; it is the only unscoped SageMaker right
    assert sorted(sids["FindRunningJobs"]["Action"]) == [
        "sagemaker:ListHyperParameterTuningJobs",
        "sagemaker:ListTrainingJobs",
    ]
    assert sids["FindRunningJobs"]["Resource"] == "*"


@pytest.mark.parametrize("length", [3, 19, 20, 28])
def test_tuning_job_names_fit_sagemakers_32_characters(length: int) -> None:
    # Given a name prefix of any allowed length (3 to 28 characters)
    name_prefix = "acoustic-shield-environment"[: length - 1] + "z"
    config = load_config(cdk_context(name_prefix=name_prefix).get)
    assert len(config.name_prefix) == length
    # When the tuning prefix is made and the launcher names a job with it
    prefix = tuning_job_prefix(config)
    settings = TuningSettings.from_json(prefix, json.dumps(TUNING))
    name = tuning_job_name(settings.job_name_prefix, parse_event({}, "request-1"))
    # Then the name is within SageMaker's limit and pattern, and the prefix names this app only
    assert len(name) <= 32 and len(prefix) + 8 <= 32
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}", name)
    assert prefix.endswith("-hpo-")
    assert prefix.startswith(config.name_prefix[:15])
    # And the trials SageMaker names after it (<name>-NNN-xxxxxxxx) fit a training job's 63 characters
    assert len(f"{name}-001-1a2b3c4d") <= 63


def test_long_name_prefixes_keep_distinct_tuning_prefixes() -> None:
    # Given two 28-character name prefixes that differ only at the end
    first, second = (
        load_config(cdk_context(name_prefix=f"acoustic-shield-region-{end}").get)
        for end in ("aaaa1", "aaaa2")
    )
    # When their tuning prefixes are made (shortened to fit SageMaker's 32 characters)
    assert len(tuning_job_prefix(first)) < len(first.name_prefix)
    # Then their tuning prefixes differ (a digest of the whole name), so neither app sees the other's jobs
    assert tuning_job_prefix(first) != tuning_job_prefix(second)
    assert not tuning_job_prefix(first).startswith(tuning_job_prefix(second))


def test_launcher_gets_the_tuning_search_and_the_rules(training_template: Template) -> None:
    # Given the launcher function
    (function,) = [
        f
        for f in training_template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "lambdas.launcher.handler.handler"
    ]
    # When its environment is read
    variables = function["Properties"]["Environment"]["Variables"]
    # Then it has the tuning prefix and dev's (default) tuning search, off
    assert variables["TUNING_JOB_PREFIX"] == "acoustic-shield-dev-hpo-"
    assert json.loads(variables["TUNING"]) == {
        "early_stopping": "Auto",
        "enabled": False,
        "max_jobs": 8,
        "max_parallel_jobs": 2,
        "objective": "eval_f1",
        "ranges": "learning_rate=1e-5..1e-3:log, per_device_train_batch_size=4|8|16",
        "strategy": "Bayesian",
    }
    # And dev neither profiles nor runs Debugger rules (both opt-in)
    assert variables["PROFILER_ENABLED"] == "false"
    assert "DEBUGGER_RULES" not in variables and "RULE_EVALUATOR_IMAGE" not in variables
    # And the whole environment stays within Lambda's 4 KB
    assert len(json.dumps({k: v for k, v in variables.items() if isinstance(v, str)})) < 3000


@pytest.fixture(scope="module")
def profiled_template(synth_app: Any) -> Template:
    """Dev with profiling opted in: the Profiler's two default rules, no Debugger rules."""
    return Template.from_stack(synth_app(profiler_enabled="true").training)


def test_debugger_and_profiler_are_opt_in() -> None:
    """Amazon SageMaker Debugger (Developer Guide): Debugger is no longer available to new customers
    from 2026-07-30, and its ProfilerConfig and profiler rules are part of it; SageMaker Profiler support
    ends 2027-06-30. A job carrying rule configurations may be refused in a new account."""
    # Given the shipped configurations / When they are loaded
    for env in ("dev", "prod"):
        rules = load_config(cdk_context(env=env).get).training.rules
        # Then no training job carries a rule or a profiler configuration unless a key asks for it
        assert rules.profiler_enabled is False and rules.debugger_rules == () and not rules.any_rules
    assert load_config(cdk_context(profiler_enabled="true").get).training.rules.any_rules


def test_profiling_tells_the_launcher_the_rules_and_the_image(profiled_template: Template) -> None:
    # Given dev with profiling opted in / When its launcher's environment is read
    (function,) = [
        f
        for f in profiled_template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "lambdas.launcher.handler.handler"
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    # Then the launcher profiles with the two default Profiler rules, and has no Debugger rules
    assert variables["PROFILER_ENABLED"] == "true"
    assert json.loads(variables["PROFILER_RULES"]) == ["LowGPUUtilization", "ProfilerReport"]
    assert variables["PROFILING_INTERVAL_MS"] == "500"
    assert variables["PROFILER_PREFIX"] == "profiler/"
    assert "DEBUGGER_RULES" not in variables
    # And the rule evaluator image is the region's, mapped at deploy time
    image = resolved(variables["RULE_EVALUATOR_IMAGE"])
    assert '"Fn::FindInMap": ["RuleEvaluatorImageRegistry", {"Ref": "AWS::Region"}, "account"]' in image
    assert image.endswith('"/sagemaker-debugger-rules:latest"]]}')


def test_rule_evaluator_image_is_resolved_per_region_from_the_sdks_table(profiled_template: Template) -> None:
    # Given the Training stack's rule image mapping and the SageMaker SDK's table (infra/image_table.json)
    mapping = profiled_template.to_json()["Mappings"]["RuleEvaluatorImageRegistry"]
    table = load_image_table()["debugger"]
    # Then the mapping is the table's registries, region for region
    assert mapping == {region: {"account": account} for region, account in table["registries"].items()}
    assert mapping["us-east-1"] == {"account": "503895931360"}
    assert table["repository"] == "sagemaker-debugger-rules" and table["tag"] == "latest"


def test_execution_role_writes_profiler_outputs_and_runs_rules(profiled_template: Template) -> None:
    # Given dev with profiling opted in (no Debugger rules) and its execution role's statements
    sids = by_sid(profiled_template, "ExecutionRole")
    # Then the job writes profiler/, its rules read it and write their reports there
    assert sids["ListRuleOutputs"]["Condition"] == {"StringLike": {"s3:prefix": ["profiler/*"]}}
    writes = sids["WriteRuleOutputs"]
    assert sorted(writes["Action"]) == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert resolved(writes["Resource"]).endswith('"/profiler/*"]]}')
    assert "debug/" not in resolved(statements(profiled_template, "ExecutionRole"))
    # And rule evaluation jobs pull only the rule image and log only in the processing-job log group
    assert resolved(sids["PullRuleEvaluatorImage"]["Resource"]).endswith(
        ':repository/sagemaker-debugger-rules"]]}'
    )
    assert resolved(sids["RuleEvaluationLogs"]["Resource"]).endswith(
        ':log-group:/aws/sagemaker/ProcessingJobs:*"]]}'
    )


def test_debugger_rules_open_the_debug_prefix(synth_app: Any) -> None:
    # Given Debugger rules on top of profiling
    built: AcousticShieldApp = synth_app(profiler_enabled="true", debugger_rules="LossNotDecreasing,Overfit")
    # When the Training stack is synthesized
    template = Template.from_stack(built.training)
    # Then the role may write debug/ and profiler/, nothing else new
    sids = by_sid(template, "ExecutionRole")
    assert sids["ListRuleOutputs"]["Condition"] == {"StringLike": {"s3:prefix": ["debug/*", "profiler/*"]}}
    writes = [resolved(r) for r in sids["WriteRuleOutputs"]["Resource"]]
    assert [w.endswith('"/debug/*"]]}') for w in writes] == [True, False]
    assert writes[1].endswith('"/profiler/*"]]}')
    # And the launcher is told which rules and where
    (function,) = [
        f
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "lambdas.launcher.handler.handler"
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["DEBUGGER_RULES"]) == ["LossNotDecreasing", "Overfit"]
    assert variables["DEBUG_PREFIX"] == "debug/"


def test_without_rules_there_is_no_rule_image_and_no_rule_grant(training_template: Template) -> None:
    # Given dev: profiling off and no Debugger rules
    template = training_template
    # Then the template neither maps nor pulls the rule image, and the role has no rule prefixes
    assert "RuleEvaluatorImageRegistry" not in template.to_json().get("Mappings", {})
    sids = by_sid(template, "ExecutionRole")
    assert not {"ListRuleOutputs", "WriteRuleOutputs", "PullRuleEvaluatorImage", "RuleEvaluationLogs"} & set(
        sids
    )
    # And the launcher is told profiling is off
    (function,) = [
        f
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "lambdas.launcher.handler.handler"
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["PROFILER_ENABLED"] == "false" and "RULE_EVALUATOR_IMAGE" not in variables


def test_region_without_the_rule_image_stops_synthesis_with_what_to_do() -> None:
    # Given a stack in a region with training images but no rule evaluator image (Israel)
    stack = cdk.Stack(
        cdk.App(), "Somewhere", env=cdk.Environment(account="123456789012", region="il-central-1")
    )
    assert "il-central-1" in load_image_table()["training"]["versions"]["5.3.0"]["registries"]
    # When the rule image is resolved / Then synthesis stops, saying how to go on without rules
    with pytest.raises(
        ConfigError, match=r"region 'il-central-1' has no SageMaker Debugger rule evaluator image"
    ) as e:
        rule_evaluator_image(stack)
    assert "-c profiler_enabled=false -c debugger_rules=[]" in str(e.value)


def test_finished_tuning_jobs_of_this_app_reach_the_promoter(training_template: Template) -> None:
    # Given the Training stack / Then a rule sends each finished tuning job of this app to the promoter,
    # with retries and a dead-letter queue
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker HyperParameter Tuning Job State Change"],
                "detail": {
                    "HyperParameterTuningJobName": [{"prefix": "acoustic-shield-dev-hpo-"}],
                    "HyperParameterTuningJobStatus": ["Completed", "Failed", "Stopped"],
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("PromoterHandlerFunction"), "Arn"]},
                        "DeadLetterConfig": Match.any_value(),
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 21600, "MaximumRetryAttempts": 4},
                    }
                )
            ],
        },
    )


def test_promoter_reads_only_this_apps_tuning_jobs_and_their_trials(training_template: Template) -> None:
    # Given the promoter's statements
    sids = by_sid(training_template, "PromoterHandlerRole")
    # When the jobs it may describe are listed
    jobs = arn_of(sids["ReadOwnTrainingJobs"])
    # Then they are this app's training jobs and the trials of this app's tuning jobs
    assert sorted(j.rsplit(":", 1)[1] for j in jobs) == [
        "training-job/acoustic-shield-dev-hpo-*",  # trials are named after their tuning job
        "training-job/acoustic-shield-dev-train-*",
    ]
    assert sids["ReadOwnTuningJobs"]["Action"] == "sagemaker:DescribeHyperParameterTuningJob"
    (tuning,) = arn_of(sids["ReadOwnTuningJobs"])
    assert tuning.endswith(":hyper-parameter-tuning-job/acoustic-shield-dev-hpo-*")
    # And it removes only its own message markers, the keys its logic writes
    withdraw = sids["WithdrawNotificationMarkers"]
    assert withdraw["Action"] == "s3:DeleteObject"
    assert resolved(withdraw["Resource"]).endswith('"/evaluation/*/notifications/*"]]}')
    key = notification_key("evaluation/", "job", "outcome")
    assert fnmatch.fnmatch(key, "evaluation/*/notifications/*")


def test_promoter_is_told_the_tuning_prefix(training_template: Template) -> None:
    # Given the Training stack / Then the promoter knows the tuning prefix the launcher names jobs with
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.promoter.handler.handler",
            "Environment": {
                "Variables": Match.object_like({"TUNING_JOB_PREFIX": "acoustic-shield-dev-hpo-"})
            },
        },
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"tuning_strategy": "Grid"},
            "'tuning_strategy' = 'Grid' is invalid: expected one of 'Bayesian', 'Random'",
        ),
        (
            {"tuning_objective": "test_f1"},
            "'tuning_objective' = 'test_f1' is invalid: expected one of 'eval_loss', 'eval_accuracy', 'eval_f1'",
        ),
        ({"tuning_max_jobs": "0"}, "'tuning_max_jobs' = '0' is invalid: expected an integer from 1 to 500"),
        (
            {"tuning_max_parallel_jobs": "9"},
            r"tuning_max_parallel_jobs \(9\) must be <= tuning_max_jobs \(8\)",
        ),
        (
            {"tuning_strategy": "Hyperband"},
            "tuning_early_stopping must be 'Off' with tuning_strategy 'Hyperband'",
        ),
        ({"tuning_ranges": "learning_rate=1..2"}, r"tuning range 'learning_rate': 2 is outside \[1e-08, 1\]"),
        ({"tuning_ranges": "push_to_hub=true|false"}, "not a train.py argument that can be tuned"),
        (
            {"debugger_rules": "Overfit,VanishingGradient"},
            "expected a list of different names out of LossNotDecreasing",
        ),
        ({"profiler_rules": "ProfilerReport,ProfilerReport"}, "expected a list of different names out of"),
        ({"profiling_interval_ms": "250"}, "expected 100, 200, 500, 1000, 5000 or 60000"),
        ({"debugger_rules": "[1]"}, "'debugger_rules' = '\\[1\\]' is invalid: expected a list of names"),
    ],
)
def test_tuning_and_rule_settings_are_validated(overrides: dict[str, str], message: str) -> None:
    # Given a context with one invalid tuning or rule setting
    context = cdk_context(**overrides)
    # When it is loaded / Then synthesis stops, saying what is wrong and what is allowed
    with pytest.raises(ConfigError, match=message):
        load_config(context.get)


@pytest.mark.parametrize("value", ["LossNotDecreasing, Overfit", '["LossNotDecreasing", "Overfit"]'])
def test_rule_lists_come_from_the_command_line_or_cdk_json(value: str) -> None:
    # Given `-c debugger_rules=...` as the CLI passes it (a string), and a list in cdk.json
    from_cli = load_config(cdk_context(debugger_rules=value).get)
    context = cdk_context()
    context["acoustic_shield"]["dev"]["debugger_rules"] = ["LossNotDecreasing", "Overfit"]
    # When both are loaded
    from_file = load_config(context.get)
    # Then both are the same typed list
    assert from_cli.training.rules.debugger_rules == from_file.training.rules.debugger_rules
    assert from_cli.training.rules.debugger_rules == ("LossNotDecreasing", "Overfit")
    assert from_cli.training.rules.any_rules is True
    assert load_config(cdk_context(debugger_rules="[]").get).training.rules.any_rules is False


def test_new_data_retrains_in_prod_on_dataset_manifests_only(synth_app: Any) -> None:
    # Given the prod app (retrain_on_new_data on) and the dev app (off)
    prod = Template.from_stack(synth_app(env="prod").training)
    dev = Template.from_stack(synth_app().training)

    # When their EventBridge rules are listed
    def manifest_rules(template: Template) -> dict[str, Any]:
        return {
            k: r
            for k, r in template.find_resources("AWS::Events::Rule").items()
            if r["Properties"].get("EventPattern", {}).get("source") == ["aws.s3"]
        }

    # Then prod has one, on this bucket's datasets/*/manifest.jsonl objects, targeting the launcher with
    # retries and a dead-letter queue; dev has none
    ((_, rule),) = manifest_rules(prod).items()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"wildcard": "datasets/*/manifest.jsonl"}]}
    assert "DataBucketName" in json.dumps(pattern["detail"]["bucket"])
    (target,) = rule["Properties"]["Targets"]
    assert "Launcher" in json.dumps(target["Arn"]) and target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert "DeadLetterConfig" in target
    assert manifest_rules(dev) == {}
    # And the launcher knows the debounce window
    prod.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"RETRAIN_DEBOUNCE_MINUTES": "60"})}},
    )

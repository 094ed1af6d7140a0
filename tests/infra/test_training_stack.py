"""The Training stack: least privilege, the launcher and its schedule, staging, registry, images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Match, Template

from stacks.app_builder import AcousticShieldApp
from stacks.python_function import RUNTIME
from tests.infra.conftest import ROOT


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
    for role in training_template.find_resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_execution_role_reads_only_datasets_and_writes_only_outputs(training_template: Template) -> None:
    sids = by_sid(training_template, "ExecutionRole")
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
    for statement in statements(training_template, "ExecutionRole"):
        assert statement["Action"] not in ("s3:*", "*")


def test_execution_role_pulls_only_the_training_image(training_template: Template) -> None:
    pull = by_sid(training_template, "ExecutionRole")["PullTrainingImage"]
    assert resolved(pull["Resource"]).endswith(':repository/huggingface-pytorch-training"]]}')
    login = by_sid(training_template, "ExecutionRole")["EcrLogin"]
    assert login == {
        "Action": "ecr:GetAuthorizationToken",
        "Effect": "Allow",
        "Resource": "*",
        "Sid": "EcrLogin",
    }


def test_execution_role_metrics_limited_to_sagemaker_namespaces(training_template: Template) -> None:
    metrics = by_sid(training_template, "ExecutionRole")["JobMetrics"]
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


def test_execution_role_is_assumed_only_by_sagemaker(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"Service": "sagemaker.amazonaws.com"},
                    }
                ]
            },
            "Description": "AcousticShield training jobs",
        },
    )


def test_launcher_may_create_only_prefixed_training_jobs(training_template: Template) -> None:
    start = by_sid(training_template, "LauncherHandlerRole")["StartOwnTrainingJobs"]
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


def test_launcher_passes_only_the_execution_role_to_sagemaker(training_template: Template) -> None:
    passing = by_sid(training_template, "LauncherHandlerRole")["PassExecutionRole"]
    assert passing["Action"] == "iam:PassRole"
    (role_id,) = [
        k for k in training_template.find_resources("AWS::IAM::Role") if k.startswith("ExecutionRole")
    ]
    assert passing["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_launcher_runs_newest_python_alone_with_validated_environment(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": RUNTIME.name,
            "Handler": "launcher.handler.handler",
            "ReservedConcurrentExecutions": 1,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "JOB_NAME_PREFIX": "acoustic-shield-dev-train-",
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


def test_the_launcher_package_carries_the_contract_it_imports(dev_app: AcousticShieldApp) -> None:
    # Given the launcher's synthesized Lambda package (the repository's ml_code is not in it)
    outdir = Path(cdk.Stage.of(dev_app.training).outdir)  # type: ignore[union-attr]
    (package,) = {p.parent.parent for p in outdir.glob("asset.*/launcher/handler.py")}
    # When its logic module is imported there, as the Lambda runtime does
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import launcher.logic as m; print(m.layout.EVENT_HYPERPARAMETERS['seed'][0])",
        ],
        cwd=package,
        env={**os.environ, "PYTHONPATH": str(package)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it finds the allow-list of event hyperparameters in its own package
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "int"
    assert (package / "launcher" / "layout.py").read_bytes() == (ROOT / "ml_code" / "layout.py").read_bytes()


def test_schedule_targets_launcher_with_retries_and_dead_letters(training_template: Template) -> None:
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
    prod: AcousticShieldApp = synth_app(env="prod")
    Template.from_stack(prod.training).has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "cron(0 3 ? * SUN *)", "State": "ENABLED"}
    )
    assert prod.training.stack_name == "AcousticShield-prod-Training"


def test_staging_project_is_encrypted_and_runs_the_stage_command(training_template: Template) -> None:
    (project,) = [
        p
        for k, p in training_template.find_resources("AWS::CodeBuild::Project").items()
        if k.startswith("DatasetStager")
    ]
    props = project["Properties"]
    assert "EncryptionKey" in props
    assert props["Source"]["Type"] == "S3"
    assert props["Environment"]["PrivilegedMode"] is False
    spec = json.loads(props["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == [
        'python -m ml_code.stage "$DATASET_SOURCE" --to "s3://$DATA_BUCKET/$DATASET_PREFIX" '
        '${SOURCE_URL:+--source-url "$SOURCE_URL"}'
    ]
    variables = {v["Name"]: v.get("Value") for v in props["Environment"]["EnvironmentVariables"]}
    assert variables["DATASET_SOURCE"] == "esc50"
    assert variables["DATASET_PREFIX"] == "datasets/esc50/"
    writes = by_sid(training_template, "DatasetStagerRole")["WriteDatasets"]
    assert resolved(writes["Resource"]).endswith('"/datasets/*"]]}')


def test_registry_group_and_encrypted_topic(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "acoustic-shield-dev"}
    )
    training_template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


def test_every_finished_job_of_this_app_reaches_the_promoter(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Training Job State Change"],
                "detail": {
                    "TrainingJobName": [{"prefix": "acoustic-shield-dev-train-"}],
                    "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
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
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "promoter.handler.handler",
            "ReservedConcurrentExecutions": 1,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "MODEL_PACKAGE_GROUP": "acoustic-shield-dev",
                        "JOB_NAME_PREFIX": "acoustic-shield-dev-train-",
                        "MIN_ACCURACY": "0.5",
                        "MIN_F1": "0.5",
                        "MIN_CLIP_ACCURACY": "0.5",
                        "MAX_REGRESSION": "0.01",
                        "MANUAL_APPROVAL": "false",
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


def test_promoter_registers_only_in_its_group_and_reads_only_job_outputs(training_template: Template) -> None:
    sids = by_sid(training_template, "PromoterHandlerRole")
    assert resolved(sids["RegisterModels"]["Resource"]).count("acoustic-shield-dev") == 2
    assert ":model-package-group/acoustic-shield-dev" in resolved(sids["RegisterModels"]["Resource"])
    assert resolved(sids["ReadJobOutputs"]["Resource"]).endswith('"/models/*"]]}')
    assert resolved(sids["WriteEvaluations"]["Resource"]).endswith('"/evaluation/*"]]}')
    assert sids["ReadOwnTrainingJobs"]["Action"] == "sagemaker:DescribeTrainingJob"
    assert sids["Notify"]["Action"] == "sns:Publish"


def test_training_image_is_resolved_per_region(training_template: Template) -> None:
    mapping = training_template.to_json()["Mappings"]["TrainingImageRegistry"]
    assert mapping["us-east-1"] == {"account": "763104351884"}
    assert mapping["cn-north-1"] == {"account": "727897471807"}
    image = training_template.to_json()["Outputs"]["TrainingImage"]["Value"]
    text = resolved(image)
    assert '"Fn::FindInMap": ["TrainingImageRegistry", {"Ref": "AWS::Region"}, "account"]' in text
    assert "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04" in text


def test_every_resource_is_tagged(training_template: Template) -> None:
    training_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Tags": Match.array_with(
                [{"Key": "environment", "Value": "dev"}, {"Key": "project", "Value": "acoustic-shield"}]
            )
        },
    )

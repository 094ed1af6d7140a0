"""Deploy after approval: the CodeBuild project, its rule, its source and its narrow role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

from stacks.app_builder import AcousticShieldApp

from .test_training_stack import statements


def deploy_project(template: Template) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, p)
        for k, p in template.find_resources("AWS::CodeBuild::Project").items()
        if k.startswith("Deployer")
    ]
    return found


def test_project_deploys_only_the_serving_stack_with_the_approved_package(
    training_template: Template,
) -> None:
    props = deploy_project(training_template)[1]["Properties"]
    spec = json.loads(props["Source"]["BuildSpec"])
    assert spec["phases"]["install"]["commands"] == [
        "python -m pip install --quiet -r requirements.txt",
        "npm ci --no-audit --no-fund",
    ]
    assert spec["phases"]["build"]["commands"][-1] == (
        "npx cdk deploy AcousticShield-dev-Serving --exclusively -c env=dev"
        ' -c model_package_arn="$MODEL_PACKAGE_ARN" --require-approval never --no-notices'
    )
    assert spec["phases"]["build"]["commands"][0].startswith('test -n "$MODEL_PACKAGE_ARN"')
    assert props["EncryptionKey"] == {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"}
    assert props["ConcurrentBuildLimit"] == 1
    assert props["Source"]["Type"] == "S3"
    assert props["Environment"]["PrivilegedMode"] is False


def test_role_may_only_assume_the_cdk_bootstrap_roles(training_template: Template) -> None:
    found = statements(training_template, "DeployerRole")
    assume = [s for s in found if "sts:AssumeRole" in json.dumps(s["Action"])]
    assert assume == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Resource": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":iam::",
                        {"Ref": "AWS::AccountId"},
                        ":role/cdk-hnb659fds-*-role-",
                        {"Ref": "AWS::AccountId"},
                        "-",
                        {"Ref": "AWS::Region"},
                    ],
                ]
            },
            "Sid": "AssumeCdkRoles",
        }
    ]
    # Everything else is CodeBuild's own plumbing: its logs, its source asset, the key, its reports
    for statement in found:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            assert action.split(":")[0] in {"sts", "logs", "s3", "kms", "codebuild"}, action
            assert not action.startswith(("sagemaker:", "iam:", "cloudformation:")), action
    for role in training_template.find_resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_an_approved_package_of_this_group_starts_the_build_with_its_arn(training_template: Template) -> None:
    project_id = deploy_project(training_template)[0]
    training_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": ["acoustic-shield-dev"],
                    "ModelApprovalStatus": ["Approved"],
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [project_id, "Arn"]},
                        "InputTransformer": {
                            "InputPathsMap": {"detail-ModelPackageArn": "$.detail.ModelPackageArn"},
                            "InputTemplate": '{"environmentVariablesOverride":[{"name":"MODEL_PACKAGE_ARN",'
                            '"type":"PLAINTEXT","value":<detail-ModelPackageArn>}]}',
                        },
                        "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 21600},
                        "DeadLetterConfig": {"Arn": Match.any_value()},
                    }
                )
            ],
        },
    )


def test_source_is_the_app_with_its_pinned_dependencies(dev_app: AcousticShieldApp) -> None:
    # Given the deploy project's bundled source asset
    outdir = Path(dev_app.training.node.root.outdir)  # type: ignore[attr-defined]
    source = dev_app.training.deployer.source
    (asset,) = [p for p in outdir.glob("asset.*") if p.name.endswith(source.asset_hash)]
    # Then it holds what `cdk deploy` needs, and nothing of the tests or caches
    top = {p.name for p in asset.iterdir()}
    assert top == {
        "app.py",
        "cdk.json",
        "requirements.txt",
        "package.json",
        "package-lock.json",
        "stacks",
        "functions",
        "ml_code",
    }
    assert (asset / "stacks" / "serving_stack.py").is_file()
    assert (asset / "stacks" / "image_table.json").is_file()
    assert not any("__pycache__" in str(p) for p in asset.rglob("*"))

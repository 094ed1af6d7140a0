"""Deploy after approval: the CodeBuild project, its rule, its source, its verification and its narrow role."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

from infra.app_builder import AcousticShieldApp

from .conftest import PACKAGE_B
from .test_training_stack import by_sid, statements

DEPLOY = (
    "npx cdk deploy AcousticShield-dev-Serving --exclusively -c env=dev"
    ' -c model_package_arn="$MODEL_PACKAGE_ARN" --require-approval never --no-notices'
    " --outputs-file serving-outputs.json"
)


def deploy_project(template: Template) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, p)
        for k, p in template.find_resources("AWS::CodeBuild::Project").items()
        if k.startswith("Deployer")
    ]
    return found


def build_spec(template: Template) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(deploy_project(template)[1]["Properties"]["Source"]["BuildSpec"])
    return spec


def test_project_deploys_only_the_serving_stack_with_the_approved_package(
    training_template: Template,
) -> None:
    # Given the deploy project and its build spec
    props = deploy_project(training_template)[1]["Properties"]
    spec = build_spec(training_template)
    # Then it installs the pinned toolchain and deploys the Serving stack alone, with the approved package
    assert spec["phases"]["install"]["commands"][:2] == [
        "python -m pip install --quiet -r requirements.txt",
        "npm ci --no-audit --no-fund",
    ]
    assert spec["phases"]["build"]["commands"][1] == DEPLOY
    assert spec["phases"]["build"]["commands"][0].startswith('test -n "$MODEL_PACKAGE_ARN"')
    # And one build at a time, encrypted with the data key, unprivileged, from its S3 source asset
    assert props["EncryptionKey"] == {"Fn::ImportValue": "AcousticShield-dev-Data-KeyArn"}
    assert props["ConcurrentBuildLimit"] == 1
    assert props["Source"]["Type"] == "S3"
    assert props["Environment"]["PrivilegedMode"] is False


def test_every_deployment_is_verified_against_the_endpoint_and_ends_with_the_stack_status(
    training_template: Template,
) -> None:
    # Given the deploy project's build spec
    spec = build_spec(training_template)
    # When the commands after cdk deploy are read
    outputs = "$(jq -r '.\"AcousticShield-dev-Serving\".{}' serving-outputs.json)"
    # Then the endpoint must serve the config the deployment created and the approved package, read from
    # cdk's outputs file; the verification's only extra dependency is the pinned boto3
    assert spec["phases"]["build"]["commands"][2] == (
        f'python -m tools.invoke --verify --endpoint "{outputs.format("EndpointName")}"'
        f' --expect-config "{outputs.format("EndpointConfigName")}" --expect-package "$MODEL_PACKAGE_ARN"'
    )
    assert spec["phases"]["install"]["commands"][2] == (
        "python -m pip install --quiet \"$(grep -E '^boto3==' staging/requirements.txt)\""
    )
    # ...and whatever happened, the log ends with the Serving stack's CloudFormation status
    assert spec["phases"]["post_build"]["commands"] == [
        "aws cloudformation describe-stacks --stack-name AcousticShield-dev-Serving"
        " --query 'Stacks[0].[StackName,StackStatus,StackStatusReason]' --output text || true"
    ]


def test_the_staging_requirements_pin_the_boto3_the_verification_installs() -> None:
    # Given the staging requirements the deploy build greps boto3's pin from
    pins = (Path(__file__).resolve().parents[2] / "staging" / "requirements.txt").read_text()
    # When the build's pattern picks its line
    picked = [line for line in pins.splitlines() if re.match(r"^boto3==", line)]
    # Then there is exactly one, an exact version
    assert len(picked) == 1
    assert re.fullmatch(r"boto3==\d+\.\d+\.\d+", picked[0].strip()), picked


def test_verification_reads_and_invokes_only_this_apps_endpoints(training_template: Template) -> None:
    # Given the deploy role's statements
    sids = by_sid(training_template, "DeployerRole")

    def resource(sid: str) -> str:
        return json.dumps(sids[sid]["Resource"])

    # Then it describes and invokes endpoints named <name_prefix>-*, nothing that changes them
    assert sids["VerifyEndpoint"]["Action"] == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    assert resource("VerifyEndpoint").endswith(':endpoint/acoustic-shield-dev-*"]]}')
    # And describes only the configs and models CloudFormation names, and packages of this group only
    assert sids["ReadServedModels"]["Action"] == [
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:DescribeModel",
    ]
    assert ':endpoint-config/*"' in resource("ReadServedModels") and ':model/*"' in resource(
        "ReadServedModels"
    )
    assert sids["ReadModelPackages"]["Action"] == "sagemaker:DescribeModelPackage"
    assert resource("ReadModelPackages").endswith(':model-package/acoustic-shield-dev/*"]]}')
    # And reads the package's evaluation report (its labels), and the Serving stack's status
    assert sids["ReadEvaluations"]["Action"] == "s3:GetObject"
    assert resource("ReadEvaluations").endswith('"/evaluation/*"]]}')
    assert sids["ReadServingStackStatus"]["Action"] == "cloudformation:DescribeStacks"
    assert resource("ReadServingStackStatus").endswith(':stack/AcousticShield-dev-Serving/*"]]}')


def test_without_verification_the_build_only_deploys(synth_app: Callable[..., AcousticShieldApp]) -> None:
    # Given verify_deployments=false
    built = synth_app(verify_deployments="false")
    # When the Training stack is synthesized
    template = Template.from_stack(built.training)
    # Then the build deploys and reports the stack status, and the role gets no SageMaker rights
    spec = build_spec(template)
    assert spec["phases"]["build"]["commands"][1:] == [DEPLOY]
    assert len(spec["phases"]["install"]["commands"]) == 2
    actions = json.dumps([s["Action"] for s in statements(template, "DeployerRole")])
    assert "sagemaker:" not in actions and "cloudformation:DescribeStacks" in actions
    assert "ReadEvaluations" not in by_sid(template, "DeployerRole")


def test_role_may_only_assume_the_cdk_bootstrap_roles(training_template: Template) -> None:
    # Given the deploy role's statements
    found = statements(training_template, "DeployerRole")
    # When those that assume roles are picked out
    assume = [s for s in found if "sts:AssumeRole" in json.dumps(s["Action"])]
    # Then the only one assumes this account's and region's CDK bootstrap roles
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
    # And everything else is CodeBuild's own plumbing (its logs, its source asset, the key, its reports) and
    # the verification's reads: nothing it could change a resource with
    verification = {
        "sagemaker:DescribeEndpoint",
        "sagemaker:InvokeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:DescribeModel",
        "sagemaker:DescribeModelPackage",
        "cloudformation:DescribeStacks",
    }
    for statement in found:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            assert action.split(":")[0] in {"sts", "logs", "s3", "kms", "codebuild"} or action in verification
            assert not action.startswith("iam:"), action
    for role in training_template.find_resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_an_approved_package_of_this_group_starts_the_build_with_its_arn(training_template: Template) -> None:
    # Given the deploy project
    project_id = deploy_project(training_template)[0]
    # Then a rule starts it when a package of this app's group is approved, passing the package's ARN, with
    # retries and a dead-letter queue
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


def test_the_source_asset_alone_synthesizes_the_stack_the_build_deploys_with_the_outputs_it_reads(
    dev_app: AcousticShieldApp, training_template: Template, tmp_path: Path
) -> None:
    # Given the deploy project's bundled source asset, unpacked as CodeBuild unpacks it
    outdir = Path(dev_app.training.node.root.outdir)  # type: ignore[attr-defined]
    source = dev_app.training.deployer.source
    (asset,) = [p for p in outdir.glob("asset.*") if p.name.endswith(source.asset_hash)]
    workdir = shutil.copytree(asset, tmp_path / "src")
    spec = build_spec(training_template)
    install, build = spec["phases"]["install"]["commands"], spec["phases"]["build"]["commands"]
    # Then the files the install commands read are in it: pip's requirements, npm ci's lock file, the pin grep's
    assert (workdir / shlex.split(install[0])[-1]).is_file()
    assert {"package.json", "package-lock.json"} <= {p.name for p in workdir.iterdir()}
    assert (workdir / re.search(r"'\^boto3==' (\S+?)\)", install[2]).group(1)).is_file()  # type: ignore[union-attr]
    # And the verification's module is in it, and nothing of the tests or caches is
    assert (workdir / Path(*shlex.split(build[2])[2].split("."))).with_suffix(".py").is_file()
    assert not (workdir / "tests").exists()
    assert not any("__pycache__" in str(p) for p in workdir.rglob("*"))

    # When cdk.json's app command runs there alone, with the deploy command's context, as `cdk deploy` runs it
    words = shlex.split(build[1].replace("$MODEL_PACKAGE_ARN", PACKAGE_B))
    stack_name = words[words.index("deploy") + 1]
    overrides = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "-c")
    context = {**json.loads((workdir / "cdk.json").read_text())["context"], **overrides}
    _, *app_args = shlex.split(json.loads((workdir / "cdk.json").read_text())["app"])
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    run = subprocess.run(
        [sys.executable, *app_args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )

    # Then it synthesizes the stack the build deploys, serving the approved package
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    assert manifest["artifacts"][stack_name]["type"] == "aws:cloudformation:stack"
    template = json.loads((tmp_path / "cdk.out" / f"{stack_name}.template.json").read_text())
    assert PACKAGE_B in json.dumps(template["Resources"])
    # And that stack has every output the verification reads back from the outputs file
    read = re.findall(rf"\.\\?\"{re.escape(stack_name)}\\?\"\.(\w+)", build[2])
    assert read == ["EndpointName", "EndpointConfigName"]
    assert set(read) <= set(template["Outputs"])

"""Deploy after approval: a CodeBuild project runs `cdk deploy` of the Serving stack with the approved model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.contract import EVALUATION_PREFIX
from tasks import DEFAULT_TASK

from ..assets import ROOT, app_source
from ..codebuild_project import IN_PLACE, CodeBuildProject, CodeBuildProjectProps
from ..nag import finding, objects_finding
from ..queues import dead_letter_queue

# The roles `cdk bootstrap` creates (default qualifier): deploy, file publishing, lookup, ...
BOOTSTRAP_ROLES = "cdk-hnb659fds-*-role"
# Where `cdk deploy --outputs-file` leaves the Serving stack's outputs for the verification.
OUTPUTS_FILE = "serving-outputs.json"


def build_spec(*, env_name: str, stack_name: str, verify: bool, task: str = DEFAULT_TASK) -> dict[str, Any]:
    """Installs the pinned toolchain, deploys the Serving stack (nothing else) of ``task`` with the given
    package and, with ``verify``, checks that the endpoint serves it: ``python -m tools.invoke --verify``.

    After the build, successful or not, the log ends with the Serving stack's CloudFormation status.
    """

    def output(key: str) -> str:
        return f"$(jq -r '.\"{stack_name}\".{key}' {OUTPUTS_FILE})"

    install = ["python -m pip install --quiet -r requirements.txt", "npm ci --no-audit --no-fund"]
    # The task decides the Serving stack's name and the endpoint's; the default task needs no word.
    task_context = f" -c task={task}" if task != DEFAULT_TASK else ""
    build = [
        'test -n "$MODEL_PACKAGE_ARN" || '
        '{ echo "start the build with MODEL_PACKAGE_ARN=<approved model package ARN>"; exit 1; }',
        # --exclusively: the Data stack (a dependency) is never touched from here.
        f"npx cdk deploy {stack_name} --exclusively -c env={env_name}{task_context}"
        ' -c model_package_arn="$MODEL_PACKAGE_ARN" --require-approval never --no-notices'
        f" --outputs-file {OUTPUTS_FILE}",
    ]
    if verify:
        # The same boto3 the staging tool pins; the verification needs nothing else of ml_code's requirements.
        install.append("python -m pip install --quiet \"$(grep -E '^boto3==' staging/requirements.txt)\"")
        # CloudFormation can report success while SageMaker kept the previous endpoint config (a rollback it
        # did not surface): only the endpoint itself says what it serves.
        build.append(
            f'python -m tools.invoke --verify --endpoint "{output("EndpointName")}"'
            f' --expect-config "{output("EndpointConfigName")}" --expect-package "$MODEL_PACKAGE_ARN"'
        )
    return {
        "version": "0.2",
        "env": {"variables": {"CDK_DISABLE_CLI_TELEMETRY": "true"}},
        "phases": {
            "install": {"runtime-versions": {"python": "3.12", "nodejs": "20"}, "commands": install},
            "build": {"commands": build},
            "post_build": {
                "commands": [
                    f"aws cloudformation describe-stacks --stack-name {stack_name}"
                    " --query 'Stacks[0].[StackName,StackStatus,StackStatusReason]' --output text || true"
                ]
            },
        },
    }


@dataclass(frozen=True, kw_only=True)
class DeployerProps:
    """``stack_name``: the Serving stack to deploy; ``group_name``: the model package group to watch.

    ``verify`` (default true): check the endpoint after each deployment, with read and invoke rights on
    endpoints named ``endpoint_name_prefix``* and read rights on the evaluation reports in ``bucket``.
    """

    env_name: str
    stack_name: str
    group_name: str
    key: kms.IKey
    bucket: s3.IBucket
    endpoint_name_prefix: str
    verify: bool = True
    task: str = DEFAULT_TASK  # the task whose Serving stack the build deploys


class ModelDeployer(Construct):
    """Runs the same `cdk deploy` a person would, whenever a package of the group becomes Approved.

    The build's role can change nothing itself: it assumes the CDK bootstrap roles, so the deployment runs
    with the rights `cdk bootstrap` granted, exactly as a human deploy does; its own rights only read the
    Serving stack's status and what the verification checks (and invoke the endpoint once).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: DeployerProps) -> None:
        super().__init__(scope, construct_id)
        statements, findings = self._deployment(props)
        if props.verify:
            verify_statements, verify_findings = self._verification(props)
            statements += verify_statements
            findings.update(verify_findings)
        self.build = self._build_project(props, statements, findings)
        self.source, self.log_group = self.build.source, self.build.log_group
        self.role, self.project = self.build.role, self.build.project

        self.dead_letters = dead_letter_queue(self, target="approval rule")
        self.rule = self._approval_rule(props)

    def _deployment(self, props: DeployerProps) -> tuple[tuple[iam.PolicyStatement, ...], dict[str, str]]:
        """Assume the CDK bootstrap roles and read the Serving stack's status: statements and findings."""
        stack = cdk.Stack.of(self)
        bootstrap_roles = (
            f"arn:{cdk.Aws.PARTITION}:iam::{cdk.Aws.ACCOUNT_ID}:role/"
            f"{BOOTSTRAP_ROLES}-{cdk.Aws.ACCOUNT_ID}-{cdk.Aws.REGION}"
        )
        serving_stack = stack.format_arn(
            service="cloudformation", resource="stack", resource_name=f"{props.stack_name}/*"
        )
        statements: tuple[iam.PolicyStatement, ...] = (
            iam.PolicyStatement(
                sid="AssumeCdkRoles", actions=["sts:AssumeRole"], resources=[bootstrap_roles]
            ),
            iam.PolicyStatement(
                sid="ReadServingStackStatus",
                actions=["cloudformation:DescribeStacks"],
                resources=[serving_stack],
            ),
        )
        findings = {
            f"Resource::{finding(self, bootstrap_roles)}": "The CDK bootstrap roles of this account "
            "and region (deploy, file publishing, lookup); cdk deploy picks the one each step needs.",
            f"Resource::{finding(self, serving_stack)}": "The Serving stack's ID suffix is made by "
            "CloudFormation; the name is this app's.",
        }
        return statements, findings

    def _build_project(
        self,
        props: DeployerProps,
        statements: tuple[iam.PolicyStatement, ...],
        findings: dict[str, str],
    ) -> CodeBuildProject:
        """The CodeBuild project that runs `cdk deploy` of the Serving stack (and the verification)."""
        return CodeBuildProject(
            self,
            IN_PLACE,
            props=CodeBuildProjectProps(
                description=f"Deploy {props.stack_name} with an approved model package (cdk deploy)",
                role_description="AcousticShield model deployments: assumes the CDK bootstrap roles only",
                sources=app_source(),
                source_dir=ROOT / "infra",
                build_spec=build_spec(
                    env_name=props.env_name, stack_name=props.stack_name, verify=props.verify, task=props.task
                ),
                environment_variables={"MODEL_PACKAGE_ARN": ""},
                key=props.key,
                compute_type=codebuild.ComputeType.SMALL,
                # A blue/green update with its baking periods takes up to about an hour and a half.
                timeout=cdk.Duration.hours(2),
                # Two approvals in a row must not race two deployments of one stack: the second start is
                # throttled and EventBridge retries it once the first is done.
                concurrent_build_limit=1,
                log_retention=logs.RetentionDays.SIX_MONTHS,
                statements=statements,
                statements_first=True,
                findings=findings,
            ),
        )

    def _approval_rule(self, props: DeployerProps) -> events.Rule:
        """Starts the build with the package's ARN whenever a package of the group becomes Approved."""
        package_arn = events.EventField.from_path("$.detail.ModelPackageArn")
        return events.Rule(
            self,
            "OnApproval",
            description=f"Deploy approved {props.group_name} model packages",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [props.group_name],
                    "ModelApprovalStatus": ["Approved"],
                },
            ),
            targets=[
                targets.CodeBuildProject(
                    self.project,
                    event=events.RuleTargetInput.from_object(
                        {
                            "environmentVariablesOverride": [
                                {"name": "MODEL_PACKAGE_ARN", "type": "PLAINTEXT", "value": package_arn}
                            ]
                        }
                    ),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=10,
                    max_event_age=cdk.Duration.hours(6),
                )
            ],
        )

    def _verification(self, props: DeployerProps) -> tuple[tuple[iam.PolicyStatement, ...], dict[str, str]]:
        """Read what the endpoint serves and invoke it once: the statements and their cdk-nag findings."""
        stack = cdk.Stack.of(self)

        def sagemaker_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        endpoints = sagemaker_arn("endpoint", f"{props.endpoint_name_prefix}*")
        configs, models = sagemaker_arn("endpoint-config", "*"), sagemaker_arn("model", "*")
        packages = sagemaker_arn("model-package", f"{props.group_name}/*")
        statements = (
            iam.PolicyStatement(
                sid="VerifyEndpoint",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"],
                resources=[endpoints],
            ),
            iam.PolicyStatement(
                sid="ReadServedModels",
                actions=["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
                resources=[configs, models],
            ),
            iam.PolicyStatement(
                sid="ReadModelPackages", actions=["sagemaker:DescribeModelPackage"], resources=[packages]
            ),
            # The approved package's labels are in its evaluation report.
            iam.PolicyStatement(
                sid="ReadEvaluations",
                actions=["s3:GetObject"],
                resources=[props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*")],
            ),
        )
        return statements, {
            f"Resource::{finding(self, endpoints)}": "This app's endpoints: their names start with the name "
            "prefix and end with the placement (instance type or mode), fixed per deployment.",
            f"Resource::{finding(self, configs)}": "Endpoint configs and models get names from CloudFormation "
            "(one per model revision); Describe reads their settings only.",
            f"Resource::{finding(self, models)}": "Endpoint configs and models get names from CloudFormation "
            "(one per model revision); Describe reads their settings only.",
            f"Resource::{finding(self, packages)}": "Model package versions of this app's group only.",
            objects_finding(
                self, props.bucket, EVALUATION_PREFIX
            ): "Evaluation reports, one per training job "
            "under evaluation/<job>/; the job is known only from the approved package.",
        }

"""cdk-nag acknowledgements: each on the one construct it concerns, each with its reason."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_s3 as s3
from constructs import Construct


def acknowledge(scope: Construct, rule: str, reason: str) -> None:
    """Acknowledges ``rule`` (e.g. ``AwsSolutions-S1`` or ``AwsSolutions-IAM5[Resource::*]``) on ``scope``."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_findings(scope: Construct, rule: str, findings: dict[str, str]) -> None:
    """Acknowledges each ``rule[finding]`` on ``scope`` with its own reason."""
    for finding, reason in findings.items():
        acknowledge(scope, f"{rule}[{finding}]", reason)


def acknowledge_codebuild_defaults(role: Construct, project: codebuild.Project) -> None:
    """The grants CDK gives every CodeBuild project with an S3 source and a KMS key, on its ``role``."""
    # The ARNs exactly as CDK builds them for the grants: tokens in an environment-agnostic stack,
    # the concrete partition, region and account once the stack's environment is explicit.
    stack = cdk.Stack.of(project)
    logs = stack.format_arn(
        service="logs",
        resource="log-group",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        resource_name=f"/aws/codebuild/{project.project_name}",
    )
    reports = stack.format_arn(
        service="codebuild", resource="report-group", resource_name=f"{project.project_name}-*"
    )
    source = "CDK's grant to read this build's source asset from the bootstrap bucket."
    key = "CodeBuild encrypts build artifacts and logs with the data key."
    acknowledge_findings(
        role,
        "AwsSolutions-IAM5",
        {
            "Action::s3:GetObject*": source,
            "Action::s3:GetBucket*": source,
            "Action::s3:List*": source,
            "Action::kms:GenerateDataKey*": key,
            "Action::kms:ReEncrypt*": key,
            f"Resource::{finding(project, logs)}:*": "CodeBuild's default log group for this project, "
            "streams named per build.",
            f"Resource::{finding(project, reports)}": "Test report groups of this project only "
            "(CDK's default grant).",
        },
    )


def finding(scope: Construct, value: str) -> str:
    """How cdk-nag spells a (tokenized) IAM resource in a finding ID, e.g. ``<LogsABC123.Arn>:*``.

    Lets acknowledgements name the exact resource a wildcard is scoped to, whatever the logical IDs
    or the names of imported values are.
    """
    return _spell(cdk.Stack.of(scope).resolve(value))


def objects_finding(scope: Construct, bucket: s3.IBucket, prefix: str) -> str:
    """The finding of a right on every object under ``prefix`` in ``bucket`` (``arn_for_objects(prefix*)``),
    e.g. ``Resource::<DataBucketABC123.Arn>/datasets/*``."""
    return "Resource::" + finding(scope, bucket.arn_for_objects(f"{prefix}*"))


def _spell(resolved: object) -> str:
    if isinstance(resolved, str):
        return resolved
    if isinstance(resolved, dict) and len(resolved) == 1:
        ((intrinsic, argument),) = resolved.items()
        if intrinsic == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_spell(p) for p in parts)
        if intrinsic == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if intrinsic == "Ref":
            return f"<{argument}>"
        if intrinsic == "Fn::ImportValue":
            return _spell(argument)
    raise ValueError(f"cannot spell {resolved!r} as a cdk-nag finding")

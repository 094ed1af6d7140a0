"""What every SageMaker execution role needs to run a container: pull its image, write logs and metrics."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from .images import ImageRef

# The acknowledgement of the one unscoped resource these statements use.
UNSCOPED_REASON = (
    "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level "
    "scoping; PutMetricData is limited to SageMaker namespaces by condition."
)


def log_group_arn(log_group: str) -> str:
    """A SageMaker log group (``/aws/sagemaker/...``) and its streams."""
    return f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:log-group:{log_group}:*"


def runtime_statements(
    *, image: ImageRef, log_group: str, image_sid: str, logs_sid: str, metrics_sid: str
) -> list[iam.PolicyStatement]:
    """Image pull (its repository only), ECR login, logs in ``log_group``, metrics in SageMaker namespaces."""
    return [
        iam.PolicyStatement(
            sid=image_sid,
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[image.repository_arn],
        ),
        iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            sid=logs_sid,
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[log_group_arn(log_group)],
        ),
        iam.PolicyStatement(
            sid=metrics_sid,
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
    ]

"""The stateful stack: the KMS key and the buckets. Never replaced by a configuration change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.contract import CHECKPOINTS_PREFIX

from .nag import acknowledge


class DataStack(cdk.Stack):
    """KMS key (rotated), the versioned data bucket and its access-log bucket, all retained."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = self._key()
        self.log_bucket = self._log_bucket()
        self.bucket = self._data_bucket()
        self._send_object_events_to_eventbridge()
        self._outputs()

    def _key(self) -> kms.Key:
        return kms.Key(
            self,
            "Key",
            description="AcousticShield: data bucket, training volumes and outputs, endpoint volumes",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def _log_bucket(self) -> s3.Bucket:
        # S3 server access logs cannot be delivered to a bucket encrypted with a customer KMS key,
        # hence S3-managed encryption here.
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=cdk.Duration.days(365),
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                )
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "This is the access-log bucket; logging it into itself would log its own log writes.",
        )
        return bucket

    def _data_bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "DataBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=cdk.Duration.days(90),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                ),
                # Checkpoints only matter while their job may still restart on spot capacity.
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=CHECKPOINTS_PREFIX,
                    expiration=cdk.Duration.days(30),
                ),
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def _send_object_events_to_eventbridge(self) -> None:
        """Object events go to EventBridge, where the Training stack's retrain-on-new-data rule (when on)
        picks the dataset manifests out. Set on the bucket itself: ``event_bridge_enabled=True`` would add a
        custom resource and its Lambda for what CloudFormation supports natively."""
        bucket_resource = self.bucket.node.default_child
        assert isinstance(bucket_resource, s3.CfnBucket)
        bucket_resource.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )

    def _outputs(self) -> None:
        """Named exports: consumers import these names, so reviewers see stable references and the
        consumers' policies (and their cdk-nag findings) do not depend on generated export names."""
        cdk.CfnOutput(
            self, "DataBucketName", value=self.bucket.bucket_name, export_name=self._export("DataBucketName")
        )
        cdk.CfnOutput(
            self, "DataBucketArn", value=self.bucket.bucket_arn, export_name=self._export("DataBucketArn")
        )
        cdk.CfnOutput(self, "KeyArn", value=self.key.key_arn, export_name=self._export("KeyArn"))

    def _export(self, name: str) -> str:
        return f"{self.stack_name}-{name}"

    def shared(self, scope: Construct) -> SharedData:
        """The bucket and key as seen from another stack, through this stack's named exports."""
        key = kms.Key.from_key_arn(scope, "DataKey", cdk.Fn.import_value(self._export("KeyArn")))
        bucket = s3.Bucket.from_bucket_attributes(
            scope,
            "DataBucket",
            bucket_arn=cdk.Fn.import_value(self._export("DataBucketArn")),
            bucket_name=cdk.Fn.import_value(self._export("DataBucketName")),
            encryption_key=key,
        )
        cdk.Stack.of(scope).add_stack_dependency(self)
        return SharedData(bucket=bucket, key=key)


@dataclass(frozen=True)
class SharedData:
    """The Data stack's resources, imported into a consuming stack."""

    bucket: s3.IBucket
    key: kms.IKey

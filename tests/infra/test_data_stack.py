"""The Data stack: encryption, access, logging, lifecycle, retention."""

from __future__ import annotations

from aws_cdk.assertions import Match, Template


def buckets(template: Template) -> dict[str, dict]:
    return template.find_resources("AWS::S3::Bucket")


def data_bucket(template: Template) -> dict:
    (bucket,) = [b for b in buckets(template).values() if "LoggingConfiguration" in b["Properties"]]
    return bucket


def test_key_rotates_and_is_retained(data_template: Template) -> None:
    data_template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_data_bucket_is_kms_encrypted_versioned_private_and_retained(data_template: Template) -> None:
    bucket = data_bucket(data_template)
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert rule["BucketKeyEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_every_bucket_refuses_plain_http(data_template: Template) -> None:
    policies = data_template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(buckets(data_template)) == 2
    for policy in policies.values():
        assert {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
        }.items() <= policy["Properties"]["PolicyDocument"]["Statement"][0].items()


def test_data_bucket_logs_access_to_the_log_bucket(data_template: Template) -> None:
    data_template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LoggingConfiguration": {
                "DestinationBucketName": {"Ref": Match.string_like_regexp("^AccessLogs")},
                "LogFilePrefix": "data-bucket/",
            }
        },
    )


def test_lifecycle_expires_old_versions_stale_uploads_and_checkpoints(data_template: Template) -> None:
    rules = data_bucket(data_template)["Properties"]["LifecycleConfiguration"]["Rules"]
    by_id = {r["Id"]: r for r in rules}
    assert by_id["noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    assert by_id["noncurrent-versions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert by_id["expire-checkpoints"] == {
        "Id": "expire-checkpoints",
        "Prefix": "checkpoints/",
        "ExpirationInDays": 30,
        "Status": "Enabled",
    }


def test_exports_have_stable_names(data_template: Template) -> None:
    outputs = data_template.to_json()["Outputs"]
    assert {o["Export"]["Name"] for o in outputs.values()} == {
        "AcousticShield-dev-Data-DataBucketName",
        "AcousticShield-dev-Data-DataBucketArn",
        "AcousticShield-dev-Data-KeyArn",
    }


def test_the_data_key_grants_no_service_principal_it_does_not_need(data_template: Template) -> None:
    # Given the data key's policy
    (key,) = data_template.find_resources("AWS::KMS::Key").values()
    # When its principals are listed
    principals = [s.get("Principal", {}) for s in key["Properties"]["KeyPolicy"]["Statement"]]
    # Then only the account administers it: services get grants through roles, and nothing publishes
    # EventBridge events into a topic encrypted with it
    assert all("Service" not in p for p in principals), principals


def test_the_data_bucket_sends_its_object_events_to_eventbridge(data_template: Template) -> None:
    # Given the data bucket / Then its object events reach EventBridge natively (no notification custom
    # resource or Lambda), where the retrain-on-new-data rule picks the manifests out
    data_template.has_resource_properties(
        "AWS::S3::Bucket",
        {"NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}},
    )
    assert not data_template.find_resources("Custom::S3BucketNotifications")

"""The Data stack: encryption, access, logging, lifecycle, retention."""

from __future__ import annotations

from aws_cdk.assertions import Template


def buckets(template: Template) -> dict[str, dict]:
    return template.find_resources("AWS::S3::Bucket")


def data_bucket(template: Template) -> dict:
    (bucket,) = [b for b in buckets(template).values() if "LoggingConfiguration" in b["Properties"]]
    return bucket


def test_key_rotates_and_is_retained(data_template: Template) -> None:
    # Given the Data stack's keys
    keys = data_template.find_resources("AWS::KMS::Key")
    # When its one key is looked at
    (key,) = keys.values()
    # Then it rotates, and outlives the stack and any replacement
    assert key["Properties"]["EnableKeyRotation"] is True
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_data_bucket_is_kms_encrypted_versioned_private_and_retained(data_template: Template) -> None:
    # Given the data bucket (the one that logs its access)
    bucket = data_bucket(data_template)
    props = bucket["Properties"]
    # Then it is retained, encrypted with the stack's key (bucket keys on), versioned and private
    assert bucket["DeletionPolicy"] == "Retain"
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    (key_id,) = data_template.find_resources("AWS::KMS::Key")
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert rule["BucketKeyEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_every_bucket_refuses_plain_http(data_template: Template) -> None:
    # Given the Data stack's buckets and their policies
    policies = data_template.find_resources("AWS::S3::BucketPolicy")
    # When the bucket each policy is for is looked up
    by_bucket = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"] for p in policies.values()
    }
    # Then each bucket has one, whose first statement denies every request over plain HTTP
    assert set(by_bucket) == set(buckets(data_template)) and len(by_bucket) == 2
    for document in by_bucket.values():
        assert {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
        }.items() <= document["Statement"][0].items()


def test_data_bucket_logs_access_to_the_log_bucket(data_template: Template) -> None:
    # Given the data bucket and the stack's other bucket, for access logs
    logging = data_bucket(data_template)["Properties"]["LoggingConfiguration"]
    (log_bucket,) = [k for k in buckets(data_template) if k.startswith("AccessLogs")]
    # Then the data bucket's server access logs go to the log bucket, under data-bucket/
    assert logging == {"DestinationBucketName": {"Ref": log_bucket}, "LogFilePrefix": "data-bucket/"}


def test_lifecycle_expires_old_versions_stale_uploads_and_checkpoints(data_template: Template) -> None:
    # Given the data bucket's lifecycle rules
    rules = data_bucket(data_template)["Properties"]["LifecycleConfiguration"]["Rules"]
    by_id = {r["Id"]: r for r in rules}
    # Then old versions go after 90 days, stale uploads after 7, and spot checkpoints after 30
    assert by_id["noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    assert by_id["noncurrent-versions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert by_id["expire-checkpoints"] == {
        "Id": "expire-checkpoints",
        "Prefix": "checkpoints/",
        "ExpirationInDays": 30,
        "Status": "Enabled",
    }


def test_exports_have_stable_names(data_template: Template) -> None:
    # Given the Data stack's outputs (the Training and Serving stacks import them)
    outputs = data_template.to_json()["Outputs"]
    # Then their export names are the stack's name and the value's, never a generated ID
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
    # Given the data bucket
    props = data_bucket(data_template)["Properties"]
    # Then its object events reach EventBridge natively (no notification custom resource or Lambda), where
    # the retrain-on-new-data rule picks the manifests out
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert not data_template.find_resources("Custom::S3BucketNotifications")
    assert not data_template.find_resources("AWS::Lambda::Function")

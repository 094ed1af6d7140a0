"""Each emulator gap the rehearsal works around, reproduced on plain moto (no workaround applied).

Run in a fresh interpreter (``python -m tests.rehearsal.moto_gaps GAP [--workaround]``), since the
rehearsal's workarounds patch moto for the process that applies them. Prints one JSON object: what moto
did, plain or with the rehearsal's workaround (for change sets: deploying directly instead).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import boto3
from moto import mock_aws

REGION = "us-east-1"


def _stack(template: dict[str, Any], *, change_set: bool = False) -> dict[str, Any]:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    body = json.dumps(template)
    try:
        if change_set:
            cloudformation.create_change_set(
                StackName="gap", TemplateBody=body, ChangeSetName="gap", ChangeSetType="CREATE"
            )
            cloudformation.execute_change_set(StackName="gap", ChangeSetName="gap")
        else:
            cloudformation.create_stack(StackName="gap", TemplateBody=body)
        (stack,) = cloudformation.describe_stacks(StackName="gap")["Stacks"]
    except Exception as err:  # what the CLI would see
        return {"error": f"{type(err).__name__}: {err}"}
    return {"status": stack["StackStatus"], "outputs": stack.get("Outputs", [])}


def kms_tags() -> dict[str, Any]:
    key = {
        "Type": "AWS::KMS::Key",
        "Properties": {
            "KeyPolicy": {"Version": "2012-10-17", "Statement": []},
            "Tags": [{"Key": "project", "Value": "acoustic-shield"}],
        },
    }
    return _stack({"Resources": {"Key": key}, "Outputs": {"Arn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}}}})


def codebuild_project() -> dict[str, Any]:
    project = {
        "Type": "AWS::CodeBuild::Project",
        "Properties": {
            "Artifacts": {"Type": "NO_ARTIFACTS"},
            "Environment": {"ComputeType": "BUILD_GENERAL1_SMALL", "Image": "x", "Type": "LINUX_CONTAINER"},
            "ServiceRole": "arn:aws:iam::123456789012:role/build",
            "Source": {"Type": "NO_SOURCE", "BuildSpec": "version: 0.2"},
        },
    }
    return _stack(
        {"Resources": {"Project": project}, "Outputs": {"Arn": {"Value": {"Fn::GetAtt": ["Project", "Arn"]}}}}
    )


def model_package_group() -> dict[str, Any]:
    group = {"Type": "AWS::SageMaker::ModelPackageGroup", "Properties": {"ModelPackageGroupName": "gap"}}
    result = _stack({"Resources": {"Group": group}})
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    result["groups"] = [
        g["ModelPackageGroupName"]
        for g in sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
    ]
    return result


def sagemaker_model_containers() -> dict[str, Any]:
    model = {
        "Type": "AWS::SageMaker::Model",
        "Properties": {
            "ExecutionRoleArn": "arn:aws:iam::123456789012:role/model",
            "Containers": [
                {"ModelPackageName": "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"}
            ],
        },
    }
    return _stack(
        {
            "Resources": {"Model": model},
            "Outputs": {"Name": {"Value": {"Fn::GetAtt": ["Model", "ModelName"]}}},
        }
    )


def training_job_lifecycle() -> dict[str, Any]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_training_job(
        TrainingJobName="gap",
        RoleArn="arn:aws:iam::123456789012:role/training",
        AlgorithmSpecification={
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/image:1",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "test_f1", "Regex": "test_f1=([0-9.]+)"}],
        },
        OutputDataConfig={"S3OutputPath": "s3://bucket/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    job = sagemaker.describe_training_job(TrainingJobName="gap")
    return {
        "status": job["TrainingJobStatus"],
        "metric_definitions": [m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]],
    }


def model_package_card() -> dict[str, Any]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName="gap")
    card = {
        "ModelCardContent": json.dumps({"model_overview": {"model_creator": "gap"}}),
        "ModelCardStatus": "Draft",
    }
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="gap",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/image:1"}],
            "SupportedContentTypes": ["audio/wav"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
        ModelCard=card,
    )["ModelPackageArn"]
    return {"card": sagemaker.describe_model_package(ModelPackageName=arn).get("ModelCard")}


def change_set_outputs() -> dict[str, Any]:
    topic = {"Type": "AWS::SNS::Topic"}
    output = {"Value": {"Ref": "Topic"}, "Export": {"Name": "gap-topic"}}
    template = {"Resources": {"Topic": topic}, "Outputs": {"TopicArn": output}}
    return _stack(template, change_set="--workaround" not in sys.argv)


GAPS: dict[str, Callable[[], dict[str, Any]]] = {
    "kms_tags": kms_tags,
    "codebuild_project": codebuild_project,
    "model_package_group": model_package_group,
    "sagemaker_model_containers": sagemaker_model_containers,
    "training_job_lifecycle": training_job_lifecycle,
    "change_set_outputs": change_set_outputs,
    "model_package_card": model_package_card,
}


if __name__ == "__main__":
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    if "--workaround" in sys.argv:
        from tools.rehearse.emulator import apply_workarounds

        apply_workarounds()
    with mock_aws():
        print(json.dumps(GAPS[sys.argv[1]](), default=str))

"""The training role may write where SageMaker uploads a job's TensorBoard event files, and nowhere else new.

The launcher's TensorBoardOutputConfig.S3OutputPath is ``s3://<data bucket>/tensorboard/``; SageMaker writes
each job's files under ``<S3OutputPath>/<job>/tensorboard-output/`` (the SageMaker Python SDK's
``Estimator.latest_job_tensorboard_artifacts_path``), with the job's execution role.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from aws_cdk.assertions import Template

from common.contract import TENSORBOARD_PREFIX
from lambdas.launcher import logic
from tests.infra.test_training_stack import by_sid, statements

JOB = "acoustic-shield-dev-train-20261122-030000-1a2b3c4d"


def _object_patterns(resource: Any) -> list[str]:
    """The key patterns of ``arn:...:s3:::<bucket>/<pattern>`` resources (Fn::Join of the bucket's ARN)."""
    resources = resource if isinstance(resource, list) else [resource]
    patterns = []
    for item in resources:
        parts = item["Fn::Join"][1]
        assert isinstance(parts[-1], str) and parts[-1].startswith("/"), item
        patterns.append(parts[-1][1:])
    return patterns


def test_the_role_writes_the_prefix_the_launcher_sends(training_template: Template) -> None:
    # Given the training execution role's statements, and the launcher's TensorBoardOutputConfig
    sids = by_sid(training_template, "ExecutionRole")
    config = logic.tensorboard_output_config("bucket")
    # Then one statement lets jobs put (and abort uploading) objects under tensorboard/, and only there
    grant = sids["WriteTensorBoard"]
    assert sorted(grant["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert _object_patterns(grant["Resource"]) == ["tensorboard/*"]
    assert (
        TENSORBOARD_PREFIX == logic.TENSORBOARD_PREFIX
        and config["S3OutputPath"] == "s3://bucket/tensorboard/"
    )
    # And the key of a job's event file, where SageMaker puts it, is inside the grant
    key = logic.tensorboard_uri("bucket", JOB).removeprefix("s3://bucket/") + "events.out.tfevents.1.algo-1"
    assert fnmatch.fnmatchcase(key, "tensorboard/*")


def test_nothing_else_may_touch_tensorboard_outputs(training_template: Template) -> None:
    # Given every statement of the execution role
    # When those naming tensorboard/ are picked out
    naming = [s for s in statements(training_template, "ExecutionRole") if "tensorboard" in json.dumps(s)]
    # Then there is one, the write grant: jobs cannot read or list other jobs' curves
    assert [s.get("Sid") for s in naming] == ["WriteTensorBoard"]

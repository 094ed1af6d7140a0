"""A local AWS for the rehearsal: moto's server, in this process, on ``localhost`` and a free port.

Every client of the rehearsal (the CDK CLI, boto3 in the Lambda handlers, the staging tool, the job runner)
reaches it through ``AWS_ENDPOINT_URL`` with dummy credentials, a fixed account and a fixed region. The CDK
CLI's asset publishing addresses S3 by virtual host, which works against the emulator only with the name
``localhost`` (not ``127.0.0.1``).

moto falls short of AWS in a few places the loop touches. Each workaround below is applied to the emulator
only, never to what the stacks synthesize, and ``tests/rehearsal/test_emulator_gaps.py`` shows each gap on
plain moto, so that the test fails (and the workaround can go) once moto no longer has the gap:

- ``AWS::KMS::Key`` from CloudFormation crashes on CloudFormation-style ``Tags`` (``Key``/``Value``; moto's
  KMS tagger wants ``TagKey``/``TagValue``): the tags are translated.
- moto's CloudFormation has no ``AWS::CodeBuild::Project`` (any ``Fn::GetAtt`` of a project fails the
  stack) and no ``AWS::SageMaker::ModelPackageGroup`` (the promoter finds no group to register in): a
  minimal model for each creates the resource in moto's own backend.
- moto's ``AWS::SageMaker::Model`` requires ``PrimaryContainer``; the Serving stack gives ``Containers``
  (a model package's container, as the SageMaker API allows): an empty primary container is added.
- A training job is ``Completed`` the moment it is created, with made-up metric definitions and final
  metrics: jobs start ``InProgress`` with the request's metric definitions, and the rehearsal's job runner
  completes them (status, final metrics, artifacts) through :meth:`Emulator.complete_training_job`.
- CreateModelPackage drops ``ModelCard`` (DescribeModelPackage returns none): the card sent is kept with the
  package and described.
- Change sets register no stack outputs or exports (so ``Fn::ImportValue`` fails): the rehearsal deploys
  with ``--method=direct`` (a CLI flag, nothing here).
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"


def _kms_cloudformation_tags() -> None:
    from moto.kms.models import Key

    original = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(original, "_rehearsal", False):
        return

    def create(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kw: Any) -> Any:
        properties = template.get("Properties", {})
        tags = properties.get("Tags") or []
        if tags and "Key" in tags[0]:
            properties = {**properties, "Tags": [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags]}
            template = {**template, "Properties": properties}
        return original(cls, name, template, account_id, region, **kw)

    create._rehearsal = True  # type: ignore[attr-defined]
    Key.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]


def _register_cloudformation_model(
    resource_type: str,
    name_property: str,
    create: Callable[[str, dict[str, Any], str, str], str],
    *,
    ref: str = "name",
    arn_attributes: tuple[str, ...] = ("Arn",),
) -> None:
    """A minimal CloudFormation model for a type moto's CloudFormation lacks.

    ``create(name, properties, account, region)`` creates the resource through moto's own backend and
    returns its ARN; ``Ref`` gives the name (or the ARN with ``ref="arn"``), ``Fn::GetAtt`` the ARN.
    """
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    if resource_type in parsing.get_model_map():
        return

    class Model(CloudFormationModel):
        def __init__(self, name: str, arn: str) -> None:
            self.name, self.arn = name, arn

        @staticmethod
        def cloudformation_name_type() -> str:
            return name_property

        @staticmethod
        def cloudformation_type() -> str:
            return resource_type

        @property
        def physical_resource_id(self) -> str:
            return self.arn if ref == "arn" else self.name

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in arn_attributes

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kw: Any
        ) -> Any:
            properties = cloudformation_json.get("Properties", {})
            name = properties.get(name_property, resource_name)
            return cls(name, create(name, properties, account_id, region_name))

    Model.__name__ = resource_type.replace("::", "")
    # parsing builds its map from CloudFormationModel's subclasses once: add this one to it.
    parsing.get_model_map()[resource_type] = Model  # type: ignore[type-abstract]


def _create_codebuild_project(name: str, properties: dict[str, Any], account: str, region: str) -> str:
    from moto.codebuild.models import codebuild_backends

    metadata = codebuild_backends[account][region].create_project(
        project_name=name,
        description=properties.get("Description"),
        project_source=properties.get("Source", {}),
        artifacts=properties.get("Artifacts", {"Type": "NO_ARTIFACTS"}),
        environment=properties.get("Environment", {}),
        service_role=properties.get("ServiceRole", ""),
        tags=None,
        cache=None,
        timeout=properties.get("TimeoutInMinutes"),
        queued_timeout=None,
        source_version=None,
        logs_config=None,
        vpc_config=None,
    )
    return str(metadata["arn"])


def _create_model_package_group(name: str, properties: dict[str, Any], account: str, region: str) -> str:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account][region].create_model_package_group(
        model_package_group_name=name,
        model_package_group_description=properties.get("ModelPackageGroupDescription", ""),
    )


def _sagemaker_model_with_containers() -> None:
    from moto.sagemaker.models import Model

    original = Model.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    if getattr(original, "_rehearsal", False):
        return

    def create(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kw: Any) -> Any:
        properties = template.get("Properties", {})
        if "PrimaryContainer" not in properties and properties.get("Containers"):
            template = {**template, "Properties": {**properties, "PrimaryContainer": {}}}
        return original(cls, name, template, account_id, region, **kw)

    create._rehearsal = True  # type: ignore[attr-defined]
    Model.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]


def _training_jobs_start_in_progress() -> None:
    from moto.sagemaker.models import FakeTrainingJob

    original = FakeTrainingJob.__init__
    if getattr(original, "_rehearsal", False):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        spec = kwargs.get("algorithm_specification")
        definitions = copy.deepcopy((spec or {}).get("MetricDefinitions", []))
        original(self, *args, **kwargs)
        self.algorithm_specification["MetricDefinitions"] = definitions
        self.training_job_status = "InProgress"
        self.secondary_status = "Starting"
        self.training_end_time = None
        self.final_metric_data_list = []

    init._rehearsal = True  # type: ignore[attr-defined]
    FakeTrainingJob.__init__ = init  # type: ignore[method-assign]


def _model_packages_keep_their_model_cards() -> None:
    """moto's CreateModelPackage drops ``ModelCard`` and DescribeModelPackage never returns one; AWS keeps
    the card with the package version. The card sent is kept and described."""
    from moto.sagemaker.models import ModelPackage
    from moto.sagemaker.responses import SageMakerResponse

    create = SageMakerResponse.create_model_package
    if getattr(create, "_rehearsal", False):
        return
    describe = ModelPackage.gen_response_object

    def create_keeping_the_card(self: Any) -> Any:
        result = create(self)
        card = self._get_param("ModelCard")
        if card:
            newest = list(self.sagemaker_backend.model_packages.values())[-1]
            newest.rehearsal_model_card = card
        return result

    def described(self: Any) -> dict[str, Any]:
        response: dict[str, Any] = describe(self)
        card = getattr(self, "rehearsal_model_card", None)
        if card:
            response["ModelCard"] = card
        return response

    create_keeping_the_card._rehearsal = True  # type: ignore[attr-defined]
    SageMakerResponse.create_model_package = create_keeping_the_card  # type: ignore[method-assign]
    ModelPackage.gen_response_object = described  # type: ignore[method-assign]


def apply_workarounds() -> None:
    """Applies every workaround (idempotent)."""
    _kms_cloudformation_tags()
    _register_cloudformation_model("AWS::CodeBuild::Project", "Name", _create_codebuild_project)
    _register_cloudformation_model(
        "AWS::SageMaker::ModelPackageGroup",
        "ModelPackageGroupName",
        _create_model_package_group,
        ref="arn",
        arn_attributes=("ModelPackageGroupArn",),
    )
    _sagemaker_model_with_containers()
    _training_jobs_start_in_progress()
    _model_packages_keep_their_model_cards()
    # The emulator's request log and its notes on resource types it skips are noise here.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto", category=UserWarning)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


class Emulator:
    """moto's server with the workarounds, and the environment that points clients at it."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        apply_workarounds()
        self.port = port or free_port()
        self.url = f"http://localhost:{self.port}"
        self._server = ThreadedMotoServer(ip_address="localhost", port=self.port, verbose=False)

    def start(self) -> Emulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def env(self) -> dict[str, str]:
        """What every client needs: the endpoint, dummy credentials, the account's region."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def complete_training_job(
        self, name: str, *, metrics: Mapping[str, float], failure: str | None = None
    ) -> None:
        """What SageMaker records when a job ends: status, end time, the scraped final metrics."""
        from moto.sagemaker.models import sagemaker_backends

        job = sagemaker_backends[ACCOUNT][REGION].training_jobs[name]
        now = datetime.now(UTC)
        job.training_job_status = "Failed" if failure else "Completed"
        job.secondary_status = job.training_job_status
        job.failure_reason = failure  # type: ignore[attr-defined]
        job.training_end_time = job.last_modified_time = now
        job.final_metric_data_list = [
            {"MetricName": k, "Value": float(v), "Timestamp": now} for k, v in sorted(metrics.items())
        ]


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the duration (in-process handlers read their settings there)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

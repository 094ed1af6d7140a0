"""Seam: each Lambda's environment as synthesized, read by that Lambda's own settings parser.

The stack writes the variables, the handler reads them at cold start; nothing else joins the two. Every
synthesized variable must be one the parser reads (no extra, forgotten one), and the parser must accept
the whole set (no missing or malformed one). Deploy-time tokens become values of the shape AWS gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from aws_cdk.assertions import Template

from functions.launcher.logic import LaunchSettings
from functions.promoter.settings import Settings

REGION, ACCOUNT = "eu-west-1", "123456789012"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
# What a resource's Ref gives, by type (its physical name or ARN, as AWS documents).
REF = {
    "AWS::SNS::Topic": lambda logical: f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical}",
    "AWS::S3::Bucket": lambda logical: logical.lower(),
    "AWS::SageMaker::ModelPackageGroup": lambda logical: (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/g"
    ),
}


class Recording(Mapping[str, str]):
    """An environment that remembers which variables were read."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.read = values, set[str]()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def resolve(value: Any, resources: dict[str, Any]) -> str:
    """A deploy-time value as the running function sees it."""
    if isinstance(value, str):
        return value
    ((intrinsic, argument),) = value.items()
    if intrinsic == "Ref":
        if argument in PSEUDO:
            return PSEUDO[argument]
        kind = resources[argument]["Type"]
        return REF.get(kind, lambda logical: logical)(argument)
    if intrinsic == "Fn::GetAtt":
        logical, attribute = argument
        service = resources[logical]["Type"].split("::")[1].lower()
        return (
            f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical.lower()}"
            if attribute.endswith("Arn")
            else logical
        )
    if intrinsic == "Fn::ImportValue":
        name = resolve(argument, resources)
        if name.endswith("KeyArn"):
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        if name.endswith("BucketArn"):
            return "arn:aws:s3:::acoustic-data"
        if name.endswith("BucketName"):
            return "acoustic-data"
        raise AssertionError(f"an import this test does not know: {name}")
    if intrinsic == "Fn::Join":
        separator, parts = argument
        return str(separator).join(resolve(p, resources) for p in parts)
    if intrinsic == "Fn::FindInMap":
        return "763104351884"  # the image registries' account in most regions
    if intrinsic == "Fn::Sub":
        text = argument if isinstance(argument, str) else argument[0]
        for name, replacement in PSEUDO.items():
            text = text.replace("${" + name + "}", replacement)
        return text
    raise AssertionError(f"an intrinsic this test does not know: {intrinsic}")


def environment(template: Template, handler: str) -> dict[str, str]:
    resources = template.to_json()["Resources"]
    (function,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == handler
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    # Lambda adds AWS_REGION itself.
    return {"AWS_REGION": REGION, **{k: resolve(v, resources) for k, v in variables.items()}}


PARSERS: dict[str, tuple[str, Callable[[Mapping[str, str]], Any]]] = {
    "launcher": ("launcher.handler.handler", LaunchSettings.from_env),
    "promoter": ("promoter.handler.handler", Settings.from_environment),
}


@pytest.mark.parametrize("env_name", ["dev", "prod"])
@pytest.mark.parametrize("function", sorted(PARSERS))
def test_every_synthesized_variable_is_read_and_accepted_by_the_functions_own_parser(
    synth_app: Any, env_name: str, function: str
) -> None:
    # Given the function's environment as the Training stack synthesizes it
    handler, parse = PARSERS[function]
    app = synth_app() if env_name == "dev" else synth_app(env=env_name)
    variables = Recording(environment(Template.from_stack(app.training), handler))
    # When the function's settings parser reads it at cold start
    settings = parse(variables)
    # Then it accepts every value, and every variable the stack sets is one it reads
    assert settings is not None
    unread = set(variables.values) - variables.read - {"AWS_REGION"}  # Lambda's own, read by boto3
    assert not unread, f"{function}: the stack sets variables its parser never reads: {sorted(unread)}"

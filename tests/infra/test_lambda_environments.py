"""Seam: each Lambda's environment as synthesized, read by that Lambda's own settings parser.

The stack writes the variables, the handler reads them at cold start; nothing else joins the two. Every
synthesized variable must be one the parser reads (no extra, forgotten one), the parser must accept the
whole set (no missing or malformed one), and every variable the parser reads must be one the stack sets
(no name the two spell differently, which an optional variable would hide behind its default).
Deploy-time tokens become values of the shape AWS gives them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

import tasks
from common.lambda_contract import GateRule, GateRuleError
from infra.config import gate_rules
from infra.training import promoter as promoter_construct
from lambdas.launcher.settings import LaunchSettings
from lambdas.promoter.settings import Settings, Thresholds
from tests.lambdas.promoter_world import BAD_GATE_RULES, BAD_GATE_RULES_REASONS

from .conftest import EVERY_FEATURE, synth

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
        return _referenced(argument, resources)
    if intrinsic == "Fn::GetAtt":
        logical, attribute = argument
        service = resources[logical]["Type"].split("::")[1].lower()
        return (
            f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical.lower()}"
            if attribute.endswith("Arn")
            else logical
        )
    if intrinsic == "Fn::ImportValue":
        return _imported(resolve(argument, resources))
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


def _referenced(logical: str, resources: dict[str, Any]) -> str:
    if logical in PSEUDO:
        return PSEUDO[logical]
    kind = resources[logical]["Type"]
    return REF.get(kind, lambda name: name)(logical)


def _imported(name: str) -> str:
    """The value another stack exports under ``name``."""
    if name.endswith("KeyArn"):
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    if name.endswith("BucketArn"):
        return "arn:aws:s3:::acoustic-data"
    if name.endswith("BucketName"):
        return "acoustic-data"
    raise AssertionError(f"an import this test does not know: {name}")


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
    "launcher": ("lambdas.launcher.handler.handler", LaunchSettings.from_environment),
    "promoter": ("lambdas.promoter.handler.handler", Settings.from_environment),
}
# dev and prod as cdk.json has them, every optional feature on (Debugger rules and profiling, tuning,
# reserved concurrency) and a task other than the default one (its metric lines), so that together they set
# every variable a parser can read.
VARIANTS: dict[str, dict[str, str]] = {
    "dev": {},
    "prod": {"env": "prod"},
    "every-feature": EVERY_FEATURE,
    "multilabel": {"task": "multilabel", "tuning_enabled": "true"},
}
EVERYTHING = ("every-feature", "multilabel")


def parsed(synth_app: Any, variant: str, function: str) -> tuple[Any, set[str], set[str]]:
    """The function's settings from its synthesized environment, the variables set, those read."""
    handler, parse = PARSERS[function]
    variables = Recording(environment(Template.from_stack(synth_app(**VARIANTS[variant]).training), handler))
    return parse(variables), set(variables.values), variables.read


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("function", sorted(PARSERS))
def test_every_synthesized_variable_is_read_and_accepted_by_the_functions_own_parser(
    synth_app: Any, variant: str, function: str
) -> None:
    # Given the function's environment as the Training stack synthesizes it
    # When the function's settings parser reads it at cold start
    settings, synthesized, read = parsed(synth_app, variant, function)
    # Then it accepts every value, and every variable the stack sets is one it reads
    assert settings is not None
    unread = synthesized - read - {"AWS_REGION"}  # Lambda's own, read by boto3
    assert not unread, f"{function}: the stack sets variables its parser never reads: {sorted(unread)}"


@pytest.mark.parametrize("function", sorted(PARSERS))
def test_every_variable_the_parser_reads_is_one_the_stack_sets(synth_app: Any, function: str) -> None:
    # Given the function's environment with every optional feature on, for the default task and another
    # one, and as dev and prod have it
    every = set().union(*(parsed(synth_app, variant, function)[1] for variant in EVERYTHING))
    read_by_every = set().union(*(parsed(synth_app, variant, function)[2] for variant in EVERYTHING))
    # When the parser has read each
    # Then with every feature on, it reads nothing the stack leaves unset: no missing variable
    assert read_by_every <= every, (
        f"{function}: reads variables the stack never sets: {read_by_every - every}"
    )
    for variant in sorted(VARIANTS):
        _, synthesized, read = parsed(synth_app, variant, function)
        # And what a variant leaves unset is an optional variable the parser defaults, named as the
        # stack names it when the feature (or the task) is on
        assert read - synthesized <= every, f"{function} ({variant}): {sorted(read - synthesized - every)}"


# --- the promoter's gate rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "minimums"),
    [("dev", (0.5, 0.5, 0.5)), ("prod", (0.8, 0.75, 0.8))],
)
def test_the_gate_rules_the_stack_writes_are_the_rules_the_promoter_reads(
    synth_app: Any, variant: str, minimums: tuple[float, float, float]
) -> None:
    # Given the configured quality gate (cdk.json's min_accuracy, min_f1, min_clip_accuracy) and the
    # promoter's environment as the Training stack synthesizes it
    app = synth_app(**VARIANTS[variant])
    # When the promoter's settings read it at cold start
    settings, _, _ = parsed(synth_app, variant, "promoter")
    # Then they hold the same rules: each classification metric at least its minimum, higher is better
    assert settings.thresholds == Thresholds(
        gate_rules=gate_rules(app.config.quality), max_regression=app.config.quality.max_regression
    )
    assert settings.thresholds.gate_rules == tuple(
        GateRule(metric, higher_is_better=True, threshold=minimum)
        for metric, minimum in zip(tasks.load(None).gated, minimums, strict=True)
    )


# The bad values the stack can be handed: JSON lists of rule objects (it never writes anything else).
SYNTHESIZABLE = ("empty", "duplicate-metric", "bad-name", "missing-direction", "infinite-threshold")


@pytest.mark.parametrize("case", SYNTHESIZABLE)
def test_gate_rules_the_promoter_would_refuse_stop_synthesis(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a quality gate whose rules are one of the GATE_RULES values the promoter refuses at cold start
    value = BAD_GATE_RULES[case]
    monkeypatch.setattr(
        promoter_construct,
        "gate_rules",
        lambda quality, task=None: tuple(GateRule.from_json(item) for item in json.loads(value)),
    )
    # When the app is synthesized / Then the stack stops, refusing them for the promoter's own reason
    with pytest.raises(GateRuleError) as refused:
        synth(tmp_path)
    assert BAD_GATE_RULES_REASONS[case] in str(refused.value)
    # And a set of rules (not one rule) is refused naming the variable, as the promoter's settings do
    if case in ("empty", "duplicate-metric"):
        assert str(refused.value).startswith("GATE_RULES is invalid: ")

"""The configurations whose templates the service-rule tests walk: every stack of each, as CloudFormation has it.

dev and prod as cdk.json has them (prod with an endpoint), every optional feature on, each serving variant of
the suite, a fleet of at least two instances that the schedule scales down at night, and a multilabel and
an asr deployment (other tasks' stacks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra.app_builder import AcousticShieldApp

from .conftest import EVERY_FEATURE, MODEL_A, SERVING_VARIANTS

TEMPLATE_VARIANTS: dict[str, dict[str, str]] = {
    "dev": {},
    "prod": {"env": "prod", "model_data_url": MODEL_A},
    "every-feature": EVERY_FEATURE,
    "fleet-asleep-at-night": {
        "model_data_url": MODEL_A,
        "autoscaling_min_capacity": "2",
        "autoscaling_max_capacity": "4",
        "scale_down_schedule": "true",
    },
    **{f"serving-{name}": overrides for name, overrides in SERVING_VARIANTS.items()},
    # Another task than the default one, side by side with it: its own Training and Serving stacks.
    "multilabel": {"task": "multilabel", "model_data_url": MODEL_A, "tuning_enabled": "true"},
    "asr": {"task": "asr", "model_data_url": MODEL_A, "tuning_enabled": "true"},
}


@dataclass(frozen=True)
class StackTemplate:
    """One synthesized stack: its name, its template, and the stack (for its environment)."""

    name: str
    stack: cdk.Stack
    template: dict[str, object]

    @property
    def resources(self) -> dict[str, dict[str, object]]:
        resources: dict[str, dict[str, object]] = self.template.get("Resources", {})  # type: ignore[assignment]
        return resources


def stack_templates(synth_app: Callable[..., AcousticShieldApp], variant: str) -> Iterator[StackTemplate]:
    """Every stack the variant synthesizes."""
    built = synth_app(**TEMPLATE_VARIANTS[variant])
    for stack in (built.data, built.training, built.serving):
        if stack is not None:
            yield StackTemplate(stack.stack_name, stack, Template.from_stack(stack).to_json())

"""The promoter's environment, validated once per container into a frozen model.

The names, and how each value is written: ``lambda_contract.PromoterEnvironment``, the record the stack fills
(infra/training/promoter.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common import contract, lambda_contract
from lambdas import environment


class SettingsError(ValueError):
    """One or more environment variables are missing or invalid; the message names each one."""


@dataclass(frozen=True)
class Thresholds:
    """The quality gate: one rule per gated metric (its direction and threshold), and how far a new model
    may fall behind the best approved one on each metric, in that metric's direction."""

    gate_rules: tuple[lambda_contract.GateRule, ...]
    max_regression: float

    @property
    def metrics(self) -> tuple[str, ...]:
        """The gated metrics' names, after the split's prefix (``accuracy``, ``wer``), in the rules' order."""
        return tuple(rule.metric for rule in self.gate_rules)


@dataclass(frozen=True)
class Settings:
    """Everything the promoter needs from its environment."""

    model_package_group: str
    job_name_prefix: str
    thresholds: Thresholds
    manual_approval: bool
    topic_arn: str
    inference_image: str
    serving_instance_type: str
    data_bucket: str
    evaluation_prefix: str
    tuning_job_prefix: str = ""  # empty: this deployment's promoter handles no tuning jobs
    # Training-health rules (contract.HEALTH_RULES) that hold a model for manual approval when they fired.
    health_blocking_rules: tuple[str, ...] = contract.DEFAULT_BLOCKING_HEALTH_RULES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Reads and validates every variable; reports all problems at once."""
        reader = environment.Reader(environ)
        settings = cls(
            model_package_group=reader.text(
                lambda_contract.ENV_MODEL_PACKAGE_GROUP,
                "a model package group name (letters, digits and '-', at most 63 characters)",
                pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
            ),
            job_name_prefix=reader.text(
                lambda_contract.ENV_JOB_NAME_PREFIX,
                "a training job name prefix such as 'acoustic-shield-dev-train-'",
                pattern=r"[a-zA-Z0-9][a-zA-Z0-9-]{0,61}",
            ),
            thresholds=Thresholds(
                gate_rules=reader.json_value(
                    lambda_contract.ENV_GATE_RULES, _gate_rules, lambda_contract.GATE_RULES_EXPECTED, ()
                ),
                max_regression=reader.fraction(lambda_contract.ENV_MAX_REGRESSION),
            ),
            manual_approval=reader.boolean(lambda_contract.ENV_MANUAL_APPROVAL),
            topic_arn=reader.text(
                lambda_contract.ENV_TOPIC_ARN,
                "an SNS topic ARN",
                pattern=r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}",
            ),
            inference_image=reader.text(
                lambda_contract.ENV_INFERENCE_IMAGE,
                "a container image URI such as '<registry>/<repo>:<tag>'",
                pattern=r"\S{1,255}",
            ),
            serving_instance_type=reader.text(
                lambda_contract.ENV_SERVING_INSTANCE_TYPE,
                "a SageMaker instance type such as 'ml.m5.xlarge'",
                pattern=r"ml\.[a-z0-9-]+\.[a-z0-9]+",
            ),
            data_bucket=reader.text(
                lambda_contract.ENV_DATA_BUCKET,
                "an S3 bucket name (not a URI)",
                pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
            ),
            evaluation_prefix=reader.text(
                lambda_contract.ENV_EVALUATION_PREFIX,
                "an S3 key prefix ending in '/' such as 'evaluation/'",
                pattern=r"[^/][^\s]*/",
            ),
            tuning_job_prefix=reader.text(
                lambda_contract.ENV_TUNING_JOB_PREFIX,
                "a tuning job name prefix such as 'acoustic-shield-dev-hpo-'",
                pattern=r"[a-zA-Z0-9][a-zA-Z0-9-]{0,30}",
                required=False,
            ),
            health_blocking_rules=reader.json_value(
                lambda_contract.ENV_HEALTH_BLOCKING_RULES,
                _health_rules,
                "a JSON list of different training-health rules out of " + ", ".join(contract.HEALTH_RULES),
                contract.DEFAULT_BLOCKING_HEALTH_RULES,
            ),
        )
        reader.raise_problems(SettingsError, "promoter")
        return settings


def _health_rules(value: Any) -> tuple[str, ...]:
    """A JSON list of different names out of contract.HEALTH_RULES (``[]``: no rule holds a model back)."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError
    unknown = [name for name in value if name not in contract.HEALTH_RULES]
    if unknown:
        raise environment.Invalid(f"unknown: {', '.join(unknown)}")
    if len(set(value)) != len(value):
        raise environment.Invalid("a rule is named twice")
    return tuple(value)


def _gate_rules(value: Any) -> tuple[lambda_contract.GateRule, ...]:
    """GATE_RULES, checked as the stack checked it at synthesis (at least one rule, one per metric)."""
    try:
        return lambda_contract.gate_rules_from_json(value)
    except lambda_contract.GateRuleError as error:
        raise environment.Invalid(str(error)) from None

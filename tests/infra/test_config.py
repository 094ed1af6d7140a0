"""Configuration: defaults, environments, `-c` overrides and errors that say what to fix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from common import contract
from infra.config import AppConfig, ConfigError, load_config, settings

from .conftest import ROOT, cdk_context


def config(**overrides: Any) -> AppConfig:
    context = cdk_context(**overrides)
    return load_config(context.get)


def test_dev_environment_comes_from_cdk_json() -> None:
    # Given cdk.json's context, no `-c env=...`
    # When it is loaded
    cfg = config()
    # Then dev applies, with the code defaults beneath it
    assert cfg.env_name == "dev"
    assert cfg.name_prefix == "acoustic-shield-dev"
    assert cfg.schedule.enabled is False
    assert cfg.training.hyperparameters.model_name_or_path == "facebook/wav2vec2-base"
    assert cfg.training.hyperparameters.learning_rate == 3e-5
    assert cfg.serving.autoscaling_max_capacity == 2


def test_prod_environment_and_command_line_overrides() -> None:
    # Given `-c env=prod -c learning_rate=1e-4 -c training_use_spot=false -c training_instance_count=2`
    # (strings, as the CLI passes them)
    overrides = {
        "env": "prod",
        "learning_rate": "1e-4",
        "training_use_spot": "false",
        "training_instance_count": "2",
    }
    # When the context is loaded
    cfg = config(**overrides)
    # Then prod's values apply and the overrides win, typed
    assert cfg.name_prefix == "acoustic-shield"
    assert cfg.schedule.enabled is True
    assert cfg.training.hyperparameters.learning_rate == 1e-4
    assert cfg.training.use_spot is False
    assert cfg.training.instance_count == 2
    assert cfg.training.hyperparameters.as_arguments()["learning_rate"] == "0.0001"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env": "staging"}, "config key 'env' = 'staging' is invalid: expected one of dev, prod"),
        ({"learning_rate": "fast"}, "config key 'learning_rate' = 'fast' is invalid: expected a number"),
        (
            {"learning_rate": "-1"},
            "config key 'learning_rate' = '-1' is invalid: expected a number greater than 0",
        ),
        (
            {"training_instance_count": "1.5"},
            "'training_instance_count' = '1.5' is invalid: expected an integer",
        ),
        ({"training_use_spot": "maybe"}, "'training_use_spot' = 'maybe' is invalid: expected true or false"),
        ({"min_f1": "1.5"}, "'min_f1' = '1.5' is invalid: expected a number between 0 and 1"),
        (
            {"training_instance_type": "g5.xlarge"},
            "expected a SageMaker instance type such as 'ml.g5.xlarge'",
        ),
        ({"retrain_schedule": "weekly"}, "expected an EventBridge schedule expression"),
        ({"name_prefix": "Acoustic_Shield"}, "3-28 characters: lowercase letters, digits and '-'"),
        ({"dataset_prefix": "esc50/"}, "expected a prefix under 'datasets/' ending in '/'"),
        ({"training_image_version": "4.1.0"}, "expected one of 4.49.0, 4.55.0, 4.56.2, 5.3.0"),
        (
            {"training_max_wait_seconds": "60"},
            "training_max_wait_seconds \\(60\\) must be >= training_max_runtime",
        ),
        (
            {"autoscaling_min_capacity": "5"},
            "autoscaling_min_capacity \\(5\\) must be <= autoscaling_max_capacity",
        ),
        (
            {"health_blocking_rules": "overfit,loss_is_flat"},
            "'health_blocking_rules' = 'overfit,loss_is_flat' is invalid: expected a list of different names "
            "out of loss_not_decreasing, overfit, overtraining, vanishing_gradient, exploding_gradient",
        ),
        (
            {"health_blocking_rules": '["overfit", "overfit"]'},
            "'health_blocking_rules' = '\\[\"overfit\", \"overfit\"\\]' is invalid: expected a list of different",
        ),
    ],
)
def test_invalid_value_names_the_key_the_value_and_what_is_allowed(
    overrides: dict[str, str], message: str
) -> None:
    # Given one invalid `-c` value / When the context is loaded / Then synthesis stops, naming the key, the
    # value and what is allowed
    with pytest.raises(ConfigError, match=message):
        config(**overrides)


def test_health_blocking_rules_default_to_the_contracts_and_may_be_none() -> None:
    # Given no health_blocking_rules, then an empty list and one rule from the command line
    # When the context is loaded
    default, none, one = (
        config().quality.health_blocking_rules,
        config(health_blocking_rules="[]").quality.health_blocking_rules,
        config(health_blocking_rules="overfit").quality.health_blocking_rules,
    )
    # Then the contract's blocking rules apply by default, and either override is taken as given
    assert default == contract.DEFAULT_BLOCKING_HEALTH_RULES == ("loss_not_decreasing", "exploding_gradient")
    assert none == ()
    assert one == ("overfit",)


def test_unknown_key_in_cdk_json_is_refused() -> None:
    # Given a typo in an environment section
    context = cdk_context()
    context["acoustic_shield"] = {"dev": {"learning_rat": 1e-4}}
    # When it is loaded / Then synth stops and names it
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) learning_rat in cdk\.json context\.acoustic_shield\.dev"
    ):
        load_config(context.get)


def test_cpu_training_instance_is_refused_for_gpu_only_images(synth_app: Any) -> None:
    # Given a CPU training instance for the default (GPU-only) training image
    # When the app is synthesized / Then synthesis stops and says to choose a GPU instance
    with pytest.raises(ConfigError, match="has no CPU build; choose a GPU"):
        synth_app(training_instance_type="ml.m5.xlarge")


def test_every_config_key_is_documented_in_the_readme() -> None:
    # Given the README's configuration tables
    readme = (ROOT / "README.md").read_text()
    # When the keys they document are listed
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, flags=re.M))
    # Then every key the code reads has its row
    keys = {key for key, _, _ in settings()}
    assert keys, "settings() lists no key"
    assert keys <= documented, f"undocumented config keys: {sorted(keys - documented)}"


def test_cdk_json_environments_only_use_known_keys() -> None:
    # Given cdk.json's environments
    environments = json.loads(Path(ROOT, "cdk.json").read_text())["context"]["acoustic_shield"]
    assert set(environments) == {"dev", "prod"}
    # When their keys are compared with the keys the code reads
    keys = {key for key, _, _ in settings()}
    unknown = {name: sorted(set(values) - keys) for name, values in environments.items()}
    # Then neither has a key the code would not read
    assert unknown == {"dev": [], "prod": []}

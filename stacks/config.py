"""The app's one typed configuration, built once in app.py from cdk.json context.

Resolution order for every key (later wins):
  1. the default declared here,
  2. ``cdk.json`` → ``context.acoustic_shield.<env>`` (``env`` is ``-c env=dev|prod``; default ``dev``),
  3. ``-c <key>=<value>`` on the command line.

Constructs receive these objects and never read context or the environment themselves. An invalid
value fails synth with a message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

CONTEXT_ROOT = "acoustic_shield"
ENVIRONMENTS = ("dev", "prod")
IMAGE_TABLE = Path(__file__).with_name("image_table.json")

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message says which and what is allowed."""


def setting(key: str, default: Any, help: str, check: Check | None = None) -> Any:
    """A configuration field: its context key, default, one-line documentation and validator."""
    return field(default=default, metadata={"key": key, "help": help, "check": check})


# --- validators: each returns None when the value is fine, else what is allowed ---------------


def _positive(value: Any) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _at_least(minimum: int) -> Check:
    return lambda value: None if value >= minimum else f"an integer >= {minimum}"


def _fraction(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "a number between 0 and 1"


def _pattern(regex: str, allowed: str) -> Check:
    compiled = re.compile(regex)
    return lambda value: None if compiled.fullmatch(value) else allowed


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else "one of " + ", ".join(repr(c) for c in choices)


_INSTANCE = _pattern(r"ml\.[a-z0-9-]+\.[a-z0-9]+", "a SageMaker instance type such as 'ml.g5.xlarge'")
_SCHEDULE = _pattern(
    r"(cron\([^()]+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\))",
    "an EventBridge schedule expression such as 'cron(0 3 ? * SUN *)' or 'rate(7 days)'",
)


def _image_version(value: Any) -> str | None:
    versions = sorted(load_image_table()["training"]["versions"])
    return None if value in versions else "one of " + ", ".join(versions)


def _serving_image_version(value: Any) -> str | None:
    versions = sorted(load_image_table()["inference"]["versions"])
    return None if value in versions else "one of " + ", ".join(versions)


# --- the configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameters:
    """What train.py receives as ``--name value`` arguments; a schedule event may override them."""

    model_name_or_path: str = setting(
        "model_name_or_path", "facebook/wav2vec2-base", "Checkpoint to fine-tune (Hugging Face id or path)."
    )
    num_train_epochs: float = setting("num_train_epochs", 4.0, "Training epochs.", _positive)
    learning_rate: float = setting(
        "learning_rate", 3e-5, "Peak learning rate (AdamW, linear decay).", _positive
    )
    per_device_train_batch_size: int = setting(
        "per_device_train_batch_size", 8, "Batch size per GPU.", _at_least(1)
    )
    max_length_seconds: float = setting(
        "max_length_seconds", 5.0, "Training crop and serving window length, seconds.", _positive
    )

    def as_arguments(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings; train.py parses them with HfArgumentParser."""
        return {f.name: _format(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class TrainingConfig:
    """The SageMaker training job the launcher creates."""

    instance_type: str = setting(
        "training_instance_type", "ml.g5.xlarge", "Training instance type.", _INSTANCE
    )
    instance_count: int = setting(
        "training_instance_count", 1, "Instances per job (>1 runs torch distributed).", _at_least(1)
    )
    volume_size_gb: int = setting("training_volume_size_gb", 50, "EBS volume per instance, GB.", _at_least(1))
    use_spot: bool = setting("training_use_spot", True, "Managed spot training (resumes from checkpoints).")
    max_runtime_seconds: int = setting(
        "training_max_runtime_seconds", 6 * 3600, "Hard limit on training time.", _at_least(60)
    )
    max_wait_seconds: int = setting(
        "training_max_wait_seconds",
        12 * 3600,
        "With spot: limit on training plus waiting for capacity (>= max runtime).",
        _at_least(60),
    )
    image_version: str = setting(
        "training_image_version",
        "4.56.2",
        "Transformers version of the Hugging Face PyTorch training image.",
        _image_version,
    )
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)


@dataclass(frozen=True)
class ScheduleConfig:
    """Retraining on a schedule."""

    expression: str = setting(
        "retrain_schedule", "cron(0 3 ? * SUN *)", "When to retrain (EventBridge, UTC).", _SCHEDULE
    )
    enabled: bool = setting("retrain_enabled", False, "Whether the schedule fires.")


@dataclass(frozen=True)
class QualityGate:
    """What a trained model must reach before it is registered as Approved."""

    min_accuracy: float = setting("min_accuracy", 0.5, "Minimum test (else validation) accuracy.", _fraction)
    min_f1: float = setting("min_f1", 0.5, "Minimum macro-F1.", _fraction)
    min_clip_accuracy: float = setting(
        "min_clip_accuracy", 0.5, "Minimum clip-level accuracy (windows aggregated per clip).", _fraction
    )
    max_regression: float = setting(
        "max_regression",
        0.01,
        "How much worse than the current approved model a new one may be, per metric.",
        _fraction,
    )
    manual_approval: bool = setting(
        "manual_approval", False, "Register passing models as PendingManualApproval instead of Approved."
    )


@dataclass(frozen=True)
class StagingConfig:
    """What the CodeBuild staging project stages when started without overrides."""

    source: str = setting(
        "staging_source", "esc50", "Dataset source to stage.", _one_of("esc50", "fsd50k", "folder")
    )
    source_url: str = setting(
        "staging_source_url", "", "Where to download the source from (empty: the official location)."
    )


@dataclass(frozen=True)
class ServingConfig:
    """The endpoint (deployed only once a model is given)."""

    instance_type: str = setting(
        "serving_instance_type", "ml.m5.xlarge", "Endpoint instance type.", _INSTANCE
    )
    image_version: str = setting(
        "serving_image_version",
        "4.51.3",
        "Transformers version of the Hugging Face PyTorch inference image.",
        _serving_image_version,
    )
    autoscaling_min_capacity: int = setting(
        "autoscaling_min_capacity", 1, "Fewest endpoint instances.", _at_least(1)
    )
    autoscaling_max_capacity: int = setting(
        "autoscaling_max_capacity", 4, "Most endpoint instances.", _at_least(1)
    )
    autoscaling_target_invocations: int = setting(
        "autoscaling_target_invocations",
        60,
        "Target invocations per instance per minute (target tracking).",
        _at_least(1),
    )


@dataclass(frozen=True)
class AppConfig:
    """Everything the stacks need, validated."""

    env_name: str
    name_prefix: str = setting(
        "name_prefix",
        "acoustic-shield",
        "Prefix of runtime names (training jobs, model package group, endpoint).",
        _pattern(r"[a-z][a-z0-9-]{1,26}[a-z0-9]", "3-28 characters: lowercase letters, digits and '-'"),
    )
    dataset_prefix: str = setting(
        "dataset_prefix",
        "datasets/esc50/",
        "Data-bucket prefix holding train/ [validation/] [test/] label folders.",
        _pattern(r"datasets/([A-Za-z0-9._-]+/)+", "a prefix under 'datasets/' ending in '/'"),
    )
    account: str = setting("account", "", "Target account (empty: environment-agnostic template).")
    region: str = setting("region", "", "Target region (empty: environment-agnostic template).")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    quality: QualityGate = field(default_factory=QualityGate)
    staging: StagingConfig = field(default_factory=StagingConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)

    @property
    def tags(self) -> dict[str, str]:
        return {"project": "acoustic-shield", "environment": self.env_name}

    def __post_init__(self) -> None:
        t = self.training
        if t.use_spot and t.max_wait_seconds < t.max_runtime_seconds:
            raise ConfigError(
                f"training_max_wait_seconds ({t.max_wait_seconds}) must be >= training_max_runtime_seconds "
                f"({t.max_runtime_seconds}) when training_use_spot is true"
            )
        s = self.serving
        if s.autoscaling_min_capacity > s.autoscaling_max_capacity:
            raise ConfigError(
                f"autoscaling_min_capacity ({s.autoscaling_min_capacity}) must be <= "
                f"autoscaling_max_capacity ({s.autoscaling_max_capacity})"
            )


# --- building it from context -------------------------------------------------------------------


def settings(cls: type = AppConfig) -> list[tuple[str, dataclasses.Field[Any], type]]:
    """Every configuration key, depth first: (key, field, type). The README documents each one."""
    found: list[tuple[str, dataclasses.Field[Any], type]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found.extend(settings(kind))
        elif "key" in f.metadata:
            found.append((f.metadata["key"], f, hints[f.name]))
    return found


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse(key: str, raw: Any, kind: type) -> Any:
    """Context values from cdk.json are JSON; from ``-c`` they are strings."""
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise ValueError
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        expected = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise ConfigError(f"config key '{key}' = {raw!r} is invalid: expected {expected}") from None


def _build(cls: type, values: Mapping[str, Any], env_name: str) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[f.name] = _build(kind, values, env_name)
        elif f.name == "env_name":
            kwargs[f.name] = env_name
        elif f.metadata["key"] in values:
            key = f.metadata["key"]
            value = _parse(key, values[key], kind)
            problem = f.metadata["check"](value) if f.metadata["check"] else None
            if problem:
                raise ConfigError(f"config key '{key}' = {values[key]!r} is invalid: expected {problem}")
            kwargs[f.name] = value
    return cls(**kwargs)


def load_config(context: Callable[[str], Any]) -> AppConfig:
    """Builds the config from a context lookup (``app.node.try_get_context``)."""
    env_name = context("env") or "dev"
    if env_name not in ENVIRONMENTS:
        raise ConfigError(
            f"config key 'env' = {env_name!r} is invalid: expected one of {', '.join(ENVIRONMENTS)}"
        )
    root = context(CONTEXT_ROOT) or {}
    if isinstance(root, str):  # `-c acoustic_shield=...` arrives as a string
        root = json.loads(root)
    env_values = dict(root.get(env_name) or {})
    known = {key for key, _, _ in settings()}
    unknown = sorted(set(env_values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in cdk.json context.{CONTEXT_ROOT}.{env_name}; "
            "the README lists the valid keys"
        )
    for key in known:
        override = context(key)
        if override is not None:
            env_values[key] = override
    return _build(AppConfig, env_values, env_name)


def load_image_table() -> dict[str, Any]:
    """The Hugging Face PyTorch image table, extracted from the SageMaker Python SDK's image tables."""
    data: dict[str, Any] = json.loads(IMAGE_TABLE.read_text())
    return data

"""The promoter's environment, validated once per container into a frozen model."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """One or more environment variables are missing or invalid; the message names each one."""


@dataclass(frozen=True)
class Thresholds:
    """The quality gate: minimums per metric and the tolerated regression against the approved model."""

    min_accuracy: float
    min_f1: float
    min_clip_accuracy: float
    max_regression: float

    def minimum(self, metric: str) -> float:
        """The minimum for a gated metric name (``accuracy``, ``f1``, ``clip_accuracy``)."""
        return float(getattr(self, f"min_{metric}"))


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

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Reads and validates every variable; reports all problems at once."""
        reader = _Reader(environ)
        settings = cls(
            model_package_group=reader.text(
                "MODEL_PACKAGE_GROUP",
                r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
                "a model package group name (letters, digits and '-', at most 63 characters)",
            ),
            job_name_prefix=reader.text(
                "JOB_NAME_PREFIX",
                r"[a-zA-Z0-9][a-zA-Z0-9-]{0,61}",
                "a training job name prefix such as 'acoustic-shield-dev-train-'",
            ),
            thresholds=Thresholds(
                min_accuracy=reader.fraction("MIN_ACCURACY"),
                min_f1=reader.fraction("MIN_F1"),
                min_clip_accuracy=reader.fraction("MIN_CLIP_ACCURACY"),
                max_regression=reader.fraction("MAX_REGRESSION"),
            ),
            manual_approval=reader.boolean("MANUAL_APPROVAL"),
            topic_arn=reader.text(
                "TOPIC_ARN",
                r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}",
                "an SNS topic ARN",
            ),
            inference_image=reader.text(
                "INFERENCE_IMAGE", r"\S{1,255}", "a container image URI such as '<registry>/<repo>:<tag>'"
            ),
            serving_instance_type=reader.text(
                "SERVING_INSTANCE_TYPE",
                r"ml\.[a-z0-9-]+\.[a-z0-9]+",
                "a SageMaker instance type such as 'ml.m5.xlarge'",
            ),
            data_bucket=reader.text(
                "DATA_BUCKET", r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name (not a URI)"
            ),
            evaluation_prefix=reader.text(
                "EVALUATION_PREFIX",
                r"[^/][^\s]*/",
                "an S3 key prefix ending in '/' such as 'evaluation/'",
            ),
            tuning_job_prefix=reader.text(
                "TUNING_JOB_PREFIX",
                r"[a-zA-Z0-9][a-zA-Z0-9-]{0,30}",
                "a tuning job name prefix such as 'acoustic-shield-dev-hpo-'",
                required=False,
            ),
        )
        if reader.problems:
            raise SettingsError("invalid promoter environment: " + "; ".join(reader.problems))
        return settings


class _Reader:
    """Collects every problem instead of stopping at the first, so one deploy fixes them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def _read(
        self, name: str, convert: Callable[[str], Any], allowed: str, default: Any, required: bool = True
    ) -> Any:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            if required:
                self.problems.append(f"{name} is missing: set it to {allowed}")
            return default
        try:
            return convert(raw.strip())
        except ValueError:
            self.problems.append(f"{name}={raw!r} is invalid: expected {allowed}")
            return default

    def text(self, name: str, pattern: str, allowed: str, required: bool = True) -> str:
        def convert(raw: str) -> str:
            if not re.fullmatch(pattern, raw):
                raise ValueError
            return raw

        value: str = self._read(name, convert, allowed, "", required)
        return value

    def fraction(self, name: str) -> float:
        def convert(raw: str) -> float:
            value = float(raw)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError
            return value

        value: float = self._read(name, convert, "a number between 0 and 1", 0.0)
        return value

    def boolean(self, name: str) -> bool:
        def convert(raw: str) -> bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return raw.lower() == "true"

        value: bool = self._read(name, convert, "'true' or 'false'", False)
        return value

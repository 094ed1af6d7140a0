"""The promoter's environment, validated once per container into a frozen model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

try:  # the Lambda package carries it beside this module
    from . import environment  # type: ignore[attr-defined]
except ImportError:  # the repository
    from functions import environment


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
        reader = environment.Reader(environ)
        settings = cls(
            model_package_group=reader.text(
                "MODEL_PACKAGE_GROUP",
                "a model package group name (letters, digits and '-', at most 63 characters)",
                pattern=r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
            ),
            job_name_prefix=reader.text(
                "JOB_NAME_PREFIX",
                "a training job name prefix such as 'acoustic-shield-dev-train-'",
                pattern=r"[a-zA-Z0-9][a-zA-Z0-9-]{0,61}",
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
                "an SNS topic ARN",
                pattern=r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}",
            ),
            inference_image=reader.text(
                "INFERENCE_IMAGE",
                "a container image URI such as '<registry>/<repo>:<tag>'",
                pattern=r"\S{1,255}",
            ),
            serving_instance_type=reader.text(
                "SERVING_INSTANCE_TYPE",
                "a SageMaker instance type such as 'ml.m5.xlarge'",
                pattern=r"ml\.[a-z0-9-]+\.[a-z0-9]+",
            ),
            data_bucket=reader.text(
                "DATA_BUCKET", "an S3 bucket name (not a URI)", pattern=r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
            ),
            evaluation_prefix=reader.text(
                "EVALUATION_PREFIX",
                "an S3 key prefix ending in '/' such as 'evaluation/'",
                pattern=r"[^/][^\s]*/",
            ),
            tuning_job_prefix=reader.text(
                "TUNING_JOB_PREFIX",
                "a tuning job name prefix such as 'acoustic-shield-dev-hpo-'",
                pattern=r"[a-zA-Z0-9][a-zA-Z0-9-]{0,30}",
                required=False,
            ),
        )
        reader.raise_problems(SettingsError, "promoter")
        return settings

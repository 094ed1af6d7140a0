"""Pure promotion logic: the quality gate, and the requests and messages that follow from it.

Nothing here talks to AWS; every function takes values and returns values, so the gate is tested
exhaustively without a network or an emulator.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import contract, lambda_contract
from common.lambda_contract import GateRule

from .settings import Settings, Thresholds

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
NOT_REGISTERED = "NotRegistered"  # the job failed or stopped: nothing to register
IGNORED = "Ignored"  # not a job of this deployment, or not finished

FINISHED_WITH_MODEL = "Completed"
FINISHED_WITHOUT_MODEL = ("Failed", "Stopped")

# Keys of CustomerMetadataProperties; the next gate reads the same keys back from the approved packages.
META_JOB = "training_job"
# The task the job trained (its --task; the default task when it names none): the package says what it is,
# beside its group's name, for whoever deploys or audits it.
META_TASK = "task"
META_SPLIT = "metrics_split"
META_COMPARISON = "comparison"  # what the new model was compared with, or why it could not be
# A tuning job's winner also records the tuning job, its objective and the values it chose.
META_TUNING_JOB = "tuning_job"
META_TUNING_OBJECTIVE = "tuning_objective"
META_TUNED_PREFIX = "tuned_"
# The blocking training-health rules that fired in the job's run (space-separated), when any did.
META_HEALTH_BLOCKING = "health_blocking"

TUNING_FINISHED = ("Completed", "Failed", "Stopped")
# Debugger and Profiler rule evaluation statuses (DescribeTrainingJob) that are announced.
RULE_STATUSES = {"DebugRuleEvaluationStatuses": "Debugger", "ProfilerRuleEvaluationStatuses": "Profiler"}
RULE_FIRED = "IssuesFound"
# Each message is sent once; markers under evaluation/<job>/notifications/ record what was sent.
NOTIFICATIONS, REGISTRATION_LEASE = lambda_contract.NOTIFICATIONS, lambda_contract.REGISTRATION_LEASE
OUTCOME = "outcome"  # the message about a job's (or a tuning job's) outcome

# A fixed namespace keeps ClientToken stable for a job name across containers and deployments.
_TOKEN_NAMESPACE = uuid.UUID("6f0e3c1a-7d5b-4f8e-9a51-3c2f4b8d9e10")
_DESCRIPTION_LIMIT = 1024
_METADATA_VALUE_LIMIT = 256
_METADATA_PUNCTUATION = " _.:/=+-@"
_SUBJECT_LIMIT = 100
# Metric comparisons tolerate float noise, so a value exactly at a threshold passes.
_EPSILON = 1e-9
# What a metrics.json or evaluation.json may report: the quality metrics and the training-health flags/values.
_REPORTED_METRICS = frozenset(contract.JOB_METRIC_NAMES)
_HEALTH_FLAGS = {"fired": 1.0, "silent": 0.0}  # evaluation.json's rule status as its health_<rule> flag
_HEALTH_REVIEW = "needs review: training health"


@dataclass(frozen=True)
class TuningResult:
    """A finished tuning job as DescribeHyperParameterTuningJob reports it: its winner and the trials."""

    name: str
    arn: str
    best_job: str | None  # the best completed trial, if any
    objective: str | None  # e.g. "eval_f1"
    objective_value: float | None
    tuned: Mapping[str, str] = field(default_factory=dict)  # the winner's values of the tuned hyperparameters
    counters: Mapping[str, int] = field(default_factory=dict)  # TrainingJobStatusCounters

    @property
    def completed_trials(self) -> int:
        return int(self.counters.get("Completed", 0))


@dataclass(frozen=True)
class RuleFinding:
    """A Debugger or Profiler rule that found issues in a training job."""

    kind: str  # "Debugger" or "Profiler"
    rule: str
    details: str
    evaluation_job_arn: str | None
    output: str | None  # where the rule's reports are, when the job says


@dataclass(frozen=True)
class ApprovedModel:
    """An Approved package of the group, with the split and gated metrics it was registered with.

    ``unreadable`` names what its CustomerMetadataProperties lack for a comparison (``metrics_split``, or a
    gated metric that is absent or not a value its rule's metric takes); the gate cannot compare against such
    a package.
    """

    arn: str
    metrics: Mapping[str, float]
    split: str | None = None
    version: int | None = None
    unreadable: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How reasons name the package: its version in the group, else its ARN."""
        return f"version {self.version}" if self.version is not None else self.arn


@dataclass(frozen=True)
class HealthFinding:
    """A training-health rule that fired in the job's run, with what evaluation.json says about it.

    ``blocking``: the rule is one of the deployment's ``health_blocking_rules``, so a model from that run is
    never approved by the gate alone.
    """

    rule: str
    blocking: bool
    value: float | None = None
    threshold: float | None = None
    step: int | None = None
    advice: str = ""

    def describe(self) -> str:
        """``training health: loss_not_decreasing fired (value 0.004, threshold 0.01, at step 1200; blocking);
        advice: ...``"""
        measured = []
        if self.value is not None:
            measured.append(f"value {_format_metric(self.value)}")
        if self.threshold is not None:
            measured.append(f"threshold {_format_metric(self.threshold)}")
        if self.step is not None:
            measured.append(f"at step {self.step}")
        kind = "blocking" if self.blocking else "not blocking"
        details = f"{', '.join(measured)}; {kind}" if measured else kind
        text = f"training health: {self.rule} fired ({details})"
        return f"{text}; advice: {self.advice}" if self.advice else text


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: the approval status to register and every reason for it.

    ``health``: the training-health rules that fired in the job's run (blocking or not).
    """

    status: str
    reasons: tuple[str, ...]
    split: str | None = None
    gated: Mapping[str, float] = field(default_factory=dict)
    comparison: str = ""
    health: tuple[HealthFinding, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status != REJECTED

    @property
    def blocking_health(self) -> tuple[str, ...]:
        """The blocking training-health rules that fired in the job's run."""
        return tuple(finding.rule for finding in self.health if finding.blocking)

    @property
    def needs_health_review(self) -> bool:
        """Waiting for a person because the run tripped a blocking training-health rule."""
        return self.status == PENDING and bool(self.blocking_health)


# --- the job --------------------------------------------------------------------------------------


def tuning_result(described: Mapping[str, Any]) -> TuningResult:
    """The winner (``BestTrainingJob``, a completed trial) and the trial counts of a described tuning job."""
    best = described.get("BestTrainingJob") or {}
    best_name = best.get("TrainingJobName")
    completed_best = (
        isinstance(best_name, str) and best_name and best.get("TrainingJobStatus", "Completed") == "Completed"
    )
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    tuned = best.get("TunedHyperParameters") or {}
    counters = described.get("TrainingJobStatusCounters") or {}
    return TuningResult(
        name=str(described["HyperParameterTuningJobName"]),
        arn=str(described.get("HyperParameterTuningJobArn", "")),
        best_job=best_name if completed_best else None,
        objective=objective.get("MetricName") if isinstance(objective.get("MetricName"), str) else None,
        objective_value=_number(objective.get("Value")),
        tuned={str(k): str(v) for k, v in sorted(tuned.items())},
        counters={str(k): int(v) for k, v in counters.items() if isinstance(v, int)},
    )


def rule_findings(job: Mapping[str, Any]) -> list[RuleFinding]:
    """The job's Debugger and Profiler rules whose evaluation found issues, with where their reports are."""
    found: list[RuleFinding] = []
    outputs = {
        "Debugger": (job.get("DebugHookConfig") or {}).get("S3OutputPath"),
        "Profiler": (job.get("ProfilerConfig") or {}).get("S3OutputPath"),
    }
    for key, kind in RULE_STATUSES.items():
        for status in job.get(key) or []:
            if status.get("RuleEvaluationStatus") != RULE_FIRED:
                continue
            base = outputs[kind]
            found.append(
                RuleFinding(
                    kind=kind,
                    rule=str(status.get("RuleConfigurationName", "unnamed")),
                    details=str(status.get("StatusDetails") or "no details given"),
                    evaluation_job_arn=status.get("RuleEvaluationJobArn"),
                    output=f"{base.rstrip('/')}/{job['TrainingJobName']}/rule-output/"
                    if isinstance(base, str) and base
                    else None,
                )
            )
    return found


def rule_notification(finding: RuleFinding) -> str:
    """The name of the one message about ``finding`` (``profiler-LowGPUUtilization``)."""
    rule = "".join(c if c.isalnum() or c in "-_." else "_" for c in finding.rule)
    return f"{finding.kind.lower()}-{rule}"


def notification_key(prefix: str, name: str, what: str) -> str:
    """Where the promoter records that it sent message ``what`` about job ``name`` (in the data bucket)."""
    return f"{prefix}{name}/{NOTIFICATIONS}/{what}.json"


def registration_lease_key(prefix: str, name: str) -> str:
    """The lease that lets one delivery of job ``name``'s event register it (lambdas/lease.py)."""
    return f"{prefix}{name}/{REGISTRATION_LEASE}"


def tuning_job_of(job: Mapping[str, Any]) -> str | None:
    """The ``TuningJobArn`` of a hyperparameter tuning job's trial (event detail or described job), else None."""
    arn = job.get("TuningJobArn")
    return arn if isinstance(arn, str) and arn else None


def job_task(job: Mapping[str, Any]) -> str:
    """The task a described training job trained: its ``task`` hyperparameter (JSON-encoded, as the launcher
    and the SageMaker Python SDK send every value; a bare name is taken as it is), else the default task,
    whose jobs name none."""
    raw = (job.get("HyperParameters") or {}).get(contract.TASK_ARGUMENT)
    if not isinstance(raw, str) or not raw.strip():
        return lambda_contract.DEFAULT_TASK
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw.strip()
    return decoded if isinstance(decoded, str) and decoded else raw.strip()


def ignored_trial_reason(tuning_job_arn: str) -> str:
    """Why a trial is not registered: a tuning job would otherwise register (and notify) every trial."""
    return f"a trial of the tuning job {tuning_job_arn}: trials are not registered"


# --- metrics ----------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metrics_from_final_metric_data(items: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``FinalMetricDataList`` of DescribeTrainingJob as ``{name: value}``."""
    found: dict[str, float] = {}
    for item in items:
        name, value = item.get("MetricName"), _number(item.get("Value"))
        if isinstance(name, str) and value is not None:
            found[name] = value
    return found


def reported_metrics(gated: Sequence[str] = ()) -> frozenset[str]:
    """The metric names a report may give: the default task's quality metrics, the training-health flags and
    values, and each split's value of the ``gated`` metrics (the gate rules' names: ``map`` gives
    ``eval_map`` and ``test_map``), whatever the task."""
    return _REPORTED_METRICS | {f"{split}_{name}" for split in contract.METRIC_SPLITS for name in gated}


def metrics_from_report(report: Any, gated: Sequence[str] = ()) -> dict[str, float]:
    """Known metric names (quality and training health, and each split's value of the ``gated`` metrics:
    ``reported_metrics``) from a flat ``metrics.json`` or a nested ``evaluation.json``.

    A nested report may spell ``test_f1`` as ``{"test": {"f1": ...}}`` or keep flat names under any key;
    both are found. The first occurrence of a name wins. An ``evaluation.json`` health section gives each
    evaluated rule's flag and value too (``health_<rule>``: 1 fired, 0 silent; ``health_<rule>_value``).
    """
    known = reported_metrics(gated)
    found: dict[str, float] = {}

    def walk(node: Any, parent: str) -> None:
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            if not isinstance(key, str):
                continue
            number = _number(value)
            if number is None:
                walk(value, key)
                continue
            for name in (key, f"{parent}_{key}"):
                if name in known and name not in found:
                    found[name] = number
                    break

    walk(report, "")
    for name, value in _health_metrics(health_rules_report(report)).items():
        found.setdefault(name, value)
    return found


def health_rules_report(report: Any) -> Mapping[str, Mapping[str, Any]]:
    """``evaluation.json["health"]["rules"]`` (``{rule: {"status", "value", "threshold", "step", "reason",
    "advice"}}``), the known rules only; empty when the report has no such section."""
    section = report.get(contract.HEALTH_REPORT) if isinstance(report, Mapping) else None
    rules = section.get("rules") if isinstance(section, Mapping) else None
    if not isinstance(rules, Mapping):
        return {}
    return {
        rule: entry
        for rule, entry in rules.items()
        if rule in contract.HEALTH_RULES and isinstance(entry, Mapping)
    }


def evaluation_health(evaluation: bytes | None) -> Mapping[str, Mapping[str, Any]]:
    """The health rules of the job's ``evaluation.json`` (bytes as read from its output); empty when it is
    missing or not JSON (the output's problems are reported with the metrics)."""
    if not evaluation:
        return {}
    try:
        return health_rules_report(json.loads(evaluation))
    except ValueError:
        return {}


def _health_metrics(rules: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The flag and value of each rule the report says was evaluated (fired or silent)."""
    found: dict[str, float] = {}
    for rule, entry in rules.items():
        flag = _HEALTH_FLAGS.get(str(entry.get("status")))
        if flag is None:  # not evaluated: no metric, as the job prints none
            continue
        found[contract.health_metric(rule)] = flag
        value = _number(entry.get("value"))
        if value is not None:
            found[contract.health_value_metric(rule)] = value
    return found


def health_findings(
    metrics: Mapping[str, float],
    rules: Mapping[str, Mapping[str, Any]],
    blocking_rules: Iterable[str],
) -> tuple[HealthFinding, ...]:
    """Every rule whose flag says it fired (``metrics[health_<rule>] == 1``), in contract order, with its
    value (the metric, else the report's), threshold, step and advice from the ``evaluation.json`` rules."""
    blocking = frozenset(blocking_rules)
    findings: list[HealthFinding] = []
    for rule in contract.HEALTH_RULES:
        if metrics.get(contract.health_metric(rule)) != 1.0:
            continue
        entry = rules.get(rule) or {}
        value = metrics.get(contract.health_value_metric(rule))
        step = entry.get("step")
        advice = entry.get("advice")
        findings.append(
            HealthFinding(
                rule=rule,
                blocking=rule in blocking,
                value=value if value is not None else _number(entry.get("value")),
                threshold=_number(entry.get("threshold")),
                step=step if isinstance(step, int) and not isinstance(step, bool) else None,
                advice=" ".join(advice.split()) if isinstance(advice, str) else "",
            )
        )
    return tuple(findings)


def merge_metrics(*sources: Mapping[str, float]) -> dict[str, float]:
    """One view of the metrics: earlier sources win, later ones fill the gaps."""
    merged: dict[str, float] = {}
    for source in sources:
        for name, value in source.items():
            merged.setdefault(name, value)
    return merged


def gate_split(metrics: Mapping[str, float], names: Sequence[str]) -> str:
    """``test`` when the job reported any test metric of ``names`` (it had a test split), else ``eval``."""
    for split in contract.GATE_SPLITS:
        if any(f"{split}_{name}" in metrics for name in names):
            return split
    return contract.GATE_SPLITS[-1]


# --- the gate ---------------------------------------------------------------------------------------


def decide(
    metrics: Mapping[str, float],
    *,
    thresholds: Thresholds,
    approved: Sequence[ApprovedModel],
    manual_approval: bool,
    health: Sequence[HealthFinding] = (),
) -> Decision:
    """The quality gate: every gated metric present and on the right side of its rule's threshold (at
    least the minimum when higher is better, at most the maximum otherwise), and none more than
    ``max_regression`` worse, in its own direction, than the best value any Approved package of the same
    split reached.

    Rejected when a rule fails; PendingManualApproval when the run tripped a blocking training-health rule
    (``health``), when the approved packages cannot be compared with (another split, metrics not stored) or
    when ``manual_approval`` is on; Approved otherwise. Every fired health rule is listed among the reasons.
    """
    split = gate_split(metrics, thresholds.metrics)
    gated, failures, passes = _against_thresholds(metrics, split, thresholds.gate_rules)
    comparison = compare_with_approved(gated, split, approved, thresholds)
    failures += comparison.failures
    passes += comparison.passes

    def decided(status: str, reasons: Iterable[str]) -> Decision:
        return Decision(
            status=status,
            reasons=tuple(reasons),
            split=split,
            gated=gated,
            comparison=comparison.summary,
            health=tuple(health),
        )

    held = [finding for finding in health if finding.blocking]
    noted = [finding.describe() for finding in health if not finding.blocking]
    if failures:
        # A failing model stays rejected; what went wrong in its run helps whoever trains the next one.
        return decided(REJECTED, [*failures, *(finding.describe() for finding in health)])
    waits: list[str] = []
    if held:
        # A run that stopped learning or blew up may still score well on one split: a person looks first.
        rules = ", ".join(finding.rule for finding in held)
        waits.append(
            f"the run tripped the blocking training-health rule(s) {rules} (health_blocking_rules): "
            "a person approves or rejects this package"
        )
    if comparison.blockers:
        # Never "anything goes": a model the gate cannot compare waits for a person, whatever the mode.
        waits.append(
            "the gate cannot compare this model with the approved ones: a person approves or rejects it"
        )
    if waits:
        first = [finding.describe() for finding in held]
        return decided(PENDING, [*first, *comparison.blockers, *passes, *noted, *waits])
    if manual_approval:
        why = "manual_approval is on: a person approves or rejects this package"
        return decided(PENDING, [*passes, *noted, why])
    return decided(APPROVED, [*passes, *noted])


def _against_thresholds(
    metrics: Mapping[str, float], split: str, rules: Sequence[GateRule]
) -> tuple[dict[str, float], list[str], list[str]]:
    """Each rule's metric on ``split`` against its threshold: the values gated (by metric name), the rules
    failed and the rules passed, each with its value and threshold."""
    gated: dict[str, float] = {}
    failures: list[str] = []
    passes: list[str] = []
    for rule in rules:
        key = f"{split}_{rule.metric}"
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            failures.append(f"{key} is missing from the job's metrics")
            continue
        if not rule.accepts(value):
            # A percentage for a fraction, a negative error rate: a broken report, never compared.
            failures.append(f"{key} = {value:g} is not {rule.values}")
            continue
        gated[rule.metric] = value
        passed, reason = _against_threshold(key, value, rule)
        (passes if passed else failures).append(reason)
    return gated, failures, passes


def _against_threshold(key: str, value: float, rule: GateRule) -> tuple[bool, str]:
    """Whether ``value`` is on the right side of the rule's threshold (float noise tolerated, so a value
    exactly at it passes), and the reason that says so: ``test_wer 0.3500 is above the maximum 0.3000``."""
    if rule.higher_is_better:
        passed = value + _EPSILON >= rule.threshold
        verdict = "is at or above" if passed else "is below"
    else:
        passed = value - _EPSILON <= rule.threshold
        verdict = "is at or below" if passed else "is above"
    return passed, f"{key} {value:.4f} {verdict} the {rule.bound} {rule.threshold:.4f}"


@dataclass(frozen=True)
class Comparison:
    """The new model against the approved ones: rules failed, rules passed, and what blocks comparing."""

    failures: tuple[str, ...] = ()
    passes: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    summary: str = ""


def compare_with_approved(
    gated: Mapping[str, float], split: str, approved: Sequence[ApprovedModel], thresholds: Thresholds
) -> Comparison:
    """Each gated metric against the best value of that metric among the approved packages of ``split``:
    the highest where higher is better, the lowest where lower is better.

    The baseline is the per-metric best, not the latest: a run of models each slightly worse than the one
    before stops once it is ``max_regression`` worse than the best (below it, or above it for a metric where
    lower is better). Packages of the other split are never compared; a package whose metrics cannot be
    read blocks the comparison instead of being skipped, because it may be the best one. ``approved`` are
    read with the rules (``approved_model_from_package(package, thresholds.gate_rules)``).
    """
    if not approved:
        return Comparison(
            passes=("no approved model in the group yet; only the thresholds apply",),
            summary="no approved model yet",
        )

    blockers = [
        f"cannot compare: the approved package {model.arn} has no readable {', '.join(model.unreadable)} "
        "in its CustomerMetadataProperties"
        for model in approved
        if model.unreadable
    ]
    readable = [model for model in approved if not model.unreadable]
    same = [model for model in readable if model.split == split]
    other_splits = sorted({str(model.split) for model in readable if model.split != split})
    if readable and not same:
        blockers.append(
            f"cannot compare: the approved models were measured on {' and '.join(other_splits)} metrics "
            f"and this one on {split} metrics, which are never compared"
        )

    failures: list[str] = []
    passes: list[str] = []
    rules = [rule for rule in thresholds.gate_rules if rule.metric in gated] if same else []
    for rule in rules:
        passed, reason = _against_best(rule, gated[rule.metric], same, thresholds.max_regression)
        (passes if passed else failures).append(reason)
    if same and other_splits:
        passes.append(
            f"note: {len(readable) - len(same)} approved package(s) measured on {' and '.join(other_splits)} "
            "metrics were not compared"
        )

    # Stored on the package (metadata values allow no commas or parentheses), for whoever audits it later.
    if blockers:
        summary = blockers[0]
    else:
        best_values = " ".join(
            f"{rule.metric} {_best(same, rule).metrics[rule.metric]:.4f}" for rule in thresholds.gate_rules
        )
        summary = f"best of {len(same)} approved {split} packages: {best_values}"
    return Comparison(
        failures=tuple(failures), passes=tuple(passes), blockers=tuple(blockers), summary=summary
    )


def _best(models: Sequence[ApprovedModel], rule: GateRule) -> ApprovedModel:
    """The model with the best value of the rule's metric: the highest, or the lowest when lower is better."""
    pick = max if rule.higher_is_better else min
    return pick(models, key=lambda model: model.metrics[rule.metric])


def _against_best(
    rule: GateRule, value: float, same: Sequence[ApprovedModel], max_regression: float
) -> tuple[bool, str]:
    """Whether ``value`` is within ``max_regression`` of the best approved value, in the rule's direction,
    and the reason that says so."""
    name = rule.metric
    best = _best(same, rule)
    previous = best.metrics[name]
    # How much worse than the best: a drop when higher is better, a rise when lower is better.
    worse, side = (previous - value, "below") if rule.higher_is_better else (value - previous, "above")
    if worse > max_regression + _EPSILON:
        return False, (
            f"{name} {value:.4f} is {worse:.4f} {side} the best approved model's {previous:.4f} "
            f"({best.label}, max_regression {max_regression:.4f})"
        )
    return True, (
        f"{name} {value:.4f} vs best approved {previous:.4f} ({best.label}): "
        f"within max_regression {max_regression:.4f}"
    )


def rejected_without_metrics(reason: str) -> Decision:
    """A completed job the gate cannot judge (no model artifact, unreadable output) is rejected."""
    return Decision(status=REJECTED, reasons=(reason,))


def approved_model_from_package(package: Mapping[str, Any], rules: Sequence[GateRule]) -> ApprovedModel:
    """An approved package's split and gated metrics (each of the gate ``rules``' metrics), read back from
    its CustomerMetadataProperties.

    What the promoter writes on every package is the record the gate trusts; a value that is absent or
    not one its rule's metric takes (a fraction in 0..1, or a number >= 0 for an error rate such as WER) is
    listed in ``unreadable``.
    """
    properties = package.get("CustomerMetadataProperties") or {}
    unreadable: list[str] = []
    split = properties.get(META_SPLIT)
    if split not in contract.GATE_SPLITS:
        unreadable.append(META_SPLIT)
    metrics: dict[str, float] = {}
    for rule in rules:
        name = rule.metric
        try:
            value = float(properties[name])
        except (KeyError, TypeError, ValueError):
            unreadable.append(name)
            continue
        if rule.accepts(value):
            metrics[name] = value
        else:
            unreadable.append(name)
    version = package.get("ModelPackageVersion")
    return ApprovedModel(
        arn=str(package["ModelPackageArn"]),
        metrics=metrics,
        split=split if split in contract.GATE_SPLITS else None,
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        unreadable=tuple(unreadable),
    )


# --- requests ---------------------------------------------------------------------------------------


def client_token(job_name: str) -> str:
    """CreateModelPackage's idempotency token: the same job always yields the same 36-character token."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, job_name))


def evaluation_key(prefix: str, job_name: str) -> str:
    """Where the job's evaluation report is kept in the data bucket."""
    return f"{prefix}{job_name}/{contract.EVALUATION_FILE}"


def output_archive_uri(job: Mapping[str, Any]) -> str | None:
    """``s3://.../<job>/output/output.tar.gz``: SageMaker's archive of train.py's output directory."""
    model_uri = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if isinstance(model_uri, str) and model_uri.endswith(f"/{contract.MODEL_ARCHIVE}"):
        return model_uri[: -len(contract.MODEL_ARCHIVE)] + contract.OUTPUT_ARCHIVE
    output_path = (job.get("OutputDataConfig") or {}).get("S3OutputPath")
    if isinstance(output_path, str) and output_path.startswith("s3://"):
        return f"{output_path.rstrip('/')}/{job['TrainingJobName']}/output/{contract.OUTPUT_ARCHIVE}"
    return None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def fallback_report(job_name: str, metrics: Mapping[str, float], note: str) -> bytes:
    """The report kept when the job's output has no evaluation.json: the metrics the gate saw."""
    report = {"training_job": job_name, "note": note, "metrics": dict(sorted(metrics.items()))}
    return json.dumps(report, indent=2).encode()


def _format_metric(value: float) -> str:
    return f"{value:.6g}"


def _metadata_value(text: str) -> str:
    """Within the API's pattern for metadata values: letters, digits, spaces and ``_.:/=+-@``, 1..256."""
    kept = "".join(c if c.isalnum() or c in _METADATA_PUNCTUATION else " " for c in text)
    return " ".join(kept.split())[:_METADATA_VALUE_LIMIT].strip() or "-"


def customer_metadata(
    job_name: str,
    decision: Decision,
    metrics: Mapping[str, float],
    tuning: TuningResult | None = None,
    gated: Sequence[str] = (),
    task: str | None = None,
) -> dict[str, str]:
    """Job name, the task it trained (``task``, when given), gated values (under each gate rule's metric
    name: ``accuracy``, ``wer``, ...), every known raw metric (the default task's, and each split's value of
    the ``gated`` metrics: the gate rules'), the training-health flags (``health_<rule>``) and the blocking rules that fired (``health_blocking``), what
    the model was compared with (``comparison``) and, for a tuning job's winner, the tuning job, its
    objective and the values it chose (``tuned_<name>``)."""
    properties = {META_JOB: job_name}
    if task:
        properties[META_TASK] = task
    if tuning is not None:
        properties[META_TUNING_JOB] = tuning.name
        if tuning.objective and tuning.objective_value is not None:
            properties[META_TUNING_OBJECTIVE] = f"{tuning.objective} {_format_metric(tuning.objective_value)}"
        properties.update({f"{META_TUNED_PREFIX}{name}": value for name, value in tuning.tuned.items()})
    if decision.split:
        properties[META_SPLIT] = decision.split
    properties.update({name: _format_metric(value) for name, value in decision.gated.items()})
    raw = dict.fromkeys(
        [*contract.METRIC_NAMES, *(f"{split}_{name}" for split in contract.METRIC_SPLITS for name in gated)]
    )
    properties.update({name: _format_metric(metrics[name]) for name in raw if name in metrics})
    # The flags of the rules the run evaluated (their values are in the evaluation report); within the
    # API's 50 properties.
    flags = [contract.health_metric(rule) for rule in contract.HEALTH_RULES]
    properties.update({name: _format_metric(metrics[name]) for name in flags if name in metrics})
    if decision.blocking_health:
        properties[META_HEALTH_BLOCKING] = " ".join(decision.blocking_health)
    if decision.comparison:
        properties[META_COMPARISON] = decision.comparison
    return {key: _metadata_value(value) for key, value in properties.items()}


def describe(decision: Decision) -> str:
    """ModelPackageDescription: the verdict and why, on one line within the API's 1,024 characters."""
    text = f"{decision.status}: " + "; ".join(decision.reasons)
    text = " ".join(text.split())  # the API allows no control characters
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[: _DESCRIPTION_LIMIT - 3] + "..."
    return text


def model_package_request(
    *,
    settings: Settings,
    job_name: str,
    model_data_url: str | None,
    evaluation_uri: str,
    decision: Decision,
    metrics: Mapping[str, float],
    tuning: TuningResult | None = None,
    task: str | None = None,
    model_card: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateModelPackage request for a completed job (a tuning job's winner carries its tuning); its
    metadata names the job's ``task`` (``job_task``) when given, and ``model_card`` (``ModelCard``:
    ``model_card.package_model_card``) is attached when given."""
    container: dict[str, Any] = {
        "Image": settings.inference_image,
        "Environment": dict(contract.HANDLER_ENVIRONMENT),
    }
    if model_data_url:
        container["ModelDataUrl"] = model_data_url
    request: dict[str, Any] = {
        "ModelPackageGroupName": settings.model_package_group,
        "ModelPackageDescription": describe(decision),
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": list(contract.REQUEST_CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(contract.RESPONSE_CONTENT_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": [settings.serving_instance_type],
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {"ContentType": contract.JSON_CONTENT_TYPE, "S3Uri": evaluation_uri}
            }
        },
        "CustomerMetadataProperties": customer_metadata(
            job_name, decision, metrics, tuning, gated=settings.thresholds.metrics, task=task
        ),
        "ModelApprovalStatus": decision.status,
        "ClientToken": client_token(job_name),
    }
    if model_card is not None:
        request["ModelCard"] = dict(model_card)
    return request


# --- notifications ----------------------------------------------------------------------------------


def _subject(text: str, tail: str = "") -> str:
    """``text`` + ``tail`` within SNS's 100 characters; ``text`` is shortened, so ``tail`` always shows."""
    room = _SUBJECT_LIMIT - len(tail)
    return (text if len(text) <= room else text[: room - 3] + "...") + tail


def registered_message(
    *,
    job_name: str,
    decision: Decision,
    model_package_arn: str,
    evaluation_uri: str | None,
    duplicate: bool,
    tuning: TuningResult | None = None,
) -> tuple[str, str]:
    """Subject and body for a completed job: the decision, the metrics and the reasons.

    A model held back by a blocking training-health rule says so in the subject (``<job> needs review:
    training health``) and in the body's second line.
    """
    lines = [f"Training job {job_name} completed. Model package: {decision.status}."]
    if decision.needs_health_review:
        lines.append(
            f"Needs review: the run tripped the blocking training-health rule(s) "
            f"{', '.join(decision.blocking_health)}; the reasons below say what was measured and what to do."
        )
    if tuning is not None:
        lines.append(tuning_summary(tuning))
    if duplicate:
        lines.append("(Repeated event: the package was registered earlier; nothing new was created.)")
    lines.append(f"Package: {model_package_arn}")
    if decision.gated:
        values = ", ".join(f"{name} {value:.4f}" for name, value in decision.gated.items())
        lines.append(f"Metrics ({decision.split}): {values}")
    if decision.reasons:
        lines.append("Why:")
        lines.extend(f"- {reason}" for reason in decision.reasons)
    if evaluation_uri:
        lines.append(f"Evaluation report: {evaluation_uri}")
    if decision.status == PENDING:
        lines.append(
            "Approve with: aws sagemaker update-model-package "
            f"--model-package-arn {model_package_arn} --model-approval-status Approved"
        )
    if decision.needs_health_review:
        return _subject(f"AcousticShield: {job_name}", f" {_HEALTH_REVIEW}"), "\n".join(lines)
    return _subject(f"AcousticShield: {job_name} {decision.status}"), "\n".join(lines)


def health_of_package(package: Mapping[str, Any]) -> tuple[HealthFinding, ...]:
    """The blocking rules a registered package's run tripped, read back from its ``health_blocking``
    metadata (a repeated event reports the package as it was registered)."""
    properties = package.get("CustomerMetadataProperties") or {}
    names = str(properties.get(META_HEALTH_BLOCKING, "")).split()
    return tuple(HealthFinding(rule=name, blocking=True) for name in names if name in contract.HEALTH_RULES)


def failed_message(*, job_name: str, status: str, failure_reason: str | None) -> tuple[str, str]:
    """Subject and body for a job that failed or was stopped."""
    lines = [
        f"Training job {job_name} {status.lower()}; no model package was registered.",
        f"Reason: {failure_reason or 'none given'}",
    ]
    return _subject(f"AcousticShield: {job_name} {status}"), "\n".join(lines)


def tuning_summary(tuning: TuningResult) -> str:
    """One line: which tuning job this trial won, on what objective, with which values."""
    objective = (
        f"{tuning.objective} {tuning.objective_value:.4f}"
        if tuning.objective and tuning.objective_value is not None
        else "objective not reported"
    )
    values = (
        ", ".join(f"{name}={value}" for name, value in tuning.tuned.items()) or "no tuned values reported"
    )
    return f"Best of {tuning.completed_trials} completed trial(s) of tuning job {tuning.name}: {objective}; {values}."


def tuning_without_model_message(
    tuning: TuningResult, status: str, failure_reason: str | None
) -> tuple[str, str]:
    """Subject and body for a tuning job that ended without a winner to register."""
    counts = (
        ", ".join(f"{count} {state}" for state, count in sorted(tuning.counters.items()) if count) or "none"
    )
    if status == "Completed":
        what = f"Tuning job {tuning.name} completed without a completed training job; no model package was registered."
    else:
        what = f"Tuning job {tuning.name} {status.lower()}; no model package was registered."
    lines = [what, f"Trials: {counts}."]
    if tuning.best_job and status != "Completed":
        lines.append(f"Best trial so far: {tuning.best_job} ({tuning_summary(tuning)})")
    lines.append(f"Reason: {failure_reason or 'none given'}")
    return _subject(f"AcousticShield: {tuning.name} {status} without a model"), "\n".join(lines)


def rule_message(job_name: str, finding: RuleFinding) -> tuple[str, str]:
    """Subject and body for a Debugger or Profiler rule that found issues in a training job."""
    lines = [
        f"{finding.kind} rule {finding.rule} found issues in training job {job_name}.",
        f"Details: {finding.details}",
    ]
    if finding.evaluation_job_arn:
        lines.append(f"Rule evaluation job: {finding.evaluation_job_arn}")
    if finding.output:
        lines.append(f"Reports: {finding.output}")
    return _subject(f"AcousticShield: {job_name} rule {finding.rule} IssuesFound"), "\n".join(lines)

"""SageMaker Debugger and Profiler built-in rules: which ones a training job may carry, and their request.

Rule parameters are those of the SageMaker Python SDK's ``sagemaker.debugger.rule_configs``
(smdebug_rulesconfig 1.0.1): a built-in rule is invoked by name (``rule_to_invoke``), the rule
container applies its documented defaults, and LossNotDecreasing asks the hook to save the ``losses``
collection. The rule evaluator image is resolved per region by the stack. Pure: no AWS imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Built-in Debugger rules that read the tensors smdebug's hook saves, and the collections each needs.
DEBUGGER_RULES: dict[str, dict[str, dict[str, str]]] = {
    "LossNotDecreasing": {"losses": {"save_interval": "500"}},
    "Overfit": {},
    "Overtraining": {},
}
# Built-in Profiler rules that read system metrics (CPU, GPU, memory, I/O), which SageMaker collects for
# any training job with a ProfilerConfig; the framework-metric rules need smdebug in the image.
PROFILER_RULES = (
    "LowGPUUtilization",
    "ProfilerReport",
    "CPUBottleneck",
    "IOBottleneck",
    "GPUMemoryIncrease",
    "BatchSize",
    "LoadBalancing",
    "OverallSystemUsage",
)
# ProfilerConfig.ProfilingIntervalInMilliseconds accepts exactly these.
PROFILING_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)
# SageMaker allows at most 20 rules of each kind on a training job.
MAX_RULES = 20


def _rule(name: str, image: str, output: str) -> dict[str, Any]:
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": image,
        "S3OutputPath": output,
        "RuleParameters": {"rule_to_invoke": name},
    }


def rules_request(
    *,
    job: str,
    bucket: str,
    image: str,
    debugger_rules: Sequence[str],
    debug_prefix: str,
    profiler_enabled: bool,
    profiler_rules: Sequence[str],
    profiler_prefix: str,
    profiling_interval_ms: int,
) -> dict[str, Any]:
    """The CreateTrainingJob fields for Debugger and Profiler, outputs under the two prefixes.

    SageMaker writes ``<prefix><job>/debug-output/`` and ``<prefix><job>/profiler-output/`` below the
    configured paths; each rule's own output goes to ``<prefix><job>/rule-output/``. Without profiling
    the request says so (SageMaker's default would otherwise decide).
    """
    fields: dict[str, Any] = {}
    if debugger_rules:
        base = f"s3://{bucket}/{debug_prefix}"
        collections: dict[str, dict[str, str]] = {}
        for name in debugger_rules:
            collections.update(DEBUGGER_RULES[name])
        hook: dict[str, Any] = {"S3OutputPath": base}
        if collections:
            hook["CollectionConfigurations"] = [
                {"CollectionName": name, "CollectionParameters": dict(parameters)}
                for name, parameters in sorted(collections.items())
            ]
        fields["DebugHookConfig"] = hook
        fields["DebugRuleConfigurations"] = [
            _rule(name, image, f"{base}{job}/rule-output") for name in debugger_rules
        ]
    if not profiler_enabled:
        fields["ProfilerConfig"] = {"DisableProfiler": True}
        return fields
    base = f"s3://{bucket}/{profiler_prefix}"
    fields["ProfilerConfig"] = {
        "S3OutputPath": base,
        "ProfilingIntervalInMilliseconds": profiling_interval_ms,
    }
    if profiler_rules:
        fields["ProfilerRuleConfigurations"] = [
            _rule(name, image, f"{base}{job}/rule-output") for name in profiler_rules
        ]
    return fields


def unknown_rules(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """The names in ``names`` that are not built-in rules of that kind."""
    return [name for name in names if name not in known]

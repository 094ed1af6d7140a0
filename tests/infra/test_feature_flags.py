"""cdk.json carries the feature flags the pinned aws-cdk-lib recommends, each at its recommended value.

The recommendations are read from the installed library itself: ``recommended-feature-flags.json`` in the
aws-cdk-lib assembly that the Python package bundles (the list ``cdk init`` writes into a new project's
cdk.json). After an aws-cdk-lib upgrade, a flag the new version recommends and cdk.json lacks fails here:
add it to cdk.json, refresh the snapshots and review what it changes (or keep it off below, with the
reason).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.app_builder import AcousticShieldApp

from .conftest import ROOT

# Flags cdk.json sets to the project's value instead of the recommended one: flag -> (value, reason).
KEPT_AT_PROJECT_VALUE: dict[str, tuple[Any, str]] = {
    "@aws-cdk/core:defaultCrossStackReferences": (
        "strong",
        "A deliberate choice: with strong references CloudFormation refuses to delete the Data stack (the "
        "KMS key and the data bucket) or change a value while the Training and Serving stacks still use "
        "it; the recommended 'weak' reads outputs with Fn::GetStackOutput and lets the producer go. Today "
        "every cross-stack reference is a named export, so the templates are the same either way.",
    ),
    "@aws-cdk/core:enableAdditionalMetadataCollection": (
        False,
        "The project opts out of usage reporting (make runs the CLI with --no-version-reporting, the "
        "deploy build sets CDK_DISABLE_CLI_TELEMETRY); this flag widens what the CDK's usage metadata "
        "collects (L2 property keys, boolean and enum values, method calls). No template changes.",
    ),
}


@cache
def recommended_flags() -> dict[str, Any]:
    """The pinned aws-cdk-lib's recommended flags, from the assembly bundled with the Python package."""
    version = importlib.metadata.version("aws-cdk-lib")
    assembly = importlib.resources.files("aws_cdk._jsii") / f"aws-cdk-lib@{version}.jsii.tgz"
    with assembly.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        member = tar.extractfile("package/recommended-feature-flags.json")
        assert member is not None
        flags: dict[str, Any] = json.load(member)
    return flags


def project_flags() -> dict[str, Any]:
    """cdk.json's feature flags: the context keys that name a flag, not the project's own settings."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return {key: value for key, value in context.items() if key.startswith("@aws-cdk")}


def test_the_recommendations_are_read_from_the_pinned_library() -> None:
    # Given the recommended flags of the installed aws-cdk-lib
    flags = recommended_flags()
    # Then they are the library's current list, not an empty or stale one
    assert len(flags) > 80
    assert "@aws-cdk/core:defaultCrossStackReferences" in flags


def test_cdk_json_sets_every_recommended_flag_at_its_recommended_value() -> None:
    # Given the pinned library's recommendations and cdk.json's flags
    recommended, configured = recommended_flags(), project_flags()
    # When each recommended flag not deliberately kept at the project's value is looked up in cdk.json
    missing = sorted(set(recommended) - set(configured))
    differing = {
        flag: {"cdk.json": configured[flag], "recommended": value}
        for flag, value in recommended.items()
        if flag in configured and flag not in KEPT_AT_PROJECT_VALUE and configured[flag] != value
    }
    # Then cdk.json has every one, at the recommended value
    assert missing == [], f"cdk.json lacks flags aws-cdk-lib recommends: {missing}"
    assert differing == {}, f"cdk.json sets flags away from their recommended value: {differing}"


@pytest.mark.parametrize("flag", list(KEPT_AT_PROJECT_VALUE))
def test_a_kept_flag_is_at_the_project_value_and_still_differs_from_the_recommendation(flag: str) -> None:
    # Given a flag kept at the project's value, with its reason
    value, reason = KEPT_AT_PROJECT_VALUE[flag]
    assert reason
    # Then cdk.json sets that value, and the library still recommends another (else the entry is stale)
    assert project_flags()[flag] == value
    assert flag in recommended_flags()
    assert recommended_flags()[flag] != value


def test_every_flag_in_cdk_json_is_one_the_pinned_library_knows(tmp_path: Path) -> None:
    # Given the flags the pinned library reads: its feature flag report, written by every synthesis
    assembly = cdk.App(outdir=str(tmp_path)).synth()
    manifest = json.loads(Path(assembly.directory, "manifest.json").read_text())
    (report,) = [a for a in manifest["artifacts"].values() if a["type"] == "cdk:feature-flag-report"]
    known = set(report["properties"]["flags"])
    assert set(recommended_flags()) <= known
    # Then cdk.json sets no flag the library ignores (misspelt, retired, or never one)
    assert sorted(set(project_flags()) - known) == []


def test_each_stack_keeps_the_project_tags_as_its_stack_tags(dev_app: AcousticShieldApp) -> None:
    # Given the dev app's cloud assembly: with @aws-cdk/core:explicitStackTags, Tags.of(stack) tags the
    # template's resources only, so build_app gives each stack its tags itself
    outdir = Path(dev_app.data.node.root.outdir)  # type: ignore[attr-defined]
    artifacts = json.loads((outdir / "manifest.json").read_text())["artifacts"]
    # When the stack tags the CLI hands CloudFormation are read
    tags = {
        stack.stack_name: artifacts[stack.artifact_id]["properties"].get("tags")
        for stack in (dev_app.data, dev_app.training)
    }
    # Then every stack carries the project's and the environment's tags
    expected = {"project": "acoustic-shield", "environment": "dev"}
    assert tags == {name: expected for name in tags}

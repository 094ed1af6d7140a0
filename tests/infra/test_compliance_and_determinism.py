"""Reviewable templates: snapshots, byte-identical synths, the cdk-nag gate, deterministic assets."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import cfnlint.api
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from infra.app_builder import AcousticShieldApp, build_app
from infra.assets import training_source_dir, tree
from infra.bundling import write_tar_gz

from .conftest import ROOT, SERVING_VARIANTS, cdk_context, synth

SNAPSHOTS = Path(__file__).with_name("snapshots")
ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def normalized(template: dict[str, Any]) -> str:
    """The template with asset hashes masked: those change with every code edit, not with infrastructure."""
    return ASSET_HASH.sub("<asset-hash>", json.dumps(template, indent=1, sort_keys=True)) + "\n"


SNAPSHOTTED = {
    "data": (None, "data"),
    "training": (None, "training"),
    "serving": ("realtime", "serving"),
    "serving-serverless": ("serverless", "serving"),
    "serving-async": ("async", "serving"),
}


@pytest.mark.parametrize("stack", list(SNAPSHOTTED))
def test_template_matches_its_reviewed_snapshot(
    dev_app: AcousticShieldApp, serving_app: Callable[[str], AcousticShieldApp], stack: str
) -> None:
    # Given the synthesized stack (a serving variant synthesizes with its model and settings)
    variant, attribute = SNAPSHOTTED[stack]
    built: cdk.Stack = getattr(serving_app(variant) if variant else dev_app, attribute)
    template = json.loads(Path(built.node.root.outdir, built.template_file).read_text())  # type: ignore[attr-defined]
    snapshot = SNAPSHOTS / f"{stack}.json"
    # When it is compared with its snapshot, asset hashes masked
    current = normalized(template)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(current)
    # Then it is exactly what reviewers last approved (refresh with: make snapshots)
    assert snapshot.exists(), f"no snapshot {snapshot.name}; run `make snapshots` and review the diff"
    assert current == snapshot.read_text(), (
        f"{stack} template changed; run `make snapshots` and review the diff"
    )


def test_two_synths_are_byte_identical(tmp_path: Path, dev_app: AcousticShieldApp) -> None:
    # Given the dev app's cloud assembly
    first = Path(dev_app.data.node.root.outdir)  # type: ignore[attr-defined]
    names = sorted(
        p.name for p in first.iterdir() if p.name.endswith(".template.json") or p.name.startswith("asset.")
    )
    # When the same sources and context are synthesized again, independently
    synth(tmp_path)
    # Then the second has the same templates and assets (asset names are content hashes)...
    assert names == sorted(p.name for p in tmp_path.iterdir() if p.name in names)
    # ...and every template and every archived asset is byte-identical
    match, mismatch, errors = filecmp.cmpfiles(
        first, tmp_path, [n for n in names if n.endswith(".json") or n.endswith(".gz")], shallow=False
    )
    assert mismatch == [] and errors == []
    assert len(match) >= 3


def test_the_app_has_no_unacknowledged_nag_findings(dev_app: AcousticShieldApp) -> None:
    # Given the dev app, synthesized with the cdk-nag gate build_app installs (the next test shows that
    # gate refusing a finding: an empty report alone would also come from an app without it)
    outdir = Path(dev_app.data.node.root.outdir)  # type: ignore[attr-defined]
    # When its validation report is read
    report = json.loads((outdir / "validation-report.json").read_text())
    # Then no plugin reports anything: every finding is fixed or acknowledged with its reason
    assert report["pluginReports"] == []


@pytest.mark.parametrize("variant", list(SERVING_VARIANTS))
def test_every_serving_variant_is_nag_clean_and_cfn_lint_clean(
    serving_app: Callable[[str], AcousticShieldApp], variant: str
) -> None:
    # Given the app synthesized with this serving variant
    serving = serving_app(variant).serving
    assert serving is not None
    outdir = Path(serving.node.root.outdir)  # type: ignore[attr-defined]
    # Then cdk-nag reports nothing unacknowledged...
    assert json.loads((outdir / "validation-report.json").read_text())["pluginReports"] == []
    # ...and cfn-lint finds no error in the Serving template
    matches = cfnlint.api.lint_file(outdir / serving.template_file)
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_nag_gate_fails_synthesis_on_a_new_finding(tmp_path: Path) -> None:
    # Given the app as build_app builds it, plus one non-compliant bucket (no SSL enforcement, no access
    # logs) in its Data stack
    app = cdk.App(context=cdk_context(), outdir=str(tmp_path))
    built = build_app(app)
    s3.Bucket(built.data, "Open")
    # When it is synthesized / Then the gate refuses it and names the rules
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    assert "AwsSolutions-S1'" in str(failure.value) and "AwsSolutions-S10'" in str(failure.value)


def test_sourcedir_is_a_deterministic_tar_gz_of_its_bundle(tmp_path: Path) -> None:
    # Given a copy of the training folder (the repository is never written) with a stray bytecode cache
    shutil.copytree(ROOT / "training", tmp_path / "training", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "training" / "__pycache__").mkdir()
    (tmp_path / "training" / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"\0")
    bundle = training_source_dir()
    bundle.update({name: path for name, path in tree("training", root=tmp_path).items() if name in bundle})
    assert bundle["training/augment.py"] == tmp_path / "training" / "augment.py"
    assert not any("__pycache__" in name for name in tree("training", root=tmp_path))
    # When it is packed twice, a file's modification time changing in between
    write_tar_gz(bundle, tmp_path / "a.tar.gz")
    os.utime(tmp_path / "training" / "augment.py", (1, 1))
    write_tar_gz(bundle, tmp_path / "b.tar.gz")
    # Then the bytes are identical, and the archive holds the entry point and requirements at its root and
    # the packages at their paths, without caches
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert {"train.py", "requirements.txt", "training/train.py", "common/contract.py"} <= set(names)
    assert names == sorted(names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


# --- tags ---------------------------------------------------------------------------------------------

# The schemas of this region decide which types take tags: cfn-lint's default region, where every type
# this app uses exists.
SCHEMA_REGION = "us-east-1"
# Every stack of each environment and serving variant the suite synthesizes: (environment, -c overrides,
# stack).
TAGGED_STACKS: dict[str, tuple[str, dict[str, str], str]] = {
    "dev-data": ("dev", {}, "data"),
    "dev-training": ("dev", {}, "training"),
    "prod-data": ("prod", {"env": "prod"}, "data"),
    "prod-training": ("prod", {"env": "prod"}, "training"),
    **{
        f"{variant}-serving": ("dev", overrides, "serving") for variant, overrides in SERVING_VARIANTS.items()
    },
}


def tag_property(resource_type: str) -> str | None:
    """The property CloudFormation takes ``resource_type``'s tags in, or None where the type takes none.

    From the type's CloudFormation registry schema, as cfn-lint ships it: its ``tagging`` section says
    whether the type is taggable and in which property; a schema without that section (the type's
    taggability never declared, e.g. AWS::CodeBuild::Project) takes them in ``Tags`` where it has one.
    """
    schema: dict[str, Any] = PROVIDER_SCHEMA_MANAGER.get_resource_schema(SCHEMA_REGION, resource_type).schema
    tagging = schema.get("tagging", {})
    if not tagging.get("taggable", True):
        return None
    name = tagging.get("tagProperty", "/properties/Tags").removeprefix("/properties/")
    return name if name in schema["properties"] else None


def tags_of(value: Any) -> dict[str, Any]:
    """Tags as a dict, whether the type takes them as a list of Key and Value or as a map."""
    return {tag["Key"]: tag["Value"] for tag in value} if isinstance(value, list) else dict(value)


@pytest.mark.parametrize(
    ("resource_type", "expected"),
    [
        ("AWS::Lambda::Function", "Tags"),  # taggable, declared in its schema's tagging section
        ("AWS::CodeBuild::Project", "Tags"),  # a schema without a tagging section, with Tags
        ("AWS::SSM::Parameter", "Tags"),  # tags as a map
        ("AWS::IAM::Policy", None),  # no tagging section, no Tags
        ("AWS::Lambda::Permission", None),  # declared not taggable
        ("AWS::S3::BucketPolicy", None),
    ],
)
def test_the_schema_says_which_types_take_tags(resource_type: str, expected: str | None) -> None:
    # Given a CloudFormation type / When its schema is read / Then it says where its tags go, if anywhere
    assert tag_property(resource_type) == expected


@pytest.mark.parametrize("stack", list(TAGGED_STACKS))
def test_every_taggable_resource_is_tagged(synth_app: Callable[..., AcousticShieldApp], stack: str) -> None:
    # Given the synthesized stack
    env, overrides, attribute = TAGGED_STACKS[stack]
    built: cdk.Stack = getattr(synth_app(**overrides), attribute)
    resources = Template.from_stack(built).to_json()["Resources"]
    # When the tags of each resource whose type CloudFormation can tag are read
    tags = {
        f"{logical_id} ({resource['Type']})": tags_of(resource.get("Properties", {}).get(name, []))
        for logical_id, resource in resources.items()
        if (name := tag_property(resource["Type"])) is not None
    }
    # Then every one carries the project's and the environment's tags (build_app adds them to each stack;
    # a type that CDK does not tag shows up here)
    expected = {"project": "acoustic-shield", "environment": env}
    assert tags, "no taggable resource found"
    untagged = {
        resource: found
        for resource, found in tags.items()
        if any(found.get(key) != value for key, value in expected.items())
    }
    assert untagged == {}

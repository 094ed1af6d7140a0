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
from cdk_nag import AwsSolutionsChecks

from stacks.app_builder import AcousticShieldApp
from stacks.bundling import write_tar_gz

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
    current = normalized(template)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(current)
    # Then it is exactly what reviewers last approved (refresh with: make snapshots)
    assert snapshot.exists(), f"no snapshot {snapshot.name}; run `make snapshots` and review the diff"
    assert current == snapshot.read_text(), (
        f"{stack} template changed; run `make snapshots` and review the diff"
    )


def test_two_synths_are_byte_identical(tmp_path: Path, dev_app: AcousticShieldApp) -> None:
    # Given a second, independent synthesis of the same sources and context
    synth(tmp_path)
    first = Path(dev_app.data.node.root.outdir)  # type: ignore[attr-defined]
    # Then every template and every asset is byte-identical
    names = sorted(
        p.name for p in first.iterdir() if p.name.endswith(".template.json") or p.name.startswith("asset.")
    )
    assert names == sorted(p.name for p in tmp_path.iterdir() if p.name in names)
    match, mismatch, errors = filecmp.cmpfiles(
        first, tmp_path, [n for n in names if n.endswith(".json") or n.endswith(".gz")], shallow=False
    )
    assert mismatch == [] and errors == []
    assert len(match) >= 3


def test_the_app_has_no_unacknowledged_nag_findings(dev_app: AcousticShieldApp) -> None:
    report = json.loads(Path(dev_app.data.node.root.outdir, "validation-report.json").read_text())  # type: ignore[attr-defined]
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
    # Given an app with one non-compliant bucket (no SSL enforcement, no access logs)
    app = cdk.App(context=cdk_context(), outdir=str(tmp_path))
    stack = cdk.Stack(app, "Careless")
    s3.Bucket(stack, "Open")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    # When it is synthesized / Then the gate refuses it and names the rules
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    assert "AwsSolutions-S1'" in str(failure.value) and "AwsSolutions-S10'" in str(failure.value)


def test_sourcedir_is_a_deterministic_tar_gz_of_ml_code(tmp_path: Path) -> None:
    # Given a copy of ml_code (the repository is never written) with a stray bytecode cache
    source = tmp_path / "ml_code"
    shutil.copytree(ROOT / "ml_code", source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"\0")
    # When it is packed twice, a file's modification time changing in between
    write_tar_gz(source, tmp_path / "a.tar.gz")
    os.utime(source / "audio.py", (1, 1))
    write_tar_gz(source, tmp_path / "b.tar.gz")
    # Then the bytes are identical, and the archive holds the sources at its root, without caches
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert "audio.py" in names and "contract.py" in names and "requirements.txt" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)

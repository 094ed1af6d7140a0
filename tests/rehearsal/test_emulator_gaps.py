"""The emulator gaps the rehearsal works around: present on plain moto, closed by the workaround.

When a test of the first kind fails, moto no longer has that gap: delete its workaround from
``tools/rehearse/emulator.py`` (or the ``--method=direct`` flag from ``tools/rehearse/loop.py``), this test and the
README's note.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def moto(gap: str, *, workaround: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-W", "ignore", "-m", "tests.rehearsal.moto_gaps", gap]
    run = subprocess.run(
        [*command, "--workaround"] if workaround else command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


GAPS = {
    # gap: (what plain moto does, what it does with the workaround)
    "kms_tags": (
        lambda r: "KeyError: 'TagKey'" in r.get("error", ""),
        lambda r: (
            r.get("status") == "CREATE_COMPLETE" and r["outputs"][0]["OutputValue"].startswith("arn:aws:kms:")
        ),
    ),
    "codebuild_project": (
        lambda r: "error" in r,
        lambda r: r.get("status") == "CREATE_COMPLETE" and ":project/" in r["outputs"][0]["OutputValue"],
    ),
    "model_package_group": (
        lambda r: r["groups"] == [],
        lambda r: r["groups"] == ["gap"],
    ),
    "sagemaker_model_containers": (
        lambda r: "KeyError: 'PrimaryContainer'" in r.get("error", ""),
        lambda r: r.get("status") == "CREATE_COMPLETE" and r["outputs"][0]["OutputValue"] != "",
    ),
    "training_job_lifecycle": (
        lambda r: r == {"status": "Completed", "metric_definitions": ["test:dcg"]},
        lambda r: r == {"status": "InProgress", "metric_definitions": ["test_f1"]},
    ),
    "model_package_card": (
        lambda r: r == {"card": None},
        lambda r: (
            r["card"]["ModelCardStatus"] == "Draft" and "model_overview" in r["card"]["ModelCardContent"]
        ),
    ),
    "change_set_outputs": (
        lambda r: r == {"status": "CREATE_COMPLETE", "outputs": []},
        lambda r: [o["OutputKey"] for o in r["outputs"]] == ["TopicArn"],
    ),
}


@pytest.mark.parametrize("gap", sorted(GAPS))
def test_plain_moto_still_has_the_gap(gap: str) -> None:
    # Given plain moto / When the resource or API the loop needs is used
    result = moto(gap)
    # Then moto falls short as the workaround assumes (if not: remove the workaround)
    assert GAPS[gap][0](result), f"moto no longer has the {gap!r} gap: {result}"


@pytest.mark.parametrize("gap", sorted(GAPS))
def test_the_rehearsals_workaround_closes_the_gap(gap: str) -> None:
    # Given moto with the rehearsal's workaround / When the same is used
    result = moto(gap, workaround=True)
    # Then it behaves as AWS does, as far as the loop needs
    assert GAPS[gap][1](result), result

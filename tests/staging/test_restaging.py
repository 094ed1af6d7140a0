"""Staging again with other splits: the folder equals the new manifest, and no clip is in two splits."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from typing import Any

import pytest

from staging import cli as stage
from tests.staging.archives import esc50_rows, esc50_zip, wav
from tests.staging.conftest import BUCKET, files_under

ARCHIVE = "ESC-50-master.zip"
SPLITS = ("train", "validation", "test")


def _s3_files(client: Any, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix) :]] = body
    return found


def _manifest_paths(files: dict[str, bytes]) -> set[str]:
    return {json.loads(line)["path"] for line in files["manifest.jsonl"].decode().splitlines()}


def _assert_one_split_per_clip_and_files_equal_manifest(files: dict[str, bytes]) -> None:
    """Hashes every file under the split folders: none in two splits, and exactly the manifest's entries."""
    manifest = {
        e["path"]: e["sha256"] for e in map(json.loads, files["manifest.jsonl"].decode().splitlines())
    }
    staged = {
        path: hashlib.sha256(data).hexdigest()
        for path, data in files.items()
        if path.split("/", 1)[0] in SPLITS
    }
    assert staged == manifest
    splits_of: dict[str, set[str]] = defaultdict(set)
    for path, digest in staged.items():
        splits_of[digest].add(path.split("/", 1)[0])
    assert {digest: splits for digest, splits in splits_of.items() if len(splits) > 1} == {}


def test_restaging_locally_with_another_test_fold_leaves_no_clip_in_two_splits(
    http_files, run_stage, tmp_path
):
    # Given ESC-50 staged locally with fold 5 as test
    http_files.files[ARCHIVE] = esc50_zip()
    url, out = http_files.url(ARCHIVE), tmp_path / "esc50"
    first = run_stage("esc50", "--source-url", url, "--to", str(out), "--fold", "5")
    before = _manifest_paths(files_under(out))

    # When it is staged again with fold 4 as test
    again = run_stage("esc50", "--source-url", url, "--to", str(out), "--fold", "4")

    # Then every clip is in one split only, the folder holds exactly the manifest's files, and the
    # summary counts what was removed
    assert first.code == 0 and again.code == 0, again.err
    files = files_under(out)
    _assert_one_split_per_clip_and_files_equal_manifest(files)
    removed = before - _manifest_paths(files)
    assert len(removed) >= 12
    assert f"{len(removed)} removed" in again.out
    # and emptied folders are gone too
    assert all(any(d.iterdir()) for d in out.rglob("*") if d.is_dir())


def test_restaging_into_s3_with_another_test_fold_leaves_no_clip_in_two_splits(http_files, run_stage, s3):
    # Given ESC-50 staged into the bucket with fold 5 as test
    http_files.files[ARCHIVE] = esc50_zip()
    url, dest = http_files.url(ARCHIVE), f"s3://{BUCKET}/datasets/esc50/"
    first = run_stage("esc50", "--source-url", url, "--to", dest, "--fold", "5")
    before = _manifest_paths(_s3_files(s3, "datasets/esc50/"))

    # When it is staged again with fold 4 as test
    again = run_stage("esc50", "--source-url", url, "--to", dest, "--fold", "4")

    # Then every clip is in one split only and the prefix holds exactly the manifest's objects
    assert first.code == 0 and again.code == 0, again.err
    files = _s3_files(s3, "datasets/esc50/")
    _assert_one_split_per_clip_and_files_equal_manifest(files)
    assert f"{len(before - _manifest_paths(files))} removed" in again.out


def test_restaging_with_another_validation_fraction_moves_clips_without_copies(run_stage, tmp_path):
    # Given a label tree staged with a tenth for validation
    source = tmp_path / "clips"
    for label_index, label in enumerate(("alarm", "siren")):
        (source / label).mkdir(parents=True)
        for i in range(10):
            (source / label / f"{i}.wav").write_bytes(wav(50 * label_index + i))
    out = tmp_path / "out"
    run_stage("folder", "--source-url", str(source), "--to", str(out))
    first = _manifest_paths(files_under(out))

    # When it is staged again with half for validation, then with a changed source (a clip gone)
    wider = run_stage("folder", "--source-url", str(source), "--to", str(out), "--validation-fraction", "0.5")
    wider_files = files_under(out)
    (source / "alarm" / "3.wav").unlink()
    fewer = run_stage("folder", "--source-url", str(source), "--to", str(out), "--validation-fraction", "0.5")

    # Then after each run the folder equals its manifest, no clip is in two splits, and the summary
    # counts what moved or left as removed
    assert wider.code == 0 and fewer.code == 0, fewer.err
    _assert_one_split_per_clip_and_files_equal_manifest(wider_files)
    _assert_one_split_per_clip_and_files_equal_manifest(files_under(out))
    moved = first - _manifest_paths(wider_files)
    left = _manifest_paths(wider_files) - _manifest_paths(files_under(out))
    assert len(moved) == 8 and any(path.endswith("/alarm/3.wav") for path in left)
    assert f"{len(moved)} removed" in wider.out and f"{len(left)} removed" in fewer.out


def test_a_dry_run_says_what_it_would_remove_and_removes_nothing(http_files, run_stage, tmp_path):
    # Given ESC-50 staged locally with fold 5 as test
    http_files.files[ARCHIVE] = esc50_zip()
    url, out = http_files.url(ARCHIVE), tmp_path / "esc50"
    run_stage("esc50", "--source-url", url, "--to", str(out))
    before = files_under(out)

    # When a dry run with fold 4 as test follows
    result = run_stage("esc50", "--source-url", url, "--to", str(out), "--fold", "4", "--dry-run")

    # Then nothing changed on disk, and the summary counts what a real run would remove
    assert result.code == 0, result.err
    assert files_under(out) == before
    would = re.search(r"dry run: would write \d+ file\(s\) and the manifest and remove (\d+) ", result.out)
    assert would and int(would.group(1)) >= 12


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-duplicates"])
def test_identical_clips_under_two_names_never_land_in_two_splits(http_files, run_stage, tmp_path, keep):
    # Given an archive where a fold-5 (test) clip and a fold-1 clip have the same bytes
    rows = esc50_rows()
    test_clip = next(str(r[0]) for r in rows if r[1] == 5 and r[3] == "dog")
    twins = [str(r[0]) for r in rows if r[1] == 1]
    same = wav(4242)
    http_files.files[ARCHIVE] = esc50_zip(audio={test_clip: same, **dict.fromkeys(twins, same)})
    out = tmp_path / "out"

    # When it is staged, with or without --keep-duplicates
    extra = ["--keep-duplicates"] if keep else []
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out), *extra)

    # Then that content is in test only, and the copies left out are counted as duplicates
    assert result.code == 0, result.err
    files = files_under(out)
    _assert_one_split_per_clip_and_files_equal_manifest(files)
    digest = hashlib.sha256(same).hexdigest()
    splits = {p.split("/")[0] for p, data in files.items() if hashlib.sha256(data).hexdigest() == digest}
    assert splits == {"test"}
    assert f"duplicates by content: {len(twins)}" in result.out


class _Recording:
    """Wraps a destination and records every write and removal, in order."""

    def __init__(self, inner: Any, calls: list[tuple[str, str]]) -> None:
        self.inner, self.calls, self.url = inner, calls, inner.url

    def list(self) -> dict[str, int]:
        return dict(self.inner.list())

    def read_text(self, path: str) -> str | None:
        return self.inner.read_text(path)

    def write(self, path: str, data: bytes) -> None:
        self.inner.write(path, data)
        self.calls.append(("write", path))

    def delete(self, paths: Any) -> None:
        paths = list(paths)
        self.inner.delete(paths)
        self.calls += [("delete", path) for path in paths]


def test_the_manifest_is_written_last_after_uploads_and_removals(http_files, run_stage, s3, monkeypatch):
    # Given ESC-50 staged into the bucket, and a destination that records what happens to it
    http_files.files[ARCHIVE] = esc50_zip()
    url, dest = http_files.url(ARCHIVE), f"s3://{BUCKET}/datasets/esc50/"
    run_stage("esc50", "--source-url", url, "--to", dest)
    calls: list[tuple[str, str]] = []
    real = stage.destination_for
    monkeypatch.setattr(stage, "destination_for", lambda *a, **k: _Recording(real(*a, **k), calls))

    # When it is staged again with fold 4 as test
    result = run_stage("esc50", "--source-url", url, "--to", dest, "--fold", "4")

    # Then files were removed and written, and the manifest came after all of them
    assert result.code == 0, result.err
    assert {kind for kind, _ in calls} == {"write", "delete"}
    assert calls[-1] == ("write", "manifest.jsonl")
    assert ("write", "manifest.jsonl") not in calls[:-1]


def test_a_file_dropped_into_a_split_folder_by_hand_is_removed(http_files, run_stage, tmp_path):
    # Given a staged folder with a stray clip (and a leftover temporary file) added under train/
    http_files.files[ARCHIVE] = esc50_zip()
    url, out = http_files.url(ARCHIVE), tmp_path / "esc50"
    run_stage("esc50", "--source-url", url, "--to", str(out))
    (out / "train" / "dog" / "stray.wav").write_bytes(wav(77))
    (out / "train" / "dog" / ".tmp-crashed").write_bytes(b"half")
    (out / "README.md").write_text("ours")

    # When staging runs again
    result = run_stage("esc50", "--source-url", url, "--to", str(out))

    # Then the split folders equal the manifest again; files outside them are left alone
    assert result.code == 0, result.err
    files = files_under(out)
    _assert_one_split_per_clip_and_files_equal_manifest(files)
    assert "train/dog/stray.wav" not in files and "README.md" in files
    assert "2 removed" in result.out

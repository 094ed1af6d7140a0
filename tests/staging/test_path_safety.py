"""Hostile names: nothing a source says may put a file outside the destination or off the layout."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from staging import StagingError
from staging.stores import LocalDestination, S3Destination
from tests.staging.archives import esc50_rows, esc50_zip, wav
from tests.staging.conftest import BUCKET, files_under

ARCHIVE = "ESC-50-master.zip"
LAYOUT = re.compile(r"(train|validation|test)/[^/\\]+/[^/\\]+")  # split/label/clip, nothing deeper


def _with_row(filename: str) -> bytes:
    """The tiny ESC-50 archive plus one fold-1 dog row, and a member, under ``filename``."""
    return esc50_zip(rows=[*esc50_rows(), [filename, 1, 0, "dog", True, "evil", "A"]])


def _evil_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if "evil" in p.name]


def _assert_layout(out: Path) -> dict[str, bytes]:
    staged = files_under(out)
    manifest = [json.loads(line) for line in staged.pop("manifest.jsonl").decode().splitlines()]
    assert [p for p in staged if not LAYOUT.fullmatch(p)] == []
    assert {e["path"] for e in manifest} == set(staged)
    return staged


def test_an_esc50_row_that_climbs_out_of_the_target_is_refused(http_files, run_stage, tmp_path):
    # Given an archive whose metadata lists ../../../../evil.wav, with a member of that name
    http_files.files[ARCHIVE] = _with_row("../../../../evil.wav")
    out = tmp_path / "a" / "b" / "out"
    report = tmp_path / "report.json"

    # When it is staged into a local directory
    result = run_stage(
        "esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out), "--report", str(report)
    )

    # Then nothing is written outside the target, the 30 good clips are staged, and the row is refused
    assert result.code == 0, result.err
    assert _evil_files(tmp_path) == []
    assert len(_assert_layout(out)) == 30
    assert "refused (unsafe name or link): 1" in result.out
    assert "ESC-50-master/audio/../../../../evil.wav: filename '../../../../evil.wav'" in result.out
    refused = json.loads(report.read_text())["refused"]
    assert [r["source"] for r in refused] == ["ESC-50-master/audio/../../../../evil.wav"]


def test_an_esc50_row_that_climbs_out_makes_no_dot_dot_key_in_s3(http_files, run_stage, s3):
    # Given an archive whose metadata lists ../../../../evil.wav, with a member of that name
    http_files.files[ARCHIVE] = _with_row("../../../../evil.wav")

    # When it is staged into the bucket
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", f"s3://{BUCKET}/d/esc50/")

    # Then no key has a '..' segment or leaves the prefix, and the row is refused
    assert result.code == 0, result.err
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert [k for k in keys if ".." in k.split("/") or "evil" in k] == []
    assert all(k.startswith("d/esc50/") for k in keys) and len(keys) == 31
    assert "refused (unsafe name or link): 1" in result.out


@pytest.mark.parametrize(
    "filename",
    ["/abs/evil.wav", "..\\..\\evil.wav", "C:\\evil.wav", "C:/evil.wav", "sub/evil.wav", "..", ".evil.wav"],
    ids=["absolute", "backslashes", "drive-backslash", "drive-slash", "subfolder", "dot-dot", "hidden"],
)
def test_an_archive_member_whose_name_is_not_a_plain_file_name_is_refused(
    http_files, run_stage, tmp_path, filename
):
    # Given an archive with a row and a member whose file name is a path, a drive, '..' or hidden
    http_files.files[ARCHIVE] = _with_row(filename)
    out = tmp_path / "out"

    # When it is staged
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out))

    # Then every staged file is split/label/clip (no extra folder, no backslash, no hidden file), the
    # good clips are all there, and the row is refused
    assert result.code == 0, result.err
    assert _evil_files(tmp_path) == []
    assert len(_assert_layout(out)) == 30
    assert "refused (unsafe name or link): 1" in result.out


def test_a_csv_row_whose_name_is_not_a_plain_file_name_is_refused(run_stage, tmp_path):
    # Given a CSV listing two good clips and one whose file name holds backslashes ('..\..\evil.wav',
    # a real file on Linux that Windows tools would unpack two folders up)
    source = tmp_path / "raw"
    source.mkdir()
    for i, name in enumerate(("a.wav", "b.wav", "..\\..\\evil.wav")):
        (source / name).write_bytes(wav(i))
    table = source / "labels.csv"
    table.write_text("path,label\na.wav,dog\nb.wav,dog\n..\\..\\evil.wav,dog\n")
    out = tmp_path / "out"

    # When the CSV is staged
    result = run_stage("folder", "--source-url", str(table), "--to", str(out))

    # Then only the good clips are staged, and the row is refused
    assert result.code == 0, result.err
    assert sorted(Path(p).name for p in _assert_layout(out)) == ["a.wav", "b.wav"]
    assert "refused (unsafe name or link): 1" in result.out


def test_a_csv_in_s3_pointing_at_a_dot_dot_key_makes_no_dot_dot_key(run_stage, s3):
    # Given a CSV in S3 whose rows are S3 URIs, one of them an object whose key ends in '/..'
    for i, key in enumerate(("raw/a.wav", "raw/b.wav", "raw/evil/..")):
        s3.put_object(Bucket=BUCKET, Key=key, Body=wav(i))
    rows = "".join(f"s3://{BUCKET}/{key},dog\n" for key in ("raw/a.wav", "raw/b.wav", "raw/evil/.."))
    s3.put_object(Bucket=BUCKET, Key="raw/labels.csv", Body=f"path,label\n{rows}".encode())

    # When it is staged into the bucket
    result = run_stage(
        "folder", "--source-url", f"s3://{BUCKET}/raw/labels.csv", "--to", f"s3://{BUCKET}/d/mine/"
    )

    # Then no staged key has a '..' segment, and the row is refused
    assert result.code == 0, result.err
    staged = [i["Key"] for i in s3.list_objects_v2(Bucket=BUCKET, Prefix="d/")["Contents"]]
    assert [k for k in staged if ".." in k.split("/")] == []
    assert len(staged) == 3
    assert "refused (unsafe name or link): 1" in result.out


def test_a_symlink_leaving_the_folder_tree_is_refused_and_its_target_never_read(run_stage, tmp_path):
    # Given a label tree with a clip link and a folder link pointing outside it, at a secret recording
    secret = tmp_path / "private" / "secret.wav"
    secret.parent.mkdir()
    secret.write_bytes(wav(666))
    source = tmp_path / "clips"
    for label, seed in (("dog", 0), ("cat", 10)):
        for i in range(2):
            (source / label).mkdir(parents=True, exist_ok=True)
            (source / label / f"{i}.wav").write_bytes(wav(seed + i))
    os.symlink(secret, source / "dog" / "leak.wav")
    os.symlink(secret.parent, source / "bird")
    out = tmp_path / "out"

    # When the tree is staged
    result = run_stage("folder", "--source-url", str(source), "--to", str(out))

    # Then the secret's bytes are nowhere in the staged dataset, and both links are refused and listed
    assert result.code == 0, result.err
    hashes = {hashlib.sha256(data).hexdigest() for data in _assert_layout(out).values()}
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in hashes
    assert len(hashes) == 4
    assert "refused (unsafe name or link): 2" in result.out
    assert "dog/leak.wav: a symbolic link to outside the source folder" in result.out
    assert "bird: a symbolic link to a folder; not followed" in result.out


def test_a_symlink_to_a_clip_inside_the_tree_is_staged_once_like_any_copy(run_stage, tmp_path):
    # Given a label tree where cat/alias.wav links to dog/0.wav, inside the same tree
    source = tmp_path / "clips"
    for label, seed in (("dog", 0), ("cat", 10)):
        for i in range(2):
            (source / label).mkdir(parents=True, exist_ok=True)
            (source / label / f"{i}.wav").write_bytes(wav(seed + i))
    os.symlink(Path("..") / "dog" / "0.wav", source / "cat" / "alias.wav")
    out = tmp_path / "out"

    # When the tree is staged
    result = run_stage("folder", "--source-url", str(source), "--to", str(out))

    # Then the link is read like the file it points to: its content is staged once, as a duplicate
    assert result.code == 0, result.err
    staged = _assert_layout(out)
    assert len(staged) == 4 and not any(p.is_symlink() for p in out.rglob("*"))
    assert "refused (unsafe name or link)" not in result.out
    assert "duplicates by content: 1" in result.out


@pytest.mark.parametrize(
    "path",
    [
        "../evil.wav",
        "train/dog/../../../evil.wav",
        "/tmp/evil.wav",
        "train/dog/..",
        "train//evil.wav",
        "train/dog/a\\..\\..\\evil.wav",
        "train/C:/evil.wav",
    ],
)
def test_a_local_destination_refuses_a_path_that_is_not_plainly_inside_it(tmp_path, path):
    # Given a local destination
    destination = LocalDestination(tmp_path / "out")

    # When a path that is not a plain relative path is written
    with pytest.raises(StagingError) as raised:
        destination.write(path, b"evil")

    # Then nothing is written anywhere, and the error names the path
    assert repr(path) in str(raised.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_local_destination_refuses_to_write_through_a_link_leading_out_of_it(tmp_path):
    # Given a destination whose train/ folder is a link to a folder elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "train")

    # When a clip is written under train/
    with pytest.raises(StagingError) as raised:
        LocalDestination(out).write("train/dog/a.wav", b"clip")

    # Then nothing lands in the linked folder
    assert "outside" in str(raised.value)
    assert list(elsewhere.rglob("*")) == []


@pytest.mark.parametrize("path", ["train/../../evil.wav", "train//evil.wav", "./evil.wav", "a\\b.wav"])
def test_an_s3_destination_refuses_a_key_that_is_not_a_plain_relative_path(s3, path):
    # Given an S3 destination
    destination = S3Destination(s3, f"s3://{BUCKET}/d/")

    # When a path with '..', '.', an empty segment or a backslash is written
    with pytest.raises(StagingError):
        destination.write(path, b"evil")

    # Then no object was put
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)

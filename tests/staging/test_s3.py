"""Staging into S3 (moto): idempotent reruns, changed clips, removed clips, encryption."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from staging.stores import S3Destination
from tests.staging.archives import esc50_zip, wav
from tests.staging.conftest import BUCKET, versions

ARCHIVE = "ESC-50-master.zip"
DEST = f"s3://{BUCKET}/datasets/esc50/"


def _label_tree(root: Path, per_label: int = 4) -> Path:
    for label_index, label in enumerate(("siren", "horn")):
        for i in range(per_label):
            path = root / label / f"clip{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wav(100 * label_index + i))
    return root


def test_staging_into_s3_then_rerunning_uploads_nothing(http_files, run_stage, s3):
    # Given ESC-50 staged into the bucket
    http_files.files[ARCHIVE] = esc50_zip()
    first = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", DEST)
    assert first.code == 0, first.err
    written = versions(s3, "datasets/esc50/")

    # When the same staging runs again
    again = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", DEST)

    # Then the layout is there, and the rerun wrote no object version and says so
    assert len(written) == 31 and set(written.values()) == {1}
    assert {key.split("/")[2] for key in written} == {"train", "validation", "test", "manifest.jsonl"}
    assert again.code == 0, again.err
    assert versions(s3, "datasets/esc50/") == written
    assert f"nothing changed: 30 clips already staged at {DEST}" in again.out


def test_a_changed_clip_is_the_only_file_uploaded_again(run_stage, s3, tmp_path):
    # Given a folder staged into S3
    source = _label_tree(tmp_path / "clips")
    dest = f"s3://{BUCKET}/datasets/mine/"
    run_stage("folder", "--source-url", str(source), "--to", dest)
    before = versions(s3, "datasets/mine/")

    # When one clip's audio changes and staging runs again
    (source / "horn" / "clip2.wav").write_bytes(wav(999))
    result = run_stage("folder", "--source-url", str(source), "--to", dest)

    # Then exactly that clip and the manifest get a new version
    assert result.code == 0, result.err
    after = versions(s3, "datasets/mine/")
    bumped = {key for key in after if after[key] != before.get(key)}
    assert len(bumped) == 2 and "datasets/mine/manifest.jsonl" in bumped
    assert any(key.endswith("/horn/clip2.wav") for key in bumped)
    assert "wrote 1 file(s) and the manifest, 7 unchanged" in result.out


def test_clips_that_left_the_source_are_removed_from_s3(run_stage, s3, tmp_path):
    # Given a folder staged into S3, from which one training clip is then removed
    source = _label_tree(tmp_path / "clips")
    dest = f"s3://{BUCKET}/datasets/mine/"
    run_stage("folder", "--source-url", str(source), "--to", dest)
    manifest = s3.get_object(Bucket=BUCKET, Key="datasets/mine/manifest.jsonl")["Body"].read().decode()
    entry = next(e for e in map(json.loads, manifest.splitlines()) if e["path"].startswith("train/siren/"))
    gone = entry["path"]
    (source / entry["source"]).unlink()

    # When staging runs again
    result = run_stage("folder", "--source-url", str(source), "--to", dest)

    # Then its object is removed, and the summary says so
    assert result.code == 0, result.err
    assert f"datasets/mine/{gone}" not in _keys(s3)
    assert "0 file(s) and the manifest, 7 unchanged, 1 removed" in result.out
    # and the --delete of scripts from before removal was the default is still accepted
    again = run_stage("folder", "--source-url", str(source), "--to", dest, "--delete")
    assert again.code == 0 and "nothing changed" in again.out


def _keys(client) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_objects_use_the_bucket_default_key_unless_a_kms_key_is_given(run_stage, s3, tmp_path):
    # Given a bucket encrypted by default with one key, and another key
    source = _label_tree(tmp_path / "clips", per_label=2)
    other_key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]

    # When a folder is staged once plainly and once with --kms-key-id
    run_stage("folder", "--source-url", str(source), "--to", f"s3://{BUCKET}/plain/")
    run_stage(
        "folder", "--source-url", str(source), "--to", f"s3://{BUCKET}/pinned/", "--kms-key-id", other_key
    )

    # Then the plain objects carry the bucket's key and the others the given key
    for prefix, key in (("plain/", s3.bucket_default_key), ("pinned/", other_key)):
        for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]:
            head = s3.head_object(Bucket=BUCKET, Key=item["Key"])
            assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key), item["Key"]


def test_a_folder_in_s3_is_staged_from_its_prefix(run_stage, s3, tmp_path):
    # Given raw clips uploaded as label/clip.wav under a prefix, and a non-audio file beside them
    local = _label_tree(tmp_path / "clips")
    for path in sorted(local.rglob("*.wav")):
        s3.put_object(
            Bucket=BUCKET, Key=f"raw/mine/{path.relative_to(local).as_posix()}", Body=path.read_bytes()
        )
    s3.put_object(Bucket=BUCKET, Key="raw/mine/README.txt", Body=b"notes")

    # When the folder source reads that prefix
    result = run_stage(
        "folder", "--source-url", f"s3://{BUCKET}/raw/mine/", "--to", f"s3://{BUCKET}/datasets/mine/"
    )

    # Then every clip is staged into train/ or validation/ under its label, and the README is ignored
    assert result.code == 0, result.err
    staged = sorted(k for k in _keys(s3) if k.startswith("datasets/mine/") and k.endswith(".wav"))
    assert len(staged) == 8
    assert {tuple(k.split("/")[2:4]) for k in staged} == {
        ("train", "siren"),
        ("train", "horn"),
        ("validation", "siren"),
        ("validation", "horn"),
    }
    assert "1 file(s) that are not audio ignored" in result.out
    shutil.rmtree(local)


def test_an_archive_mirrored_in_s3_is_the_source_and_its_pin_is_checked(run_stage, s3, tmp_path):
    # Given the ESC-50 archive mirrored in the bucket, and its sha256
    data = esc50_zip()
    s3.put_object(Bucket=BUCKET, Key="mirror/ESC-50-master.zip", Body=data)
    pin = hashlib.sha256(data).hexdigest()

    # When it is staged from there with the pin
    result = run_stage(
        "esc50", "--source-url", f"s3://{BUCKET}/mirror/ESC-50-master.zip", "--to", DEST, "--sha256", pin
    )

    # Then it is downloaded into the cache, verified, and staged
    assert result.code == 0, result.err
    assert (tmp_path / "cache" / "esc50" / "ESC-50-master.zip").read_bytes() == data
    assert len(versions(s3, "datasets/esc50/")) == 31


class _ScopedListGrant:
    """An S3 client as a role with only a prefix-conditioned s3:ListBucket sees the bucket: S3 answers a
    GetObject of a missing key with 403 AccessDenied, not NoSuchKey. (The emulator always says NoSuchKey.)"""

    def __init__(self, client: Any) -> None:
        self._client = client

    def get_object(self, **kwargs: Any) -> Any:
        try:
            return self._client.get_object(**kwargs)
        except self._client.exceptions.NoSuchKey:
            error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
            raise ClientError(error, "GetObject") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_the_first_staging_into_an_empty_prefix_finds_no_manifest_without_a_403(s3):
    """GetObject (Amazon S3 API Reference): "If you don't have the s3:ListBucket permission, Amazon S3
    returns an HTTP status code 403 Access Denied error" for a key that does not exist. The staging role's
    list grant is conditioned on s3:prefix, which a GetObject does not carry, so existence is asked of
    ListObjectsV2 (which the conditioned grant allows) and a 403 is never read as "absent"."""
    # Given an empty prefix, seen through the staging role's rights
    destination = S3Destination(_ScopedListGrant(s3), f"s3://{BUCKET}/datasets/new/")
    # When the previous manifest is read / Then there is none, and no AccessDenied escapes
    assert destination.read_text("manifest.jsonl") is None
    # And an object that exists is read as before
    s3.put_object(Bucket=BUCKET, Key="datasets/new/manifest.jsonl", Body=b'{"a": 1}\n')
    assert destination.read_text("manifest.jsonl") == '{"a": 1}\n'
    # And a key that only shares the prefix is not taken for the manifest
    s3.delete_object(Bucket=BUCKET, Key="datasets/new/manifest.jsonl")
    s3.put_object(Bucket=BUCKET, Key="datasets/new/manifest.jsonl.bak", Body=b"old")
    assert destination.read_text("manifest.jsonl") is None

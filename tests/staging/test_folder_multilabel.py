"""Your own multi-label clips (--task multilabel): a folder whose metadata.csv lists file_name,labels[,split]."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from common import contract
from staging import cli as stage
from tests.staging.archives import CORRUPT, esc50_zip, wav
from tests.staging.conftest import BUCKET, files_under
from tests.staging.multilabel import assert_multilabel_layout, manifest

HEADER = f"{contract.FILE_NAME_COLUMN},{contract.LABELS_COLUMN}"
ARCHIVE = "ESC-50-master.zip"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _folder(root: Path, rows: list[str], header: str = HEADER, clips: dict[str, bytes] | None = None) -> Path:
    """``root`` with the clips and a metadata file of ``rows`` under ``header``."""
    for seed, (name, data) in enumerate((clips or {}).items()):
        _write(root / name, data or wav(seed))
    _write(root / contract.METADATA_FILE, "\n".join([header, *rows, ""]).encode())
    return root


def _stage(run_stage: Any, source: Path | str, out: Path | str, *extra: str) -> Any:
    return run_stage("folder", "--task", "multilabel", "--source-url", str(source), "--to", str(out), *extra)


def test_a_folder_with_metadata_stages_each_clip_with_its_labels_and_splits(run_stage, tmp_path):
    # Given a folder whose metadata lists clips in subfolders (two with the same name), a clip without
    # any event (an empty labels cell), and a split column that is set for some rows
    source = _folder(
        tmp_path / "clips",
        [
            "day1/a.wav,dog;bark,train",
            "day2/a.wav,dog,train",
            "quiet.wav,,test",
            "both.wav,siren;dog,validation",
            *[f"open/{i}.wav,siren," for i in range(10)],
        ],
        header=f"{HEADER},split",
        clips={
            "day1/a.wav": b"",
            "day2/a.wav": b"",
            "quiet.wav": b"",
            "both.wav": b"",
            **{f"open/{i}.wav": b"" for i in range(10)},
        },
    )
    out = tmp_path / "out"

    # When it is staged with a fifth of the clips without a split for validation and a tenth for test
    result = _stage(run_stage, source, out, "--validation-fraction", "0.2", "--test-fraction", "0.1")

    # Then the split column decides where it is set, the others are split 7 / 2 / 1, the clip without
    # labels is staged with none, and same-named clips get distinct names in their split folder
    assert result.code == 0, result.err
    tables = assert_multilabel_layout(files_under(out))
    assert tables["test"]["quiet.wav"] == []
    assert tables["validation"]["both.wav"] == ["siren", "dog"]
    a_names = sorted(name for name in tables["train"] if name.startswith("a-"))
    assert len(a_names) == 2 and all(n.endswith(".wav") for n in a_names)
    assert sorted(labels for name, labels in tables["train"].items() if name in a_names) == [
        ["dog"],
        ["dog", "bark"],
    ]
    opened = [e for e in manifest(files_under(out)) if str(e["source"]).startswith("open/")]
    assert sorted(sum(e["split"] == s for e in opened) for s in ("train", "validation", "test")) == [1, 2, 7]
    assert "\nquiet.wav,\n" in (out / "test" / contract.METADATA_FILE).read_text()
    assert "(no label)" in result.out
    # and the split assignment is the same on another run into another folder
    again = _stage(
        run_stage, source, tmp_path / "out2", "--validation-fraction", "0.2", "--test-fraction", "0.1"
    )
    assert files_under(tmp_path / "out2") == files_under(out), again.err


def test_hostile_and_broken_rows_are_skipped_and_named_and_nothing_outside_is_read(run_stage, tmp_path):
    # Given a secret recording next to the folder, and a metadata file whose rows point at it through '..',
    # an absolute path, backslashes, a drive letter and a link; plus a hidden file, a repeated file name,
    # a missing file, a text file, a short row, an unknown split and a corrupt clip
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav(666))
    source = tmp_path / "clips"
    rows = [
        "ok.wav,dog,",
        "../secret.wav,dog,",
        f"{secret},dog,",
        "sub/../../secret.wav,dog,",
        "..\\secret.wav,dog,",
        "C:/secret.wav,dog,",
        "link.wav,dog,",
        ".hidden.wav,dog,",
        "ok.wav,cat,",
        "./ok.wav,cat,",
        "gone.wav,dog,",
        "notes.txt,dog,",
        "short.wav",
        "other.wav,dog,holdout",
        "broken.wav,dog,",
    ]
    clips = {
        "ok.wav": wav(1),
        ".hidden.wav": wav(2),
        "notes.txt": b"text",
        "other.wav": wav(3),
        "broken.wav": CORRUPT,
    }
    _folder(source, rows, header=f"{HEADER},split", clips=clips)
    os.symlink(secret, source / "link.wav")
    out = tmp_path / "out"
    report = tmp_path / "report.json"

    # When it is staged
    result = _stage(run_stage, source, out, "--report", str(report))

    # Then only the good clip is staged, the secret's bytes are nowhere in the output, and every other row
    # is counted and named with its line
    assert result.code == 0, result.err
    files = files_under(out)
    assert_multilabel_layout(files)
    assert [e["path"] for e in manifest(files)] == ["train/ok.wav"]
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in {
        hashlib.sha256(d).hexdigest() for d in files.values()
    }
    where = f"{contract.METADATA_FILE} line"
    assert "refused (unsafe name or link): 7" in result.out
    assert (
        f"../secret.wav: {where} 3: file_name '../secret.wav' climbs out of the folder ('..')" in result.out
    )
    assert f"{secret}: {where} 4: file_name '{secret}' is absolute" in result.out
    assert f"link.wav: {where} 8: a symbolic link to outside the source folder" in result.out
    assert f".hidden.wav: {where} 9: file name '.hidden.wav' is not a plain file name" in result.out
    assert "bad rows (skipped): 5" in result.out
    assert f"{where} 10: file_name 'ok.wav': listed again (first on {where} 2)" in result.out
    assert f"{where} 11: file_name './ok.wav': listed again (first on {where} 2)" in result.out
    assert f"{where} 13: file_name 'notes.txt': not an audio file" in result.out
    assert f"{where} 14: 1 field(s) where the header has 3" in result.out
    assert (
        f"{where} 15: file_name 'other.wav': split 'holdout' is not one of train, validation, test"
        in result.out
    )
    assert "corrupt or missing (skipped): 2" in result.out
    assert f"gone.wav: {where} 12: listed but not in the folder" in result.out
    assert "broken.wav: could not decode audio" in result.out
    assert len(json.loads(report.read_text())["bad_rows"]) == 5


def test_a_metadata_file_in_s3_with_a_dot_dot_row_makes_no_dot_dot_key(run_stage, s3):
    # Given clips and a metadata file under an S3 prefix, one row climbing out of it to another object
    for i, key in enumerate(("raw/ml/a.wav", "raw/ml/b.wav", "raw/secret.wav")):
        s3.put_object(Bucket=BUCKET, Key=key, Body=wav(i))
    table = f"{HEADER}\na.wav,dog\nb.wav,\n../secret.wav,dog\n"
    s3.put_object(Bucket=BUCKET, Key=f"raw/ml/{contract.METADATA_FILE}", Body=table.encode())

    # When it is staged into the bucket
    result = _stage(run_stage, f"s3://{BUCKET}/raw/ml/", f"s3://{BUCKET}/d/ml/", "--validation-fraction", "0")

    # Then the two clips and their metadata are staged, no key has '..' and the row is refused
    assert result.code == 0, result.err
    keys = sorted(i["Key"] for i in s3.list_objects_v2(Bucket=BUCKET, Prefix="d/")["Contents"])
    assert keys == [
        "d/ml/manifest.jsonl",
        "d/ml/train/a.wav",
        "d/ml/train/b.wav",
        f"d/ml/train/{contract.METADATA_FILE}",
    ]
    assert "refused (unsafe name or link): 1" in result.out


def test_nothing_usable_and_a_wrong_header_are_one_line_errors(run_stage, tmp_path):
    # Given a folder whose every row is bad, and one whose metadata has no labels column
    bad = _folder(tmp_path / "bad", ["../x.wav,dog", "gone.wav,dog"])
    header = _folder(tmp_path / "header", ["a.wav,dog"], header="file_name,label", clips={"a.wav": b""})

    # When each is staged
    bad_result = _stage(run_stage, bad, tmp_path / "o1")
    header_result = _stage(run_stage, header, tmp_path / "o2")

    # Then each fails with one line saying what was wrong
    assert bad_result.code == 2 and header_result.code == 2
    assert (
        bad_result.err.strip().splitlines()[-1].endswith("no usable clips (1 corrupt or missing, 1 refused)")
    )
    assert header_result.err.strip().splitlines()[-1] == (
        f"error: {contract.METADATA_FILE} has no 'labels' column; its columns are file_name, label; expected "
        "a header with file_name,labels[,split] (labels separated by ';', an empty cell for none; "
        "split: train, validation, test or empty)"
    )


def test_rerunning_writes_nothing_and_a_changed_listing_rewrites_only_what_changed(run_stage, tmp_path):
    # Given a folder staged with its metadata
    clips = {f"c{i}.wav": b"" for i in range(4)}
    source = _folder(tmp_path / "clips", [f"c{i}.wav,dog" for i in range(4)], clips=clips)
    out = tmp_path / "out"
    first = _stage(run_stage, source, out, "--validation-fraction", "0")

    # When it is staged again, then with one row gone and another's labels changed, then after the
    # staged metadata file was edited by hand
    again = _stage(run_stage, source, out, "--validation-fraction", "0")
    _folder(source, ["c0.wav,dog;cat", "c1.wav,dog", "c2.wav,dog"])
    changed = _stage(run_stage, source, out, "--validation-fraction", "0")
    changed_files = files_under(out)
    (out / "train" / contract.METADATA_FILE).write_text(f"{HEADER}\nc0.wav,bird\n")
    repaired = _stage(run_stage, source, out, "--validation-fraction", "0")

    # Then the rerun is a no-op that says so; the change removes the clip that left, rewrites the metadata
    # and the manifest and no clip; and the hand edit is undone
    assert first.code == 0 and again.code == 0, again.err
    assert "nothing changed: 4 clips already staged" in again.out
    assert changed.code == 0, changed.err
    assert "wrote 1 file(s) and the manifest, 3 unchanged, 1 removed" in changed.out
    tables = assert_multilabel_layout(changed_files)
    assert tables == {"train": {"c0.wav": ["dog", "cat"], "c1.wav": ["dog"], "c2.wav": ["dog"]}}
    assert repaired.code == 0, repaired.err
    assert "wrote 1 file(s), 3 unchanged, 0 removed" in repaired.out
    assert files_under(out) == changed_files


def test_switching_the_task_on_one_destination_leaves_only_the_new_layout(http_files, run_stage, tmp_path):
    # Given ESC-50 staged for classification
    http_files.files[ARCHIVE] = esc50_zip()
    url, out = http_files.url(ARCHIVE), str(tmp_path / "esc50")
    single = run_stage("esc50", "--source-url", url, "--to", out)
    classified = files_under(tmp_path / "esc50")

    # When it is staged for multilabel into the same folder, then for classification again
    multi = run_stage("esc50", "--task", "multilabel", "--source-url", url, "--to", out)
    multi_files = files_under(tmp_path / "esc50")
    back = run_stage("esc50", "--source-url", url, "--to", out)

    # Then the multi-label run leaves its layout only, each clip with its one ESC-50 label in the same
    # split as before, and going back leaves exactly the classification layout again
    assert single.code == 0 and multi.code == 0 and back.code == 0, back.err
    tables = assert_multilabel_layout(multi_files)
    before = {(p.split("/")[0], p.split("/")[2]): p.split("/")[1] for p in classified if p.count("/") == 2}
    after = {(split, name): labels for split, t in tables.items() for name, labels in t.items()}
    assert after == {key: [label] for key, label in before.items()}
    assert files_under(tmp_path / "esc50") == classified


def test_a_staged_multilabel_dataset_can_be_staged_again_from_its_split_folders(run_stage, tmp_path):
    # Given a multi-label dataset staged from a folder, in train and test
    clips = {f"c{i}.wav": b"" for i in range(3)}
    source = _folder(
        tmp_path / "clips",
        ["c0.wav,dog;cat,train", "c1.wav,,train", "c2.wav,dog,test"],
        f"{HEADER},split",
        clips,
    )
    first = _stage(run_stage, source, tmp_path / "first")

    # When that staged folder is itself the source (each split folder with its own metadata file)
    second = _stage(run_stage, tmp_path / "first", tmp_path / "second")

    # Then the clips keep their splits, names and labels
    assert first.code == 0 and second.code == 0, second.err
    staged = files_under(tmp_path / "first")
    again = files_under(tmp_path / "second")
    assert assert_multilabel_layout(again) == assert_multilabel_layout(staged)
    assert {p: d for p, d in again.items() if p != "manifest.jsonl"} == {
        p: d for p, d in staged.items() if p != "manifest.jsonl"
    }


def test_the_default_task_is_classification_with_byte_identical_output(run_stage, tmp_path):
    # Given a label tree
    source = tmp_path / "clips"
    for n, label in enumerate(("alarm", "siren")):
        for i in range(5):
            _write(source / label / f"{i}.wav", wav(10 * n + i))

    # When it is staged without --task and with --task classification
    default = run_stage("folder", "--source-url", str(source), "--to", str(tmp_path / "a"))
    explicit = run_stage(
        "folder", "--task", "classification", "--source-url", str(source), "--to", str(tmp_path / "b")
    )

    # Then both write the same label folders and manifest, and no metadata file
    assert default.code == 0 and explicit.code == 0, explicit.err
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")
    assert not any(p.endswith(contract.METADATA_FILE) for p in files_under(tmp_path / "a"))
    assert all(p.count("/") == 2 for p in files_under(tmp_path / "a") if p != "manifest.jsonl")


class _Recording:
    """Wraps a destination and records every write, in order."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self.inner, self.calls, self.url = inner, calls, inner.url

    def list(self) -> dict[str, int]:
        return dict(self.inner.list())

    def read_text(self, path: str) -> str | None:
        return self.inner.read_text(path)

    def write(self, path: str, data: bytes) -> None:
        self.inner.write(path, data)
        self.calls.append(path)

    def delete(self, paths: Any) -> None:
        self.inner.delete(list(paths))


def test_metadata_files_follow_their_clips_and_the_manifest_comes_last(run_stage, tmp_path, monkeypatch):
    # Given a folder with metadata, and a destination that records its writes
    clips = {f"c{i}.wav": b"" for i in range(4)}
    source = _folder(
        tmp_path / "clips",
        [f"c{i}.wav,dog,{s}" for i, s in enumerate(["train"] * 3 + ["test"])],
        f"{HEADER},split",
        clips,
    )
    calls: list[str] = []
    real = stage.destination_for
    monkeypatch.setattr(stage, "destination_for", lambda *a, **k: _Recording(real(*a, **k), calls))

    # When it is staged
    result = _stage(run_stage, source, tmp_path / "out")

    # Then every clip is written before the metadata files, and the manifest last
    assert result.code == 0, result.err
    tables = [c for c in calls if c.endswith(contract.METADATA_FILE)]
    assert sorted(tables) == [f"test/{contract.METADATA_FILE}", f"train/{contract.METADATA_FILE}"]
    assert calls.index(tables[0]) == 4 and calls[-1] == contract.MANIFEST_FILE

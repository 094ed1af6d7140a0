"""Your own clips: a label/clip.wav tree, a split/label/clip.wav tree, or a CSV of path,label[,split]."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.staging.archives import CORRUPT, wav


def _manifest(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_a_label_tree_gets_stratified_validation_and_test_splits(run_stage, tmp_path):
    # Given ten clips per label in label folders
    source = tmp_path / "clips"
    for label_index, label in enumerate(("glass_break", "alarm")):
        for i in range(10):
            _write(source / label / f"take_{i}.wav", wav(50 * label_index + i))
    out = tmp_path / "out"

    # When it is staged with a fifth for validation and a tenth for test
    result = run_stage(
        "folder",
        "--source-url",
        str(source),
        "--to",
        str(out),
        "--validation-fraction",
        "0.2",
        "--test-fraction",
        "0.1",
    )

    # Then each label is split 7 / 2 / 1
    assert result.code == 0, result.err
    counts = Counter((e["split"], e["label"]) for e in _manifest(out))
    for label in ("glass_break", "alarm"):
        assert (counts[("train", label)], counts[("validation", label)], counts[("test", label)]) == (7, 2, 1)


def test_a_split_tree_keeps_its_splits_and_skips_a_corrupt_clip(run_stage, tmp_path):
    # Given train/ and validation/ folders, one clip of which is not audio
    source = tmp_path / "clips"
    _write(source / "train" / "alarm" / "a.wav", wav(1))
    _write(source / "train" / "alarm" / "b.wav", wav(2))
    _write(source / "train" / "siren" / "c.wav", wav(3))
    _write(source / "validation" / "alarm" / "d.wav", wav(4))
    _write(source / "validation" / "siren" / "broken.wav", CORRUPT)
    out = tmp_path / "out"

    # When it is staged
    result = run_stage("folder", "--source-url", str(source), "--to", str(out))

    # Then the splits are the folders' own, and the corrupt clip is listed instead of staged
    assert result.code == 0, result.err
    assert sorted(e["path"] for e in _manifest(out)) == [
        "train/alarm/a.wav",
        "train/alarm/b.wav",
        "train/siren/c.wav",
        "validation/alarm/d.wav",
    ]
    assert "corrupt or missing (skipped): 1" in result.out
    assert "validation/siren/broken.wav: could not decode audio" in result.out


def test_a_csv_gives_labels_and_splits_and_duplicate_content_is_staged_once(run_stage, tmp_path):
    # Given a CSV whose rows point at clips in several folders, two with identical audio
    source = tmp_path / "raw"
    _write(source / "day1" / "x.wav", wav(1))
    _write(source / "day2" / "x.wav", wav(2))
    _write(source / "day2" / "y.wav", wav(3))
    _write(source / "day3" / "copy_of_y.wav", wav(3))
    table = source / "labels.csv"
    table.write_text(
        "path,label,split\n"
        "day1/x.wav,alarm,train\n"
        "day2/x.wav,alarm,train\n"
        "day2/y.wav,siren,train\n"
        "day3/copy_of_y.wav,siren,test\n"
    )
    out = tmp_path / "out"

    # When the CSV is staged
    result = run_stage("folder", "--source-url", str(table), "--to", str(out))

    # Then same-named clips get distinct names, and the duplicate is kept once, in the test split
    assert result.code == 0, result.err
    paths = sorted(e["path"] for e in _manifest(out))
    assert len(paths) == 3
    assert paths[0] == "test/siren/copy_of_y.wav"
    assert all(p.startswith("train/alarm/x-") and p.endswith(".wav") for p in paths[1:])
    assert "duplicates by content: 1" in result.out
    assert "day2/y.wav = day3/copy_of_y.wav" in result.out


def test_a_csv_without_the_label_column_is_a_clear_error(run_stage, tmp_path):
    # Given a CSV with "category" where "label" is expected
    table = tmp_path / "clips.csv"
    table.write_text("path,category\na.wav,dog\n")

    # When it is staged
    result = run_stage("folder", "--source-url", str(table), "--to", str(tmp_path / "out"))

    # Then the error names the missing column, the columns found and the expected form
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == (
        f"error: {table} has no 'label' column; its columns are path, category; "
        "expected columns path,label[,split] (split: train, validation or test)"
    )


def test_a_csv_with_a_bad_split_or_a_short_row_is_a_clear_error(run_stage, tmp_path):
    # Given one CSV with an unknown split name and one with a row missing a field
    bad_split = tmp_path / "split.csv"
    bad_split.write_text("path,label,split\na.wav,dog,train\nb.wav,dog,holdout\n")
    short_row = tmp_path / "short.csv"
    short_row.write_text("path,label,split\na.wav,dog,train\nb.wav\n")

    # When each is staged
    split_result = run_stage("folder", "--source-url", str(bad_split), "--to", str(tmp_path / "o1"))
    short_result = run_stage("folder", "--source-url", str(short_row), "--to", str(tmp_path / "o2"))

    # Then each error points at the line and says what is expected
    assert split_result.code == 2 and short_result.code == 2
    assert split_result.err.strip().splitlines()[-1] == (
        f"error: {bad_split} line 3: split 'holdout' is not one of train, validation, test (or empty)"
    )
    assert short_result.err.strip().splitlines()[-1] == (
        f"error: {short_row} line 3: 1 field(s) where the header has 3; "
        "expected columns path,label[,split] (split: train, validation or test)"
    )


def test_the_command_line_reports_user_errors_in_one_line_without_a_traceback(tmp_path):
    # Given the folder source without --source-url

    # When the module runs as the CodeBuild job runs it
    result = subprocess.run(
        [sys.executable, "-m", "staging", "folder", "--to", str(tmp_path / "out"), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )

    # Then it exits non-zero with exactly one line of explanation
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the folder source needs --source-url: a directory, s3://bucket/prefix/, "
        "or a CSV of path,label[,split]"
    ]

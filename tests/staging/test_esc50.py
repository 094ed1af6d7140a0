"""ESC-50 from its GitHub-layout archive over HTTP into a local directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.staging.archives import ESC50_CATEGORIES, esc50_rows, esc50_zip
from tests.staging.conftest import files_under

ARCHIVE = "ESC-50-master.zip"


def _manifest(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_esc50_stages_fold_5_as_test_and_the_rest_as_train_and_validation(http_files, run_stage, tmp_path):
    # Given the archive served over HTTP
    http_files.files[ARCHIVE] = esc50_zip()
    out = tmp_path / "esc50"

    # When it is staged into a local directory
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out))

    # Then every fold-5 clip is in test/, folds 1-4 are split between train/ and validation/ per class
    assert result.code == 0, result.err
    folds = {str(row[0]): int(row[1]) for row in esc50_rows()}
    manifest = _manifest(out)
    assert len(manifest) == len(folds)
    for entry in manifest:
        name = Path(str(entry["path"])).name
        assert (entry["split"] == "test") == (folds[name] == 5)
        assert entry["path"] == f"{entry['split']}/{entry['label']}/{name}"
    for category in ESC50_CATEGORIES:
        assert len(list((out / "validation" / category).glob("*.wav"))) == 2
        assert len(list((out / "train" / category).glob("*.wav"))) == 6
    # and the manifest's hashes are those of the files written
    written = files_under(out)
    assert {e["path"]: e["sha256"] for e in manifest} == {
        path: hashlib.sha256(data).hexdigest() for path, data in written.items() if path != "manifest.jsonl"
    }
    assert "wrote 30 file(s) and the manifest" in result.out


def test_validation_split_is_stable_grouped_by_recording_and_follows_the_seed(
    http_files, run_stage, tmp_path
):
    # Given the archive
    http_files.files[ARCHIVE] = esc50_zip()
    url = http_files.url(ARCHIVE)

    # When it is staged twice with the default seed and once with another seed
    run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "a"))
    run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "b"))
    run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "c"), "--seed", "7")

    # Then the same seed gives byte-identical manifests, another seed another validation set
    first, second = (tmp_path / d / "manifest.jsonl" for d in "ab")
    assert first.read_bytes() == second.read_bytes()
    validation = {e["source"] for e in _manifest(tmp_path / "a") if e["split"] == "validation"}
    assert validation != {e["source"] for e in _manifest(tmp_path / "c") if e["split"] == "validation"}
    # and both takes (A, B) of a source recording always land in the same split
    split_of = {Path(str(e["path"])).name: e["split"] for e in _manifest(tmp_path / "a")}
    for name, split in split_of.items():
        assert split_of[name.replace("-A-", "-B-") if "-A-" in name else name.replace("-B-", "-A-")] == split


def test_fold_and_esc10_options_choose_the_test_fold_and_the_subset(http_files, run_stage, tmp_path):
    # Given the archive, where dog and rain are ESC-10 classes and crow is not
    http_files.files[ARCHIVE] = esc50_zip()
    out = tmp_path / "esc10"

    # When fold 2 is the test fold of the ESC-10 subset
    result = run_stage(
        "esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out), "--fold", "2", "--esc10"
    )

    # Then only ESC-10 labels are staged and test/ holds exactly fold 2
    assert result.code == 0, result.err
    manifest = _manifest(out)
    assert {e["label"] for e in manifest} == {"dog", "rain"}
    assert {Path(str(e["path"])).name[0] for e in manifest if e["split"] == "test"} == {"2"}
    assert sum(e["split"] == "test" for e in manifest) == 4


def test_corrupt_clip_is_skipped_counted_and_listed(http_files, run_stage, tmp_path):
    # Given an archive in which one listed clip is not audio
    broken = "3-1093-A-9.wav"
    http_files.files[ARCHIVE] = esc50_zip(corrupt=broken)
    out, report = tmp_path / "out", tmp_path / "report.json"

    # When it is staged
    result = run_stage(
        "esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out), "--report", str(report)
    )

    # Then the run succeeds without that clip, and the summary and the report name it
    assert result.code == 0, result.err
    assert broken not in {Path(str(e["path"])).name for e in _manifest(out)}
    assert not list(out.rglob(broken))
    assert "1 corrupt or missing" in result.out
    assert f"ESC-50-master/audio/{broken}: could not decode audio" in result.out
    corrupt = json.loads(report.read_text())["corrupt"]
    assert [c["source"] for c in corrupt] == [f"ESC-50-master/audio/{broken}"]


def test_rerun_into_a_local_directory_writes_nothing_and_says_so(http_files, run_stage, tmp_path):
    # Given a staged directory
    http_files.files[ARCHIVE] = esc50_zip()
    out = tmp_path / "out"
    run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    # When the same staging runs again
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(out))

    # Then no file is rewritten and the summary says nothing changed
    assert result.code == 0, result.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert f"nothing changed: 30 clips already staged at {out}" in result.out


def test_metadata_without_a_required_column_is_a_clear_error(http_files, run_stage, tmp_path):
    # Given an archive whose esc50.csv lacks the category column
    header = ["filename", "fold", "target", "esc10", "src_file", "take"]
    http_files.files[ARCHIVE] = esc50_zip(header=header)

    # When it is staged
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(tmp_path / "out"))

    # Then the command fails with one line naming the missing column and the columns it found
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == (
        "error: ESC-50-master/meta/esc50.csv has no 'category' column; its columns are "
        "filename, fold, target, esc10, src_file, take; expected the ESC-50 columns "
        "filename,fold,target,category,esc10,src_file,take"
    )
    assert not (tmp_path / "out").exists()

"""LibriSpeech (librispeech, --task asr): a folder, one archive, or the released <subset>.tar.gz archives."""

from __future__ import annotations

from typing import Any

from common import contract
from staging import cli as stage
from tests.staging.conftest import files_under
from tests.staging.speech import (
    assert_speech_layout,
    flac,
    librispeech_files,
    manifest,
    speakers_by_split,
    tar_gz,
    write_files,
)

SUBSETS = {
    "train-clean-100": {
        "19": {"198": {"0000": "NORTHANGER ABBEY", "0001": "CHAPTER ONE"}},
        "26": {"495": {"0000": "A"}},
    },
    "train-clean-360": {"100": {"121669": {"0000": "TOM THE PIPER'S SON"}}},
    "dev-clean": {"84": {"121123": {"0000": "GO DO YOU HEAR"}}},
    "test-clean": {"1089": {"134686": {"0000": "HE HOPED THERE WOULD BE STEW"}}},
    "dev-other": {"116": {"288045": {"0000": "AS I APPROACHED THE CITY"}}},
}


def _corpus(*subsets: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for subset in subsets or tuple(SUBSETS):
        files |= librispeech_files(subset, SUBSETS[subset], seed=100 * list(SUBSETS).index(subset))
    return files


def test_a_folder_stages_its_subsets_in_their_splits_and_skips_the_other_ones(run_stage, tmp_path):
    # Given an unpacked LibriSpeech folder with two train subsets, dev-clean, test-clean and dev-other
    source = write_files(tmp_path / "corpus", _corpus())
    out = tmp_path / "ls"

    # When it is staged (the task is implied)
    result = run_stage("librispeech", "--source-url", str(source), "--to", str(out))

    # Then train-* is train, dev-clean validation, test-clean test, dev-other is skipped and the summary
    # says how to stage it; each utterance keeps its name, transcript and speaker id
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert {split: sorted(t) for split, t in tables.items()} == {
        "train": ["100-121669-0000.flac", "19-198-0000.flac", "19-198-0001.flac", "26-495-0000.flac"],
        "validation": ["84-121123-0000.flac"],
        "test": ["1089-134686-0000.flac"],
    }
    assert speakers_by_split(tables) == {"train": {"19", "26", "100"}, "validation": {"84"}, "test": {"1089"}}
    assert tables["train"]["100-121669-0000.flac"][contract.TRANSCRIPTION_COLUMN] == "TOM THE PIPER'S SON"
    assert "dev-other skipped: name them in --subsets to stage them" in result.out
    assert manifest(files_under(out))[0]["source"] == "test-clean/1089/134686/1089-134686-0000.flac"


def test_subsets_pick_what_is_staged_and_dev_other_joins_validation(run_stage, tmp_path):
    # Given the same folder
    source = write_files(tmp_path / "corpus", _corpus())
    out = tmp_path / "ls"

    # When only dev-clean and dev-other are asked for, then a subset the folder lacks
    result = run_stage(
        "librispeech", "--subsets", "dev-clean,dev-other", "--source-url", str(source), "--to", str(out)
    )
    absent = run_stage(
        "librispeech", "--subsets", "test-other", "--source-url", str(source), "--to", str(out)
    )

    # Then validation holds both dev subsets and nothing else is staged; the absent one is an error
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert {split: sorted(t) for split, t in tables.items()} == {
        "validation": ["116-288045-0000.flac", "84-121123-0000.flac"]
    }
    assert absent.code == 2
    assert absent.err.strip().splitlines()[-1].startswith("error: --subsets: test-other not in the source")


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


def test_the_released_archives_are_downloaded_unpacked_once_and_restaging_writes_nothing(
    http_files, run_stage, tmp_path, monkeypatch
):
    # Given the default subsets' archives served like openslr.org, and a destination that records writes
    for subset in ("train-clean-100", "dev-clean", "test-clean", "dev-other"):
        http_files.files[f"{subset}.tar.gz"] = tar_gz(_corpus(subset))
    out = tmp_path / "ls"
    calls: list[str] = []
    real = stage.destination_for
    monkeypatch.setattr(stage, "destination_for", lambda *a, **k: _Recording(real(*a, **k), calls))

    # When LibriSpeech is staged from there, then again
    first = run_stage("librispeech", "--source-url", http_files.base_url, "--to", str(out))
    first_calls = list(calls)
    requests = len(http_files.requests)
    again = run_stage("librispeech", "--source-url", http_files.base_url, "--to", str(out))

    # Then the three default archives (not dev-other) were fetched, the clips were written before the
    # metadata files and the manifest last; the rerun fetched and unpacked nothing and wrote nothing
    assert first.code == 0 and again.code == 0, again.err
    assert sorted(name for name, _ in http_files.requests) == [
        "dev-clean.tar.gz",
        "test-clean.tar.gz",
        "train-clean-100.tar.gz",
    ]
    assert len(http_files.requests) == requests
    tables = assert_speech_layout(files_under(out))
    assert [len(tables[s]) for s in ("train", "validation", "test")] == [3, 1, 1]
    assert first_calls[-1] == contract.MANIFEST_FILE
    assert [c.endswith(contract.METADATA_FILE) for c in first_calls[:-1]] == [False] * 5 + [True] * 3
    assert "using the copy unpacked in the cache" in again.err
    assert "nothing changed: 5 clips already staged" in again.out


def test_a_local_folder_of_archives_stages_the_archives_it_holds(run_stage, tmp_path):
    # Given a folder holding dev-clean.tar.gz and test-clean.tar.gz only, and one archive on its own
    mirror = tmp_path / "mirror"
    write_files(mirror, {f"{s}.tar.gz": tar_gz(_corpus(s)) for s in ("dev-clean", "test-clean")})

    # When the folder is staged, and the one archive
    whole = run_stage("librispeech", "--source-url", str(mirror), "--to", str(tmp_path / "a"))
    one = run_stage(
        "librispeech", "--source-url", str(mirror / "dev-clean.tar.gz"), "--to", str(tmp_path / "b")
    )

    # Then the folder gives validation and test, and the archive its own subset
    assert whole.code == 0 and one.code == 0, one.err
    assert set(assert_speech_layout(files_under(tmp_path / "a"))) == {"validation", "test"}
    assert set(assert_speech_layout(files_under(tmp_path / "b"))) == {"validation"}


def test_missing_files_missing_lines_empty_and_hostile_transcript_lines_are_counted(run_stage, tmp_path):
    # Given a chapter whose transcript lists a missing file, an empty transcript, another chapter's
    # utterance, a repeated line and an id that climbs out; a file without a line; and a chapter without
    # its transcript
    files = _corpus("dev-clean")
    chapter = "LibriSpeech/dev-clean/84/121123/"
    files[chapter + "84-121123.trans.txt"] += (
        b"84-121123-0001 NOT ON DISK\n"
        b"84-121123-0002\n"
        b"85-1-0000 ELSEWHERE\n"
        b"84-121123-0000 AGAIN\n"
        b"../../../../../evil LEAK\n"
    )
    files[chapter + "84-121123-0002.flac"] = flac(2)
    files[chapter + "84-121123-0003.flac"] = flac(3)
    files["LibriSpeech/dev-clean/84/999/84-999-0000.flac"] = flac(4)
    source = write_files(tmp_path / "corpus", files)
    out = tmp_path / "ls"

    # When it is staged
    result = run_stage("librispeech", "--source-url", str(source), "--to", str(out))

    # Then the one good utterance is staged and every other is counted with its line
    assert result.code == 0, result.err
    assert [e["path"] for e in manifest(files_under(out))] == ["validation/84-121123-0000.flac"]
    trans = f"{chapter}84-121123.trans.txt"
    assert "corrupt or missing (skipped): 3" in result.out
    assert f"{chapter}84-121123-0001.flac: {trans} line 2: listed but the file is missing" in result.out
    assert f"{chapter}84-121123-0003.flac: no line in {trans}" in result.out
    assert "LibriSpeech/dev-clean/84/999/84-999-0000.flac: no transcript: " in result.out
    assert "bad rows (skipped): 3" in result.out
    assert f"{trans} line 3: 84-121123-0002: an empty transcription" in result.out
    assert f"{trans} line 4: 85-1-0000: not an utterance of chapter 84-121123" in result.out
    assert f"{trans} line 5: 84-121123-0000: listed again (first on {trans} line 1)" in result.out
    assert "refused (unsafe name or link): 1" in result.out
    assert f"../../../../../evil: {trans} line 6: utterance '../../../../../evil.flac'" in result.out
    assert [p for p in tmp_path.rglob("*evil*")] == []


def test_hostile_members_of_an_archive_are_refused_and_nothing_lands_outside(http_files, run_stage, tmp_path):
    # Given a dev-clean archive with members that climb out of it or are absolute
    files = _corpus("dev-clean")
    files["LibriSpeech/dev-clean/../../../../evil.flac"] = flac(9)
    files["/tmp/evil-librispeech.flac"] = flac(10)
    http_files.files["dev-clean.tar.gz"] = tar_gz(files)
    out = tmp_path / "ls"

    # When it is staged from that archive
    result = run_stage("librispeech", "--source-url", http_files.url("dev-clean.tar.gz"), "--to", str(out))

    # Then the good utterance is staged and both members are refused, written nowhere
    assert result.code == 0, result.err
    assert len(manifest(files_under(out))) == 1
    assert "refused (unsafe name or link): 2" in result.out
    assert [p for p in tmp_path.rglob("*evil*")] == []


def test_a_corrupt_archive_is_a_one_line_error_and_leaves_the_cache_clean(http_files, run_stage, tmp_path):
    # Given a download that is not a tar archive
    http_files.files["dev-clean.tar.gz"] = b"\x1f\x8b not really gzip"

    # When it is staged
    result = run_stage(
        "librispeech", "--source-url", http_files.url("dev-clean.tar.gz"), "--to", str(tmp_path / "o")
    )

    # Then one line says so, and the bad download is gone from the cache
    assert result.code == 2
    assert "dev-clean.tar.gz is not a readable tar archive" in result.err.strip().splitlines()[-1]
    assert not list((tmp_path / "cache").rglob("dev-clean.tar.gz"))

"""Your own speech clips (--task asr): a folder whose metadata.csv lists file_name,transcription[,speaker][,split]."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from common import contract
from staging import cli as stage
from tests.staging.archives import CORRUPT
from tests.staging.conftest import files_under
from tests.staging.speech import assert_speech_layout, audio, manifest, mp3, speakers_by_split

HEADER = f"{contract.FILE_NAME_COLUMN},{contract.TRANSCRIPTION_COLUMN}"
WITH_SPEAKER = f"{HEADER},{contract.SPEAKER_COLUMN}"


def _folder(root: Path, header: str, rows: list[str], clips: dict[str, bytes]) -> Path:
    """``root`` with the clips and a metadata file of ``rows`` under ``header``."""
    for name, data in clips.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    (root / contract.METADATA_FILE).write_text("\n".join([header, *rows, ""]))
    return root


def _stage(run_stage: Any, source: Path, out: Path, *extra: str) -> Any:
    return run_stage("folder", "--task", "asr", "--source-url", str(source), "--to", str(out), *extra)


def _speakers_folder(root: Path, speakers: int = 10, per_speaker: int = 3) -> Path:
    """``speakers`` speakers with ``per_speaker`` FLAC clips each, no split column."""
    rows, clips = [], {}
    for s in range(speakers):
        for u in range(per_speaker):
            name = f"s{s}/u{u}.flac"
            clips[name] = audio(100 * s + u)
            rows.append(f'{name},"hello, speaker {s} utterance {u}",spk{s}')
    return _folder(root, WITH_SPEAKER, rows, clips)


def test_a_folder_without_splits_is_split_by_speaker_and_writes_transcriptions(run_stage, tmp_path):
    # Given ten speakers with three clips each and no split column
    source = _speakers_folder(tmp_path / "clips")
    out = tmp_path / "out"

    # When it is staged with a fifth for validation and a tenth for test
    result = _stage(run_stage, source, out, "--validation-fraction", "0.2", "--test-fraction", "0.1")

    # Then every split has clips, no speaker is in two splits, and each clip keeps its transcription
    # (commas included) and speaker in its split's metadata file
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert set(tables) == {"train", "validation", "test"}
    by_split = speakers_by_split(tables)
    assert sum(len(s) for s in by_split.values()) == 10 == len(set().union(*by_split.values()))
    assert len(by_split["validation"]) == 2 and len(by_split["test"]) == 1
    row = next(iter(tables["test"].values()))
    assert row[contract.TRANSCRIPTION_COLUMN].startswith("hello, speaker ")
    assert (out / "test" / contract.METADATA_FILE).read_text().splitlines()[0] == WITH_SPEAKER
    entry = manifest(files_under(out))[0]
    assert entry[contract.SPEAKER_COLUMN] and entry[contract.TRANSCRIPTION_COLUMN]
    assert "10 speaker(s): 7 in train, 2 in validation, 1 in test; no speaker is in two splits" in result.out
    # and the assignment is the same on another run into another folder, and follows the seed
    _stage(run_stage, source, tmp_path / "again", "--validation-fraction", "0.2", "--test-fraction", "0.1")
    assert files_under(tmp_path / "again") == files_under(out)
    other = _stage(run_stage, source, tmp_path / "seed", "--validation-fraction", "0.2", "--seed", "3")
    assert (
        other.code == 0
        and speakers_by_split(assert_speech_layout(files_under(tmp_path / "seed"))) != by_split
    )


def test_a_split_column_is_kept_and_a_speakers_other_clips_follow_it(run_stage, tmp_path):
    # Given a speaker with one clip fixed in test and two without a split, and two other speakers
    rows = ["a0.wav,one,ann,test", "a1.wav,two,ann,", "a2.wav,three,ann,"]
    rows += [f"b{i}.wav,bee {i},bob," for i in range(3)] + [f"c{i}.mp3,sea {i},cy," for i in range(3)]
    clips = {f"a{i}.wav": audio(i, "WAV") for i in range(3)}
    clips |= {f"b{i}.wav": audio(10 + i, "WAV") for i in range(3)} | {
        f"c{i}.mp3": mp3(20 + i) for i in range(3)
    }
    source = _folder(tmp_path / "clips", f"{WITH_SPEAKER},split", rows, clips)
    out = tmp_path / "out"

    # When it is staged with a third for validation
    result = _stage(run_stage, source, out, "--validation-fraction", "0.34")

    # Then all of ann's clips are in test, bob and cy are split whole, MP3 clips keep their extension
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert sorted(tables["test"]) == ["a0.wav", "a1.wav", "a2.wav"]
    by_split = speakers_by_split(tables)
    assert by_split["train"] | by_split["validation"] == {"bob", "cy"}
    assert len(by_split["train"]) == len(by_split["validation"]) == 1
    assert any(name.endswith(".mp3") for table in tables.values() for name in table)


def test_one_speaker_stays_in_train_and_the_summary_says_why(run_stage, tmp_path):
    # Given a folder whose clips are all by one speaker
    source = _speakers_folder(tmp_path / "clips", speakers=1, per_speaker=4)

    # When it is staged with the default validation fraction
    result = _stage(run_stage, source, tmp_path / "out")

    # Then every clip is in train (a validation split would share the voice), and the summary says so
    assert result.code == 0, result.err
    assert set(assert_speech_layout(files_under(tmp_path / "out"))) == {"train"}
    assert "no validation split: 1 speaker(s) (or clips without one) had no split" in result.out


def test_without_speakers_clips_are_split_alone_and_no_speaker_column_is_written(run_stage, tmp_path):
    # Given clips without a speaker column, one with an empty transcription and one whose transcription
    # spans lines and tabs
    rows = [f"c{i}.flac,word {i}" for i in range(9)] + ["empty.flac,", 'lines.flac,"two\n\tlines  here"']
    clips = {f"c{i}.flac": audio(i) for i in range(9)} | {"empty.flac": audio(50), "lines.flac": audio(51)}
    source = _folder(tmp_path / "clips", HEADER, rows, clips)
    out = tmp_path / "out"
    report = tmp_path / "report.json"

    # When it is staged with a tenth for validation
    result = _stage(run_stage, source, out, "--report", str(report))

    # Then one clip is in validation, the metadata has no speaker column, white space runs are one space,
    # and the clip with an empty transcription is skipped and counted as a bad row
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert [len(tables[s]) for s in ("train", "validation")] == [9, 1]
    assert (out / "train" / contract.METADATA_FILE).read_text().splitlines()[0] == HEADER
    rows_by_name = {name: row for table in tables.values() for name, row in table.items()}
    assert rows_by_name["lines.flac"][contract.TRANSCRIPTION_COLUMN] == "two lines here"
    assert "empty.flac" not in rows_by_name
    assert "bad rows (skipped): 1" in result.out
    assert (
        f"{contract.METADATA_FILE} line 11: file_name 'empty.flac': an empty transcription "
        "(a CTC target cannot be empty)" in result.out
    )
    assert json.loads(report.read_text())["counts"]["(utterances)"] == {"train": 9, "validation": 1}


def test_hostile_rows_are_refused_missing_and_corrupt_clips_counted(run_stage, tmp_path):
    # Given a secret recording next to the folder, rows reaching it through '..', an absolute path and a
    # link, a row for a missing clip and a corrupt clip
    secret = tmp_path / "secret.wav"
    secret.write_bytes(audio(666, "WAV"))
    rows = ["ok.flac,fine,s1", "../secret.wav,leak,s1", f"{secret},leak,s1", "link.wav,leak,s1"]
    rows += ["gone.flac,not here,s2", "broken.wav,broken,s3"]
    source = _folder(tmp_path / "clips", WITH_SPEAKER, rows, {"ok.flac": audio(1), "broken.wav": CORRUPT})
    os.symlink(secret, source / "link.wav")
    out = tmp_path / "out"

    # When it is staged
    result = _stage(run_stage, source, out)

    # Then only the good clip is staged, the secret is nowhere, and each other row is named
    assert result.code == 0, result.err
    files = files_under(out)
    assert [e["path"] for e in manifest(files)] == ["train/ok.flac"]
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in {
        hashlib.sha256(d).hexdigest() for d in files.values()
    }
    assert "refused (unsafe name or link): 3" in result.out
    assert "file_name '../secret.wav' climbs out of the folder ('..')" in result.out
    assert "corrupt or missing (skipped): 2" in result.out
    assert "gone.flac: metadata.csv line 6: listed but not in the folder" in result.out


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


def test_restaging_is_a_no_op_a_changed_transcription_rewrites_its_table_and_the_manifest_is_last(
    run_stage, tmp_path, monkeypatch
):
    # Given a folder staged for speech, and a destination that records its writes
    source = _speakers_folder(tmp_path / "clips", speakers=4, per_speaker=2)
    out = tmp_path / "out"
    calls: list[str] = []
    real = stage.destination_for
    monkeypatch.setattr(stage, "destination_for", lambda *a, **k: _Recording(real(*a, **k), calls))
    first = _stage(run_stage, source, out)
    first_calls = list(calls)

    # When it is staged again, then after one transcription changed
    again = _stage(run_stage, source, out)
    table = (source / contract.METADATA_FILE).read_text()
    (source / contract.METADATA_FILE).write_text(table.replace("speaker 0 utterance 0", "changed words"))
    changed = _stage(run_stage, source, out)

    # Then the first run wrote the clips, then the metadata files, then the manifest last; the rerun wrote
    # nothing; the change rewrote one metadata file and the manifest, no clip
    assert first.code == 0 and again.code == 0 and changed.code == 0, changed.err
    assert first_calls[-1] == contract.MANIFEST_FILE
    tables = [i for i, c in enumerate(first_calls) if c.endswith(contract.METADATA_FILE)]
    assert tables and min(tables) == 8 and len(first_calls) == 8 + len(tables) + 1
    assert "nothing changed: 8 clips already staged" in again.out
    assert "wrote 1 file(s) and the manifest, 8 unchanged, 0 removed" in changed.out
    assert "changed words" in json.dumps(manifest(files_under(out)))


def test_switching_a_destination_from_classification_to_asr_leaves_only_the_asr_layout(run_stage, tmp_path):
    # Given a label tree staged for classification into a folder
    labels = tmp_path / "labels"
    for i in range(4):
        (labels / "dog").mkdir(parents=True, exist_ok=True)
        (labels / "dog" / f"{i}.wav").write_bytes(audio(900 + i, "WAV"))
    out = tmp_path / "out"
    run_stage("folder", "--source-url", str(labels), "--to", str(out))

    # When a speech folder is staged into the same destination
    result = _stage(run_stage, _speakers_folder(tmp_path / "clips", 3, 2), out)

    # Then only the speech layout is left
    assert result.code == 0, result.err
    assert_speech_layout(files_under(out))
    assert not (out / "train" / "dog").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("esc50", "--task", "asr"), "error: --task asr applies to the folder, commonvoice and librispeech"),
        (("fsd50k", "--task", "asr"), "error: --task asr applies to the folder, commonvoice and librispeech"),
        (("commonvoice", "--task", "classification"), "error: commonvoice is a speech dataset"),
        (("librispeech", "--task", "multilabel"), "error: librispeech is a speech dataset"),
        (("librispeech", "--validation-fraction", "0.2"), "error: --validation-fraction does not apply to"),
        (("commonvoice", "--test-fraction", "0.2"), "error: --test-fraction applies to the folder source"),
        (
            ("folder", "--task", "asr", "--subsets", "dev-clean"),
            "error: --subsets applies to the librispeech",
        ),
        (
            ("librispeech", "--subsets", "dev-noisy"),
            "error: --subsets: dev-noisy is not a LibriSpeech subset",
        ),
        (("folder", "--task", "asr"), "error: the folder source with --task asr needs --source-url"),
        (("commonvoice",), "error: the commonvoice source needs --source-url"),
    ],
)
def test_options_that_do_not_apply_to_asr_are_one_line_errors(run_stage, tmp_path, args, error):
    # When an option that does not fit speech is given
    result = run_stage(*args, "--to", str(tmp_path / "out"))

    # Then the run stops with one line saying what applies, and writes nothing
    assert result.code == 2
    assert result.err.strip().splitlines()[-1].startswith(error), result.err
    assert not (tmp_path / "out").exists()


def test_a_metadata_file_without_a_transcription_column_is_a_one_line_error(run_stage, tmp_path):
    # Given a folder whose metadata file is multi-label
    source = _folder(tmp_path / "clips", "file_name,labels", ["a.wav,dog"], {"a.wav": audio(1, "WAV")})

    # When it is staged for speech
    result = _stage(run_stage, source, tmp_path / "out")

    # Then the error names the missing column and the expected header
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == (
        f"error: {contract.METADATA_FILE} has no 'transcription' column; its columns are file_name, labels; "
        "expected a header with file_name,transcription[,speaker][,split] (a transcription per clip, never "
        "empty; split: train, validation, test or empty)"
    )


def test_the_help_names_the_asr_task_and_the_speech_sources(capsys):
    # When the help is printed
    with pytest.raises(SystemExit):
        stage.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())

    # Then it names the task, the speech sources and the metadata columns
    assert "asr" in text and "commonvoice" in text and "librispeech" in text
    assert f"{contract.FILE_NAME_COLUMN},{contract.TRANSCRIPTION_COLUMN}[,{contract.SPEAKER_COLUMN}]" in text

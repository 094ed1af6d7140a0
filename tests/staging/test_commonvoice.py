"""Common Voice (commonvoice, --task asr): a release's folder or .tar.gz, its train/dev/test tables kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

from common import contract
from tests.staging.conftest import BUCKET, files_under, versions
from tests.staging.speech import (
    CV_ROOT,
    assert_speech_layout,
    commonvoice_files,
    cv_row,
    manifest,
    mp3,
    speakers_by_split,
    tar_gz,
    write_files,
)

ARCHIVE = "cv-corpus-17.0-2024-03-15-en.tar.gz"
TABLES = {
    "train.tsv": [cv_row("aaa", f"common_voice_en_{i}.mp3", f'He said "hi" {i}.') for i in range(3)]
    + [cv_row("bbb", "common_voice_en_3.mp3", "Another one, with a comma.")],
    "dev.tsv": [cv_row("ccc", "common_voice_en_10.mp3", "Dev sentence.")],
    "test.tsv": [
        cv_row("ddd", "common_voice_en_20.mp3", "Test sentence."),
        cv_row("ddd", "common_voice_en_21.mp3", "Two."),
    ],
}
CLIPS = [f"common_voice_en_{i}.mp3" for i in (0, 1, 2, 3, 10, 20, 21)] + [
    "common_voice_en_99.mp3"
]  # 99: other


def _release(**tables: list[list[str]]) -> dict[str, bytes]:
    return commonvoice_files({**TABLES, **{k.replace("_", "."): v for k, v in tables.items()}}, CLIPS)


def test_a_release_archive_keeps_its_splits_speakers_and_sentences(http_files, run_stage, tmp_path):
    # Given a release's .tar.gz served over HTTP (MP3 clips, tables written without quoting)
    http_files.files[ARCHIVE] = tar_gz(_release())
    out = tmp_path / "cv"

    # When it is staged
    result = run_stage("commonvoice", "--source-url", http_files.url(ARCHIVE), "--to", str(out))

    # Then train/dev/test become train/validation/test, client_id is the speaker, each sentence is kept as
    # written (quotes included), the clips keep their .mp3 name, and the clip of no table is left out
    assert result.code == 0, result.err
    tables = assert_speech_layout(files_under(out))
    assert {split: sorted(t) for split, t in tables.items()} == {
        "train": [f"common_voice_en_{i}.mp3" for i in range(4)],
        "validation": ["common_voice_en_10.mp3"],
        "test": ["common_voice_en_20.mp3", "common_voice_en_21.mp3"],
    }
    assert speakers_by_split(tables) == {"train": {"aaa", "bbb"}, "validation": {"ccc"}, "test": {"ddd"}}
    assert tables["train"]["common_voice_en_0.mp3"][contract.TRANSCRIPTION_COLUMN] == 'He said "hi" 0.'
    assert "1 clip(s) in " + CV_ROOT + "clips/ not in train.tsv, dev.tsv, test.tsv" in result.out
    assert "4 speaker(s): 2 in train, 1 in validation, 1 in test; no speaker is in two splits" in result.out


def test_a_release_folder_is_read_in_place_and_restaging_writes_nothing(run_stage, tmp_path):
    # Given an unpacked release folder, staged once
    source = write_files(tmp_path / "release", _release())
    out = tmp_path / "cv"
    first = run_stage("commonvoice", "--source-url", str(source / CV_ROOT), "--to", str(out))
    staged = files_under(out)

    # When it is staged again, and from the folder above the locale's
    again = run_stage("commonvoice", "--source-url", str(source / CV_ROOT), "--to", str(out))
    above = run_stage("commonvoice", "--source-url", str(source), "--to", str(out))

    # Then both reruns write nothing and say so (the clips' origins name the same files)
    assert first.code == 0 and again.code == 0, again.err
    assert len(assert_speech_layout(staged)) == 3
    assert "nothing changed: 7 clips already staged" in again.out
    assert above.code == 0, above.err
    assert files_under(out) == staged


def test_hostile_path_cells_are_refused_and_bad_rows_counted(run_stage, tmp_path):
    # Given a secret next to the release, and train.tsv rows whose path climbs out, is absolute, has a
    # folder or a backslash; plus an empty sentence, a short row, a repeated clip and a missing clip
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(mp3(666))
    hostile = [
        cv_row("eve", "../../../secret.mp3", "leak"),
        cv_row("eve", str(secret), "leak"),
        cv_row("eve", "sub/common_voice_en_0.mp3", "leak"),
        cv_row("eve", "..\\secret.mp3", "leak"),
    ]
    broken = [
        cv_row("fay", "common_voice_en_99.mp3", "   "),
        ["fay", "common_voice_en_1.mp3"],
        cv_row("fay", "common_voice_en_0.mp3", "again"),
        cv_row("fay", "common_voice_en_404.mp3", "not there"),
    ]
    source = write_files(tmp_path / "release", _release(train_tsv=TABLES["train.tsv"] + hostile + broken))
    out = tmp_path / "cv"

    # When it is staged
    result = run_stage("commonvoice", "--source-url", str(source), "--to", str(out))

    # Then nothing outside the release is read or written, the good clips are staged, and each bad row is
    # named with its line
    assert result.code == 0, result.err
    files = files_under(out)
    assert len(manifest(files)) == 7
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in {
        hashlib.sha256(d).hexdigest() for d in files.values()
    }
    assert "refused (unsafe name or link): 4" in result.out
    table = f"{CV_ROOT}train.tsv"
    assert (
        f"../../../secret.mp3: {table} line 6: path '../../../secret.mp3' is not a plain file name"
        in result.out
    )
    assert "bad rows (skipped): 3" in result.out
    assert f"{table} line 10: path 'common_voice_en_99.mp3': an empty transcription" in result.out
    assert f"{table} line 11: 2 field(s) where the header has 13" in result.out
    assert (
        f"{table} line 12: path 'common_voice_en_0.mp3': listed again (first on {table} line 2)" in result.out
    )
    assert f"{CV_ROOT}clips/common_voice_en_404.mp3: {table} line 13: listed but not in clips/" in result.out


def test_hostile_archive_members_are_refused_and_nothing_lands_outside(http_files, run_stage, tmp_path):
    # Given a release archive with members that climb out, are absolute, or are links to outside
    files = _release()
    files["../../evil.mp3"] = mp3(7)
    files["/tmp/evil-absolute.mp3"] = mp3(8)
    files[f"{CV_ROOT}clips/../../../../evil-deep.mp3"] = mp3(9)
    links = {f"{CV_ROOT}clips/common_voice_en_2.mp3": "/etc/passwd"}
    clean = {k: v for k, v in files.items() if not k.endswith(f"clips/{'common_voice_en_2.mp3'}")}
    http_files.files[ARCHIVE] = tar_gz(clean, links)
    out = tmp_path / "a" / "out"
    cache = tmp_path / "cache"

    # When it is staged (and staged again from the cached, unpacked copy)
    result = run_stage("commonvoice", "--source-url", http_files.url(ARCHIVE), "--to", str(out))
    again = run_stage("commonvoice", "--source-url", http_files.url(ARCHIVE), "--to", str(out))

    # Then no file named evil exists anywhere, the link was not followed (its clip is missing), and the
    # refusals are listed on both runs
    assert result.code == 0, result.err
    assert [p for p in tmp_path.rglob("*evil*")] == []
    assert not Path("/tmp/evil-absolute.mp3").exists()
    assert not any(p.is_symlink() for p in cache.rglob("*"))
    assert len(manifest(files_under(out))) == 6
    for run in (result, again):
        assert "refused (unsafe name or link): 4" in run.out
        assert "../../evil.mp3: archive member '../../evil.mp3' climbs out of the archive" in run.out
        assert "/tmp/evil-absolute.mp3: archive member '/tmp/evil-absolute.mp3' is absolute" in run.out
        assert "a link or special file in the archive; not unpacked" in run.out
        assert f"{CV_ROOT}clips/common_voice_en_2.mp3: {CV_ROOT}train.tsv line 4: listed but not" in run.out
    assert "using the copy unpacked in the cache" in again.err
    assert "nothing changed: 6 clips already staged" in again.out


def test_an_archive_in_s3_is_staged_into_s3_once(run_stage, s3):
    # Given a release archive in the bucket
    s3.put_object(Bucket=BUCKET, Key=f"raw/{ARCHIVE}", Body=tar_gz(_release()))
    dest = f"s3://{BUCKET}/datasets/cv-en/"

    # When it is staged into the bucket twice
    first = run_stage("commonvoice", "--source-url", f"s3://{BUCKET}/raw/{ARCHIVE}", "--to", dest)
    written = versions(s3, "datasets/cv-en/")
    again = run_stage("commonvoice", "--source-url", f"s3://{BUCKET}/raw/{ARCHIVE}", "--to", dest)

    # Then each clip, the three metadata files and the manifest were written once, and no more
    assert first.code == 0 and again.code == 0, again.err
    assert len(written) == 7 + 3 + 1 and set(written.values()) == {1}
    assert versions(s3, "datasets/cv-en/") == written


def test_a_folder_that_is_not_a_release_or_holds_two_is_a_one_line_error(run_stage, tmp_path):
    # Given an empty folder, and one holding two locales
    (tmp_path / "empty").mkdir()
    two = tmp_path / "two"
    write_files(two / "en", commonvoice_files({"train.tsv": []}, []))
    write_files(two / "fr", commonvoice_files({"train.tsv": []}, []))
    bad_header = write_files(tmp_path / "hdr", {"train.tsv": b"path\tsentence\nx.mp3\thi\n"})

    # When each is staged
    results = [
        run_stage("commonvoice", "--source-url", str(p), "--to", str(tmp_path / "o"))
        for p in (tmp_path / "empty", two, bad_header)
    ]

    # Then each stops with one line saying what was expected
    assert [r.code for r in results] == [2, 2, 2]
    lines = [r.err.strip().splitlines()[-1] for r in results]
    assert "has no train.tsv, dev.tsv, test.tsv; expected a Common Voice release" in lines[0]
    assert "holds several Common Voice releases or locales" in lines[1]
    assert lines[2] == (
        "error: train.tsv has no 'client_id' column; its columns are path, sentence; expected a "
        "tab-separated header naming client_id, path, sentence (a Common Voice release's table)"
    )

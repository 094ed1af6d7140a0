"""The rehearsal's speech data (tools/rehearse/speech.py): utterances espeak-ng speaks, with known transcripts,
the held-back sentences never spoken in training, the same files for the same seed."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common import contract
from tools.rehearse import speech


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / contract.METADATA_FILE).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_each_split_is_an_audiofolder_of_spoken_sentences_from_the_word_list(tmp_path):
    # When a small dataset is written
    summary = speech.write_speech_dataset(tmp_path, train=12, validation=4, test=4)

    # Then each split has its wav files and a metadata.csv naming each with its transcription and voice
    for split, count in (("train", 12), ("validation", 4), ("test", 4)):
        rows = _rows(tmp_path / split)
        assert len(rows) == count == summary["splits"][split]["utterances"]
        for row in rows:
            samples, rate = sf.read(tmp_path / split / row[contract.FILE_NAME_COLUMN])
            assert samples.ndim == 1 and rate > 8_000
            assert 0.3 < samples.shape[0] / rate < 10  # a few words, spoken
            assert np.abs(samples).max() > 0.1  # speech, not the noise floor alone
            assert set(row[contract.TRANSCRIPTION_COLUMN].split()) <= set(speech.WORDS)
            assert row[contract.SPEAKER_COLUMN] in speech.VOICES


def test_held_back_sentences_are_never_spoken_in_training():
    # When sentences are drawn for the three splits
    drawn = speech.split_sentences(np.random.default_rng(0), {"train": 400, "validation": 50, "test": 50})
    # Then no validation or test sentence is a training sentence, and held-back sentences are distinct
    train = set(drawn["train"])
    assert not train & set(drawn["validation"]) and not train & set(drawn["test"])
    assert not set(drawn["validation"]) & set(drawn["test"])
    assert len(set(drawn["test"])) == 50
    # And training still hears every word of the list
    assert {word for sentence in train for word in sentence.split()} == set(speech.WORDS)


def test_too_many_held_back_sentences_for_the_command_grammar_are_refused():
    with pytest.raises(ValueError, match="too few"):
        speech.split_sentences(np.random.default_rng(0), {"train": 10, "validation": 200, "test": 200})


def test_the_same_seed_writes_the_same_files(tmp_path):
    speech.write_speech_dataset(tmp_path / "a", seed=3, train=3, validation=1, test=1)
    speech.write_speech_dataset(tmp_path / "b", seed=3, train=3, validation=1, test=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_a_missing_espeak_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(speech.EspeakMissingError, match="apt-get install espeak-ng"):
        speech.require_espeak()

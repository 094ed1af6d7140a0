"""The sample speech dataset: spoken digit strings and short commands, synthesized by ``espeak-ng``.

Speech recognition needs audio whose transcript is known exactly; a formant synthesizer gives that without
a download or a licence question. Sentences come from a small fixed word list (the ten digits and a dozen
command words) in two shapes: digit strings ("three seven one nine") and commands ("turn left", "go back
now", "move up three", "stop"). Each utterance is spoken by one of several voice variants at its own speed,
pitch and word gap, with its own level and a faint noise floor, all drawn from the seed, so a seed always
writes the same files.

The held-back sentences are never spoken in training: the three splits have disjoint word *sequences* over
the same word list, so the test set measures recognizing words in new orders and voices, not recalling a
memorized utterance. Each split is an audiofolder: its wav files (espeak-ng's own 22.05 kHz; staging and
training resample) and ``metadata.csv`` with ``file_name,transcription,speaker``, the speaker being the
voice variant.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from common import contract

ESPEAK = "espeak-ng"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MOVES = ("turn", "go", "move")  # take a direction: "turn left", "go back now", "move up three"
DIRECTIONS = ("left", "right", "up", "down", "back", "forward")
HALTS = ("stop", "start")  # alone or with "now"
NOW = "now"
WORDS = (*DIGITS, *MOVES, *DIRECTIONS, *HALTS, NOW)
# espeak-ng voices and variants that ship with the Debian package (no mbrola): different accents, and
# male/female/klatt formant settings. An unknown variant would silently fall back to the default voice.
VOICES = (
    "en",
    "en-us",
    "en+m3",
    "en+f2",
    "en-us+m1",
    "en-us+f3",
    "en-gb-scotland+m4",
    "en-029+f4",
    "en-gb-x-rp+m7",
    "en-us+klatt",
)
SPEED_WPM = (130, 200)  # espeak-ng -s: words per minute
PITCH = (25, 75)  # espeak-ng -p: 0-99
WORD_GAP = (0, 3)  # espeak-ng -g: extra pause between words, in 10 ms units
DIGIT_SHARE = 0.6  # of the sentences, digit strings; the rest commands
DIGIT_COUNT = (2, 5)  # words in a digit string
SPLITS = ("train", "validation", "test")


class EspeakMissingError(RuntimeError):
    """``espeak-ng`` is not installed; the message says how to install it."""


def require_espeak() -> str:
    """The path of ``espeak-ng``, or ``EspeakMissingError`` saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakMissingError(
            f"the speech sample data is synthesized with {ESPEAK}, which is not on PATH: "
            f"install it (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)"
        )
    return path


def command_sentences() -> list[str]:
    """Every command sentence, in a fixed order: a move with a direction, alone, with "now" or with a
    digit (3 x 6 x 12), and each halt alone or with "now"."""
    sentences = []
    for move in MOVES:
        for direction in DIRECTIONS:
            sentences.append(f"{move} {direction}")
            sentences.append(f"{move} {direction} {NOW}")
            sentences.extend(f"{move} {direction} {digit}" for digit in DIGITS)
    for halt in HALTS:
        sentences.extend((halt, f"{halt} {NOW}"))
    return sentences


def _sentence(rng: np.random.Generator, commands: Sequence[str]) -> str:
    """One sentence: a digit string or a command, drawn with ``DIGIT_SHARE``."""
    if rng.random() < DIGIT_SHARE:
        count = int(rng.integers(DIGIT_COUNT[0], DIGIT_COUNT[1] + 1))
        return " ".join(DIGITS[i] for i in rng.integers(0, len(DIGITS), size=count))
    return str(commands[int(rng.integers(0, len(commands)))])


def split_sentences(rng: np.random.Generator, counts: dict[str, int]) -> dict[str, list[str]]:
    """``counts[split]`` sentences per split, the splits' word sequences disjoint.

    The held-back splits are drawn first, each sentence distinct (a test set of distinct sentences measures
    more); training then draws freely (a sentence may recur there, in another voice) from what is left.
    Every command sentence appears at most in one split, so a third of them at most go to the held-back
    splits, leaving training most of the command grammar.
    """
    commands = command_sentences()
    held = counts.get("validation", 0) + counts.get("test", 0)
    if held * (1 - DIGIT_SHARE) > len(commands) / 3:
        raise ValueError(
            f"{held} held-back sentences would leave training too few of {len(commands)} commands"
        )
    taken: set[str] = set()
    result: dict[str, list[str]] = {}
    for split in ("test", "validation"):
        chosen: list[str] = []
        while len(chosen) < counts.get(split, 0):
            sentence = _sentence(rng, commands)
            if sentence not in taken:
                taken.add(sentence)
                chosen.append(sentence)
        result[split] = chosen
    remaining = [sentence for sentence in commands if sentence not in taken]
    train: list[str] = []
    while len(train) < counts.get("train", 0):
        sentence = _sentence(rng, remaining)
        if sentence not in taken:
            train.append(sentence)
    result["train"] = train
    return result


def speak(
    text: str,
    *,
    voice: str,
    speed: int,
    pitch: int,
    word_gap: int = 0,
) -> tuple[np.ndarray, int]:
    """``text`` spoken by ``espeak-ng`` (argument list, no shell) as mono float32 samples and their rate."""
    run = subprocess.run(
        [
            require_espeak(),
            "-v",
            voice,
            "-s",
            str(speed),
            "-p",
            str(pitch),
            "-g",
            str(word_gap),
            "--stdout",
            text,
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if run.returncode != 0 or not run.stdout:
        raise RuntimeError(
            f"{ESPEAK} failed for {text!r} ({voice}): {run.stderr.decode(errors='replace')[-500:]}"
        )
    samples, rate = sf.read(io.BytesIO(run.stdout), dtype="float32")
    return (samples if samples.ndim == 1 else samples.mean(axis=1)), int(rate)


def utterance(rng: np.random.Generator, text: str) -> tuple[np.ndarray, int, str]:
    """``text`` in a voice, speed, pitch and word gap drawn from ``rng``, at a random level over a faint
    noise floor (a synthesizer's exact silence is unlike any microphone): samples, rate and the voice."""
    voice = str(VOICES[int(rng.integers(0, len(VOICES)))])
    speed = int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    gap = int(rng.integers(WORD_GAP[0], WORD_GAP[1] + 1))
    samples, rate = speak(text, voice=voice, speed=speed, pitch=pitch, word_gap=gap)
    level = rng.uniform(0.3, 0.9) / (float(np.abs(samples).max()) + 1e-9)
    noisy = samples * level + rng.uniform(0.0005, 0.003) * rng.standard_normal(samples.shape[0])
    return np.clip(noisy, -1.0, 1.0).astype(np.float32), rate, voice


def write_speech_dataset(
    root: Path, *, seed: int = 5, train: int = 400, validation: int = 40, test: int = 40
) -> dict:
    """``root/train``, ``root/validation`` and ``root/test``, each its wav files and ``metadata.csv``
    (``file_name,transcription,speaker``), with held-back sentences disjoint from training's.

    Returns a summary: per split its utterance count, distinct sentences, seconds of audio and speakers,
    and the word list.
    """
    require_espeak()
    rng = np.random.default_rng(seed)
    sentences = split_sentences(rng, {"train": train, "validation": validation, "test": test})
    summary: dict = {"seed": seed, "words": sorted(WORDS), "splits": {}}
    for split in SPLITS:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        seconds, speakers = 0.0, set()
        with (folder / contract.METADATA_FILE).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [contract.FILE_NAME_COLUMN, contract.TRANSCRIPTION_COLUMN, contract.SPEAKER_COLUMN]
            )
            for i, text in enumerate(sentences[split]):
                samples, rate, voice = utterance(rng, text)
                name = f"{split}-{i:04d}.wav"
                sf.write(folder / name, samples, rate, subtype="PCM_16")
                writer.writerow([name, text, voice])
                seconds += samples.shape[0] / rate
                speakers.add(voice)
        summary["splits"][split] = {
            "utterances": len(sentences[split]),
            "sentences": len(set(sentences[split])),
            "seconds": round(seconds, 1),
            "speakers": sorted(speakers),
        }
    return summary

"""The audiofolder loader: scanning, skipping, the validation hold-out and the evaluation windows."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ml_code import audio, audiofolder
from tests.training.synthetic import make_audiofolder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_audiofolder(tmp_path_factory.mktemp("data"), per_class=5, seed=3, broken=True)


def test_scan_labels_clips_by_folder_and_decodes_every_format_to_16k_mono(folder):
    # When the folder is scanned
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(2**30))
    # Then labels are the folder names and each usable clip is decoded, mono, at 16 kHz
    assert split.counts() == {"high": 5, "low": 5, "mid": 5, "noise": 5}
    assert {clip.path.suffix for clip in split.clips} == {".wav", ".flac", ".ogg"}
    for clip in split.clips:
        assert clip.samples is not None and clip.samples.ndim == 1 and clip.samples.dtype == np.float32
        assert clip.num_samples == clip.samples.shape[0]
        assert clip.num_samples == pytest.approx(audio.probe(clip.path).duration * 16_000, abs=2)
    # And the bad files are listed with their reasons, the README ignored
    assert sorted(s.path for s in split.skipped) == ["low/corrupt.wav", "noise/empty.flac"]


def test_clips_beyond_the_cache_budget_are_decoded_on_read(folder):
    # Given no room for decoded audio
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(0))
    # When a clip is read
    clip = split.clips[0]
    # Then it is decoded from its file, identical to the cached decoding
    assert clip.samples is None
    np.testing.assert_array_equal(clip.load(), audio.decode(clip.path))


def test_hold_out_is_stratified_disjoint_and_reproducible(folder):
    # Given 5 clips per label
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(0))
    # When 20% is held out twice with the same seed
    train, validation = audiofolder.stratified_split(split, 0.2, seed=42)
    _, again = audiofolder.stratified_split(split, 0.2, seed=42)
    # Then each label gives one clip, never the same clip to both sides, the same clips each time
    assert validation.counts() == {"high": 1, "low": 1, "mid": 1, "noise": 1}
    assert train.counts() == {"high": 4, "low": 4, "mid": 4, "noise": 4}
    assert not {c.path for c in train.clips} & {c.path for c in validation.clips}
    assert [c.path for c in validation.clips] == [c.path for c in again.clips]


def test_windows_cover_each_clip_as_the_audio_module_windows_it(folder):
    # Given clips of 0.5 to 2.6 s and a 1 s window with half a window of hop
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(2**30))
    label2id = {label: i for i, label in enumerate(split.labels)}
    windows = audiofolder.Windows(split.clips, label2id, 16_000, 8_000, featurize=lambda x: x)
    # When every window is read
    rows = [windows[i] for i in range(len(windows))]
    # Then clip by clip they are exactly audio.windows of that clip, labelled with the clip's label
    for ci, clip in enumerate(split.clips):
        mine = np.stack([rows[i]["input_values"] for i in np.flatnonzero(windows.clip_ids == ci)])
        np.testing.assert_array_equal(mine, audio.windows(clip.load(), 16_000, 8_000))
        assert {rows[i]["labels"] for i in np.flatnonzero(windows.clip_ids == ci)} == {label2id[clip.label]}
    assert len(windows) > len(split.clips)


def test_random_crops_have_the_window_length_and_vary_between_epochs(folder):
    # Given a clip longer than the crop
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(2**30))
    long_clip = next(c for c in split.clips if c.num_samples > 24_000)
    crops = audiofolder.RandomCrops([long_clip], {long_clip.label: 0}, 8_000, featurize=lambda x: x)
    # When it is read twice
    first, second = crops[0]["input_values"], crops[0]["input_values"]
    # Then both crops are window-sized pieces of it, from different places
    assert first.shape == second.shape == (8_000,)
    assert not np.array_equal(first, second)


def _silence(path, sample_rate: int, channels: int, seconds: float) -> None:
    """A silent FLAC (or WAV past FLAC's 8 channels), written in blocks: long ones stay small."""
    frames = round(seconds * sample_rate)
    block = np.zeros((min(frames, 4_000_000 // channels + 1), channels), dtype=np.int16)
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as out:
        for start in range(0, frames, block.shape[0]):
            out.write(block[: frames - start])


@pytest.fixture(scope="module")
def oversized(tmp_path_factory):
    """Two usable clips per label, and one clip over each default limit."""
    root = make_audiofolder(tmp_path_factory.mktemp("oversized"), per_class=2, seed=5, labels=("low", "high"))
    _silence(root / "low" / "long.flac", 8_000, 1, 700.0)  # longer than 600 s
    _silence(root / "high" / "wide.flac", 96_000, 8, 120.0)  # 92 M samples: over 800 s of 48 kHz stereo
    _silence(root / "high" / "many.wav", 16_000, 17, 0.5)  # more than 16 channels
    return root


def test_clips_over_the_default_limits_are_skipped_like_corrupt_ones(oversized):
    # When the folder is scanned with the default limits
    split = audiofolder.scan("train", oversized, audiofolder.DecodeCache(2**30))

    # Then the usable clips are kept and each oversized one is skipped, saying which limit it broke
    assert split.counts() == {"high": 2, "low": 2}
    reasons = {s.path: s.reason for s in split.skipped}
    assert sorted(reasons) == ["high/many.wav", "high/wide.flac", "low/long.flac"]
    assert "longer than the limit of 600 s" in reasons["low/long.flac"]
    assert "92,160,000 samples" in reasons["high/wide.flac"]
    assert "17 channels" in reasons["high/many.wav"]
    assert "3 skipped" in split.describe()


def test_the_scan_limits_can_be_raised(oversized):
    # When the folder is scanned with a longer clip limit
    split = audiofolder.scan(
        "train", oversized, audiofolder.DecodeCache(0), limits=audio.Limits.default(max_seconds=800.0)
    )

    # Then the long clip is kept
    assert "low/long.flac" not in {s.path for s in split.skipped}
    assert split.counts() == {"high": 2, "low": 3}


def test_training_scans_its_splits_with_max_clip_seconds(oversized, tmp_path):
    # Given the training arguments with a longer clip limit
    from ml_code import train

    data = train.DataArguments(max_clip_seconds=800.0, decoded_cache_gb=0.0)
    paths = train.Paths(
        train=oversized, validation=None, test=None, model=tmp_path, output=tmp_path, checkpoints=None
    )

    # When the splits are loaded
    kept, held_out, _ = train.load_splits(paths, data, seed=0)

    # Then the long clip is used, and the clips over the other limits are still skipped
    assert sorted(s.path for s in kept.skipped) == ["high/many.wav", "high/wide.flac"]
    assert sum(kept.counts().values()) + sum(held_out.counts().values()) == 5

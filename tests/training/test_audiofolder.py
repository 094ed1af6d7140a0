"""The audiofolder loader: scanning, skipping, the validation hold-out and the evaluation windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common import audio
from standins.synthetic import make_audiofolder
from training import audiofolder, augment


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
    windows = audiofolder.Windows(split.clips, label2id.__getitem__, 16_000, 8_000, featurize=lambda x: x)
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
    crops = audiofolder.RandomCrops(
        [long_clip], {long_clip.label: 0}.__getitem__, 8_000, featurize=lambda x: x
    )
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
    from training import train

    data = train.DataArguments(max_clip_seconds=800.0, decoded_cache_gb=0.0)
    paths = train.Paths(
        train=oversized, validation=None, test=None, model=tmp_path, output=tmp_path, checkpoints=None
    )

    # When the splits are loaded
    kept, held_out, _ = train.load_splits(paths, data, seed=0)

    # Then the long clip is used, and the clips over the other limits are still skipped
    assert sorted(s.path for s in kept.skipped) == ["high/many.wav", "high/wide.flac"]
    assert sum(kept.counts().values()) + sum(held_out.counts().values()) == 5


# --- native lengths, filters, background clips ------------------------------------------------------


def _clip(samples: np.ndarray, label: str = "a") -> audiofolder.Clip:
    return audiofolder.Clip(Path(f"{label}.wav"), label, samples.shape[0], samples)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [(8_000, 8_000), (800, audio.MIN_MODEL_SAMPLES), (1, audio.MIN_MODEL_SAMPLES), (40_000, 16_000)],
    ids=["half-a-window", "under-the-minimum", "one-sample", "longer"],
)
def test_crops_and_windows_keep_a_short_clips_own_length(samples, expected):
    # Given a clip of some length and a 1 s window
    clip = _clip(np.linspace(-1, 1, samples, dtype=np.float32))
    crops = audiofolder.RandomCrops([clip], {"a": 0}.__getitem__, 16_000, featurize=lambda x: x)
    windows = audiofolder.Windows([clip], {"a": 0}.__getitem__, 16_000, 8_000, featurize=lambda x: x)
    # When it is cropped for training and windowed for evaluation
    crop, first_window = crops[0]["input_values"], windows[0]["input_values"]
    # Then a shorter clip keeps its own length (padded only up to the model's minimum), as served
    assert crop.shape == first_window.shape == (expected,)
    if samples < expected:
        np.testing.assert_array_equal(first_window[samples:], 0)


def test_a_seed_reproduces_every_augmented_crop():
    # Given augmented random crops of a long clip
    clip = _clip(np.random.default_rng(0).standard_normal(48_000).astype(np.float32))
    crops = audiofolder.RandomCrops(
        [clip],
        {"a": 0}.__getitem__,
        16_000,
        featurize=lambda x: x,
        augment=augment.Augmentation(noise_probability=1.0),
    )

    def epoch(seed: int) -> np.ndarray:
        torch.manual_seed(seed)  # what the Trainer's set_seed does
        return np.stack([crops[0]["input_values"] for _ in range(3)])

    # When an epoch is drawn twice with one seed and once with another
    # Then the same seed gives the same crops, another seed other crops
    np.testing.assert_array_equal(epoch(7), epoch(7))
    assert not np.array_equal(epoch(7), epoch(8))


def test_clips_shorter_than_min_clip_seconds_are_skipped_and_counted_by_kind(folder):
    # When the folder (clips of 0.5 to 2.6 s, a corrupt and an empty file) is scanned with a 1.5 s minimum
    split = audiofolder.scan("train", folder, audiofolder.DecodeCache(0), min_seconds=1.5)
    # Then every kept clip lasts at least 1.5 s; the short ones are listed as too short, with the argument
    assert all(clip.num_samples >= 1.5 * 16_000 for clip in split.clips)
    short = [s for s in split.skipped if s.kind == audiofolder.TOO_SHORT]
    assert short and all("shorter than 1.5 s (--min_clip_seconds)" in s.reason for s in short)
    counts = split.skipped_counts()
    assert counts == {"corrupt": 2, "too_short": len(short)}
    assert f"{len(split.skipped)} skipped (2 corrupt, {len(short)} too short)" in split.describe()


def test_clips_over_the_limits_are_counted_by_the_limit_they_broke(oversized):
    # When the folder is scanned with the default limits
    split = audiofolder.scan("train", oversized, audiofolder.DecodeCache(0))
    # Then the long clip is too long (naming --max_clip_seconds), the others too large
    kinds = {s.path: s.kind for s in split.skipped}
    assert kinds == {"low/long.flac": "too_long", "high/wide.flac": "too_large", "high/many.wav": "too_large"}
    assert "(--max_clip_seconds)" in next(s.reason for s in split.skipped if s.kind == "too_long")


def test_training_scans_every_split_with_min_clip_seconds(folder, tmp_path):
    # Given the training arguments with a minimum length, and a test folder
    from training import train

    data = train.DataArguments(min_clip_seconds=1.5, decoded_cache_gb=0.0)
    paths = train.Paths(
        train=folder, validation=None, test=folder, model=tmp_path, output=tmp_path, checkpoints=None
    )
    # When the splits are loaded
    kept, held_out, test = train.load_splits(paths, data, seed=0)
    # Then no split holds a clip shorter than the minimum
    for split in (kept, held_out, test):
        assert split is not None
        assert all(clip.num_samples >= 1.5 * 16_000 for clip in split.clips)
    assert test is not None and test.skipped_counts()["too_short"] > 0


def test_background_clips_are_read_from_any_layout(tmp_path):
    # Given background clips at the top, in nested folders, one corrupt, one hidden, one not audio
    root = tmp_path / "noise"
    (root / "street" / "night").mkdir(parents=True)
    sf.write(root / "hum.wav", np.zeros(8_000, dtype=np.float32) + 0.1, 8_000)
    sf.write(root / "street" / "night" / "cars.flac", np.full(16_000, 0.2, dtype=np.float32), 16_000)
    (root / "street" / "broken.wav").write_bytes(b"RIFF....WAVE")
    sf.write(root / ".hidden.wav", np.zeros(100, dtype=np.float32), 16_000)
    (root / "README.md").write_text("not audio")
    # When they are scanned as background clips
    noise = audiofolder.scan("noise", root, audiofolder.DecodeCache(2**20), labelled=False)
    # Then every readable audio file is a clip (at 16 kHz), the broken one is skipped
    assert sorted(c.path.name for c in noise.clips) == ["cars.flac", "hum.wav"]
    assert [s.path for s in noise.skipped] == ["street/broken.wav"]
    assert {c.num_samples for c in noise.clips} == {16_000}
    assert "noise: 2 clips (2.0 s) from" in noise.describe()


# --- batches ---------------------------------------------------------------------------------------


def _examples(*lengths: int) -> list[dict]:
    return [
        {"input_values": np.arange(1, n + 1, dtype=np.float32), "labels": i} for i, n in enumerate(lengths)
    ]


def test_a_batch_is_padded_to_its_longest_input_with_a_mask_when_the_model_takes_one():
    # When three inputs of different lengths are collated for a model with an attention mask
    batch = audiofolder.PadBatch(padding_value=0.0, attention_mask=True)(_examples(3, 5, 2))
    # Then they are padded with zeros to the longest, and the mask marks the real samples
    assert batch["input_values"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5], [1, 2, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [0, 1, 2]
    assert batch[audiofolder.INPUT_LENGTHS].tolist() == [3, 5, 2]


def test_without_a_mask_a_batch_pads_by_repeating_each_input():
    # When the same inputs are collated for a model without an attention mask (wav2vec2-base)
    batch = audiofolder.PadBatch(padding_value=0.0, attention_mask=False, wrap=True)(_examples(3, 5, 2))
    # Then each shorter input is repeated up to the longest, and no mask is passed
    assert batch["input_values"].tolist() == [[1, 2, 3, 1, 2], [1, 2, 3, 4, 5], [1, 2, 1, 2, 1]]
    assert "attention_mask" not in batch
    assert batch[audiofolder.INPUT_LENGTHS].tolist() == [3, 5, 2]


def test_evaluation_scores_padded_batches_as_the_endpoint_runs_each_input_unpadded(tmp_path):
    # Given a random tiny model without an attention mask, and evaluation windows of several lengths
    from transformers import AutoConfig, AutoModelForAudioClassification, TrainingArguments

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(
        Path(audiofolder.__file__).parent / "configs" / "tiny-wav2vec2", num_labels=3
    )
    model = AutoModelForAudioClassification.from_config(config).eval()
    rng = np.random.default_rng(0)
    clips = [_clip(rng.standard_normal(n).astype(np.float32)) for n in (5_000, 40_000, 9_000, 3_000)]
    windows = audiofolder.Windows(clips, {"a": 0}.__getitem__, 16_000, 8_000, featurize=audio.normalize)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to="none", dataloader_pin_memory=False
    )
    collator = audiofolder.PadBatch(wrap=True)
    trainer = audiofolder.AudioTrainer(model=model, args=args, data_collator=collator)

    # When the Trainer predicts them in padded batches of 4
    logits = trainer.predict(windows).predictions

    # Then every window's logits are those of the window run alone, unpadded, as the endpoint runs it
    with torch.no_grad():
        alone = [
            model(input_values=torch.from_numpy(windows[i]["input_values"][None])).logits[0]
            for i in range(len(windows))
        ]
        padded = model(input_values=collator([windows[i] for i in range(4)])["input_values"]).logits
    np.testing.assert_allclose(logits, torch.stack(alone).numpy(), atol=1e-5)
    # (which a padded batch run as is would not give)
    assert not np.allclose(padded.numpy(), logits[:4], atol=1e-3)


def test_evaluation_keeps_the_datasets_order_when_training_batches_are_grouped_by_length(tmp_path):
    # Given length-grouped training batches (speech recognition's default), which the Trainer would also apply
    # to evaluation sets, shuffled by length: predictions would no longer line up with the clips' targets
    from transformers import AutoConfig, AutoModelForAudioClassification, TrainingArguments

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(
        Path(audiofolder.__file__).parent / "configs" / "tiny-wav2vec2", num_labels=3
    )
    model = AutoModelForAudioClassification.from_config(config).eval()
    rng = np.random.default_rng(1)
    lengths = [int(n) for n in rng.permutation(np.arange(12)) * 1_500 + 2_000]
    clips = [_clip(rng.standard_normal(n).astype(np.float32)) for n in lengths]
    windows = audiofolder.Windows(clips, {"a": 0}.__getitem__, 40_000, 20_000, featurize=audio.normalize)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        train_sampling_strategy="group_by_length",
        report_to="none",
        dataloader_pin_memory=False,
    )
    trainer = audiofolder.AudioTrainer(model=model, args=args, data_collator=audiofolder.PadBatch(wrap=False))

    # When the Trainer predicts them
    logits = trainer.predict(windows).predictions

    # Then the i-th prediction is the i-th window's
    with torch.no_grad():
        alone = [
            model(input_values=torch.from_numpy(windows[i]["input_values"][None])).logits[0]
            for i in range(len(windows))
        ]
    np.testing.assert_allclose(logits, torch.stack(alone).numpy(), atol=1e-5)

"""Training-time augmentation: each transform does what it says, and a seed reproduces it exactly."""

from __future__ import annotations

import numpy as np
import pytest

from training import augment

SR = 16_000


def _tone(seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_gain_scales_by_a_random_amount_within_the_range_and_a_seed_repeats_it():
    # Given a tone
    clean = _tone()
    # When it is scaled with +/- 6 dB, many times and then twice with one seed
    ratios = [augment.gain(clean, _rng(seed), 6.0)[100] / clean[100] for seed in range(50)]
    # Then every gain is within the range, they vary, and a seed gives the same gain again
    db = 20 * np.log10(np.abs(ratios))
    assert db.min() >= -6.0001 and db.max() <= 6.0001 and db.std() > 1.0
    np.testing.assert_array_equal(augment.gain(clean, _rng(3), 6.0), augment.gain(clean, _rng(3), 6.0))


def test_time_shift_rotates_by_at_most_the_limit_and_a_seed_repeats_it():
    # Given a ramp, so that every rotation is recognisable
    clean = np.arange(SR, dtype=np.float32)
    for seed in range(20):
        # When it is shifted by up to 0.25 s
        shifted = augment.time_shift(clean, _rng(seed), SR // 4)
        # Then it is the same samples rotated by at most that much
        k = int(np.argmin(shifted))  # where sample 0 went
        offset = k if k <= SR // 2 else k - SR
        assert abs(offset) <= SR // 4
        np.testing.assert_array_equal(shifted, np.roll(clean, offset))
    np.testing.assert_array_equal(
        augment.time_shift(clean, _rng(5), 4000), augment.time_shift(clean, _rng(5), 4000)
    )


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_white_noise_is_added_at_the_snr_asked_for(snr_db):
    # Given a tone
    clean = _tone()
    # When white noise is added at a given SNR
    noisy = augment.white_noise(clean, _rng(1), snr_db)
    # Then the added part is at that SNR, and a seed repeats it
    assert _snr_db(clean, noisy) == pytest.approx(snr_db, abs=1e-3)
    np.testing.assert_array_equal(noisy, augment.white_noise(clean, _rng(1), snr_db))
    assert noisy.dtype == np.float32


def test_background_is_mixed_at_the_snr_asked_for_looped_when_shorter():
    # Given a 1 s tone and a 0.3 s background clip
    clean = _tone()
    background = np.random.default_rng(0).standard_normal(round(0.3 * SR)).astype(np.float32)
    # When a piece of the background as long as the tone is mixed in at 5 dB
    piece = augment.background_piece(background, clean.shape[0], _rng(2))
    mixed = augment.mix_at_snr(clean, piece, 5.0)
    # Then the piece is the background looped from some offset, and it is mixed in at 5 dB
    start = int(np.flatnonzero(background == piece[0])[0])
    np.testing.assert_array_equal(piece, np.resize(np.roll(background, -start), clean.shape[0]))
    assert _snr_db(clean, mixed) == pytest.approx(5.0, abs=1e-3)


def test_a_silent_crop_gets_no_noise():
    # Given silence (no level to set noise against)
    silence = np.zeros(SR, dtype=np.float32)
    # When noise is added / Then it stays silent
    np.testing.assert_array_equal(augment.white_noise(silence, _rng(0), 10.0), silence)


def test_the_augmentation_is_deterministic_with_a_seed_and_leaves_its_input_alone():
    # Given every transform on, with a background clip, and a crop
    background = np.random.default_rng(9).standard_normal(SR).astype(np.float32)
    augmentation = augment.Augmentation(
        gain_db=6.0, noise_probability=1.0, background_probability=1.0, background=[lambda: background]
    )
    clean = _tone()
    before = clean.copy()
    # When it is augmented twice with one seed, and with other seeds
    first, again = augmentation(clean, _rng(42)), augmentation(clean, _rng(42))
    others = [augmentation(clean, _rng(seed)) for seed in range(5)]
    # Then one seed gives identical crops, other seeds other crops, all as long, the input untouched
    np.testing.assert_array_equal(first, again)
    assert all(not np.array_equal(first, other) for other in others)
    assert first.shape == clean.shape and first.dtype == np.float32
    np.testing.assert_array_equal(clean, before)


def test_each_transform_can_be_turned_off():
    # Given an augmentation with every transform off
    nothing = augment.Augmentation(
        gain_db=0.0, noise_probability=0.0, background_probability=0.0, time_shift_seconds=0.0
    )
    clean = _tone()
    # When it runs / Then the crop is unchanged (and a copy)
    out = nothing(clean, _rng(0))
    np.testing.assert_array_equal(out, clean)
    assert out is not clean


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_noise_and_background_are_applied_with_their_probability(probability):
    # Given only background mixing, with a given probability
    background = np.ones(SR, dtype=np.float32)
    only_background = augment.Augmentation(
        gain_db=0.0,
        noise_probability=0.0,
        background_probability=probability,
        time_shift_seconds=0.0,
        background=[lambda: background],
    )
    clean = _tone()
    # When 200 crops are augmented
    changed = np.mean([not np.array_equal(only_background(clean, _rng(s)), clean) for s in range(200)])
    # Then about that share of them changed
    assert changed == pytest.approx(probability, abs=0.1)


@pytest.mark.parametrize(
    "settings",
    [{"noise_probability": 1.5}, {"background_probability": -0.1}, {"gain_db": -1.0}, {"min_snr_db": 50.0}],
)
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        augment.Augmentation(**settings)

"""How train.py sets the model up: whether the feature encoder trains, and how inputs are batched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForAudioClassification, Wav2Vec2FeatureExtractor

import tasks
from common import audio
from training import train

TINY_CONFIG = Path(train.__file__).parent / "configs" / "tiny-wav2vec2"
LABELS = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("requested", "pretrained", "frozen"),
    [(None, True, True), (None, False, False), (True, False, True), (False, True, False)],
)
def test_freeze_decision_follows_the_weights_unless_the_flag_says_otherwise(requested, pretrained, frozen):
    # When the decision is taken / Then an explicit flag wins, else only pretrained weights are frozen
    decided, reason = train.decide_freeze(requested, pretrained)
    assert decided is frozen
    assert ("--freeze_feature_encoder" in reason) is (requested is not None)


def _encoder_trains(loaded: train.LoadedModel) -> bool:
    encoder = loaded.model.wav2vec2.feature_extractor
    return all(parameter.requires_grad for parameter in encoder.parameters())


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    """A folder with weights, as a downloaded checkpoint has."""
    path = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    AutoModelForAudioClassification.from_config(AutoConfig.from_pretrained(TINY_CONFIG)).save_pretrained(path)
    shutil.copy(TINY_CONFIG / "preprocessor_config.json", path)
    return path


@pytest.mark.parametrize(
    ("flag", "trains"), [([], True), (["--freeze_feature_encoder", "true"], False)], ids=["default", "flag"]
)
def test_a_random_init_model_trains_its_feature_encoder_unless_told_to_freeze_it(flag, trains, caplog):
    # Given the config-only tiny model (random weights)
    model_args = train.parse_arguments(["--model_name_or_path", str(TINY_CONFIG), *flag])[0]
    # When it is loaded
    with caplog.at_level("INFO", logger=train.logger.name):
        loaded = train.load_model(model_args, LABELS, tasks.load(None))
    # Then its feature encoder trains by default, and the log says why
    assert not loaded.pretrained
    assert _encoder_trains(loaded) is trains and loaded.frozen is not trains
    expected = "random weights" if not flag else "--freeze_feature_encoder true"
    assert any(
        expected in record.getMessage() and "feature encoder" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize(
    ("flag", "trains"), [([], False), (["--freeze_feature_encoder", "false"], True)], ids=["default", "flag"]
)
def test_a_pretrained_model_freezes_its_feature_encoder_unless_told_to_train_it(pretrained_dir, flag, trains):
    # Given a checkpoint with weights
    model_args = train.parse_arguments(["--model_name_or_path", str(pretrained_dir), *flag])[0]
    # When it is loaded
    loaded = train.load_model(model_args, LABELS, tasks.load(None))
    # Then its feature encoder is frozen by default, trained when the flag says so
    assert loaded.pretrained
    assert _encoder_trains(loaded) is trains


def test_the_tiny_config_pads_by_repeating_without_a_mask_and_normalizes_as_serving_does():
    # Given the tiny config's feature extractor (return_attention_mask false) and model (group norm)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(TINY_CONFIG)
    config = AutoConfig.from_pretrained(TINY_CONFIG)
    # When train.py decides how inputs become batches
    featurize, collator, how = train.model_inputs(extractor, config)
    # Then there is no mask, shorter inputs are repeated, and features are the audio module's
    assert (collator.attention_mask, collator.wrap) == (False, True)
    assert "without a mask" in how and "return_attention_mask is false" in how
    assert featurize == audio.Features(do_normalize=True)


@pytest.mark.parametrize(("norm", "mask"), [("layer", True), ("group", False)])
def test_a_mask_is_passed_only_when_the_extractor_asks_and_the_encoder_is_not_group_normalized(norm, mask):
    # Given an extractor that returns attention masks (as wav2vec2-large-lv60's does)
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    config = AutoConfig.from_pretrained(TINY_CONFIG, feat_extract_norm=norm)
    # When train.py decides / Then a mask goes with zero padding, except for a group-norm encoder
    _, collator, how = train.model_inputs(extractor, config)
    assert (collator.attention_mask, collator.wrap) == (mask, not mask)
    assert ("group-normalized" in how) is (not mask)

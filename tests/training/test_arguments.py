"""train.py's arguments: SageMaker hyperparameter strings, defaults and where paths come from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tasks
from common import contract
from training import health, train

SM_ENV = {
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
}


def test_sagemaker_hyperparameter_strings_parse_into_typed_arguments():
    # Given the hyperparameters the launcher passes, all strings, booleans as true/false
    argv = [
        "--model_name_or_path", "facebook/wav2vec2-base",
        "--num_train_epochs", "4",
        "--learning_rate", "3e-05",
        "--per_device_train_batch_size", "8",
        "--max_length_seconds", "2.5",
        "--freeze_feature_encoder", "false",
        "--export_onnx", "True",
    ]  # fmt: skip
    # When they are parsed
    model, data, training, _ = train.parse_arguments(argv)
    # Then each has its type
    assert model.model_name_or_path == "facebook/wav2vec2-base"
    assert (model.freeze_feature_encoder, model.export_onnx) == (False, True)
    assert data.max_length_seconds == 2.5
    assert (training.num_train_epochs, training.learning_rate) == (4.0, 3e-5)
    assert training.per_device_train_batch_size == 8


def test_defaults_evaluate_each_epoch_and_keep_the_best_macro_f1():
    # When nothing is passed
    model, data, training, health_args = train.parse_arguments([])
    # Then the defaults are the documented ones
    assert model.model_name_or_path == "facebook/wav2vec2-base"
    assert model.freeze_feature_encoder is None  # decided by the weights: see test_freeze_decision
    assert model.early_stopping_patience == 0
    assert data.max_length_seconds == 5.0
    assert (data.min_clip_seconds, data.max_clip_seconds) == (0.0, 600.0)
    assert data.augment is True
    assert (data.gain_db, data.noise_probability, data.background_probability) == (6.0, 0.5, 0.5)
    assert (data.min_snr_db, data.max_snr_db, data.time_shift_seconds) == (10.0, 40.0, 0.5)
    assert (training.num_train_epochs, training.learning_rate, training.seed) == (4.0, 3e-5, 42)
    assert training.eval_strategy == "epoch" and training.save_strategy == "epoch"
    assert training.load_best_model_at_end and training.metric_for_best_model == "f1"
    assert training.greater_is_better is True
    assert training.report_to == ["tensorboard"]  # dropped with a warning where tensorboard is missing
    assert getattr(training, "warmup_ratio", None) == 0.1 or training.warmup_steps == 0.1
    # And the training-health rules' parameters are Debugger's defaults where they apply (docs/training.md)
    assert health_args == health.HealthArguments()
    assert (health_args.loss_not_decreasing_windows, health_args.loss_not_decreasing_min_percent) == (5, 0.1)
    assert (health_args.overfit_evaluations, health_args.overfit_min_ratio) == (3, 0.1)
    assert (health_args.overtraining_patience, health_args.vanishing_gradient_norm) == (3, 1e-7)


def test_warmup_ratio_is_accepted_on_every_transformers_version():
    # When the transformers-4 name is passed
    training = train.parse_arguments(["--warmup_ratio", "0.25"])[2]
    # Then it lands wherever this transformers version keeps the ratio
    assert getattr(training, "warmup_ratio", None) == 0.25 or training.warmup_steps == 0.25


def test_paths_come_from_the_sagemaker_environment():
    # Given the SageMaker environment and no path arguments
    _, data, training, _ = train.parse_arguments([])
    # When the paths are resolved
    paths = train.resolve_paths(data, training, SM_ENV)
    # Then each comes from its variable, and a missing validation channel stays missing
    assert paths.train == Path("/opt/ml/input/data/train")
    assert paths.test == Path("/opt/ml/input/data/test")
    assert paths.validation is None
    assert (paths.model, paths.output) == (Path("/opt/ml/model"), Path("/opt/ml/output/data"))


def test_command_line_paths_win_over_the_environment(tmp_path):
    # Given both
    _, data, training, _ = train.parse_arguments(
        ["--train_dir", "mine/train", "--model_dir", "mine/model", "--checkpoint_dir", str(tmp_path)]
    )
    # When the paths are resolved
    paths = train.resolve_paths(data, training, SM_ENV)
    # Then the arguments win
    assert (paths.train, paths.model, paths.checkpoints) == (Path("mine/train"), Path("mine/model"), tmp_path)
    assert paths.output == Path("/opt/ml/output/data")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SM_CHANNEL_TRAIN", "pass --train_dir or set SM_CHANNEL_TRAIN"),
        ("SM_MODEL_DIR", "pass --model_dir or set SM_MODEL_DIR"),
        ("SM_OUTPUT_DATA_DIR", "pass --output_data_dir or set SM_OUTPUT_DATA_DIR"),
    ],
)
def test_a_missing_required_path_names_the_argument_and_the_variable(missing, message):
    # Given an environment without one required path
    env = {key: value for key, value in SM_ENV.items() if key != missing}
    _, data, training, _ = train.parse_arguments([])
    # When / Then
    with pytest.raises(train.TrainingInputError, match=message):
        train.resolve_paths(data, training, env)


@pytest.mark.parametrize("seconds", ["0", "0.01", "-1"])
def test_a_window_shorter_than_the_feature_encoder_needs_is_refused(seconds):
    with pytest.raises(train.TrainingInputError, match=r"--max_length_seconds must be at least 0\.1"):
        train.parse_arguments(["--max_length_seconds", seconds])


SAMPLE = {"bool": "false", "float": "0.25", "int": "3", "model": "configs/tiny-wav2vec2"}
# A value of the argument's kind that is valid on its own, where SAMPLE's is not (the lowest SNR is 10 dB).
SAMPLE_FOR = {"max_snr_db": "45"}


@pytest.mark.parametrize("name", sorted(contract.EVENT_HYPERPARAMETERS))
def test_every_hyperparameter_an_event_may_set_is_an_argument_of_train_py(name):
    # Given a name the launcher lets an event set, and a value of its kind
    kind = contract.EVENT_HYPERPARAMETERS[name][0]
    text = SAMPLE_FOR.get(name, SAMPLE[kind])
    # When train.py parses it as the toolkit passes it
    parsed = train.parse_arguments([f"--{name}", text])
    # Then one of its argument dataclasses holds it, with that kind
    target = "warmup_steps" if name == "warmup_ratio" and not hasattr(parsed[2], "warmup_ratio") else name
    (value,) = [getattr(args, target) for args in parsed if hasattr(args, target)]
    expected = {"bool": False, "float": 0.25, "int": 3, "model": "configs/tiny-wav2vec2"}[kind]
    assert value == (float(text) if name in SAMPLE_FOR else expected)


@pytest.mark.parametrize(
    "name",
    sorted(n for n, (kind, _, _) in contract.EVENT_HYPERPARAMETERS.items() if kind in ("int", "float")),
)
def test_every_bound_an_event_may_reach_is_accepted_by_train_py(name):
    # Given the lowest and the highest value the launcher lets an event set
    kind, low, high = contract.EVENT_HYPERPARAMETERS[name]
    partner = {"min_snr_db": "--max_snr_db", "max_snr_db": "--min_snr_db"}
    for bound in (low, high):
        argv = [f"--{name}", str(int(bound) if kind == "int" else bound)]
        if name in partner:  # the other end of the SNR range, so that the range is not upside down
            argv += [partner[name], str(bound)]
        # When train.py parses it / Then it is accepted
        train.parse_arguments(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min_clip_seconds", "-1"], "--min_clip_seconds must be at least 0 and below --max_clip_seconds"),
        (["--min_clip_seconds", "700"], "--min_clip_seconds must be at least 0 and below --max_clip_seconds"),
        (["--noise_probability", "1.5"], "--noise_probability must be between 0 and 1"),
        (["--background_probability", "-0.1"], "--background_probability must be between 0 and 1"),
        (["--gain_db", "-3"], "--gain_db must not be negative"),
        (["--time_shift_seconds", "-1"], "--time_shift_seconds must not be negative"),
        (["--min_snr_db", "30", "--max_snr_db", "20"], "--min_snr_db (30.0) must not be above --max_snr_db"),
        (["--early_stopping_patience", "-1"], "--early_stopping_patience must be 0 (off) or more"),
        (
            ["--early_stopping_patience", "2", "--load_best_model_at_end", "false"],
            "--early_stopping_patience needs evaluations and a best model",
        ),
    ],
)
def test_unusable_augmentation_filter_and_stopping_arguments_say_what_to_fix(argv, message):
    with pytest.raises(train.TrainingInputError, match=re.escape(message)):
        train.parse_arguments(argv)


def test_the_noise_channel_comes_from_the_sagemaker_environment():
    # Given a job with a noise channel
    _, data, training, _ = train.parse_arguments([])
    # When the paths are resolved
    paths = train.resolve_paths(data, training, SM_ENV | {"SM_CHANNEL_NOISE": "/opt/ml/input/data/noise"})
    # Then the background clips come from it; without the channel there are none
    assert paths.noise == Path("/opt/ml/input/data/noise")
    assert train.resolve_paths(data, training, SM_ENV).noise is None


def test_a_misspelt_argument_is_one_line_naming_the_closest_one() -> None:
    # When an argument no dataclass takes is given / Then one line names it and the closest real one
    with pytest.raises(
        train.TrainingInputError, match=r"^unknown argument --num_epochs; did you mean --num_train_epochs\?"
    ):
        train.parse_arguments(["--num_epochs", "3"])
    # And an argument nothing resembles is named without a guess
    with pytest.raises(train.TrainingInputError, match=r"^unknown argument --zzz \(python train.py --help"):
        train.parse_arguments(["--zzz", "1"])


def test_a_model_that_cannot_be_loaded_is_one_line_saying_what_to_give(tmp_path) -> None:
    # Given arguments naming a folder that does not exist
    model_args = train.parse_arguments(["--model_name_or_path", str(tmp_path / "missing")])[0]
    # When the model is loaded / Then one error says so and what to give instead
    with pytest.raises(
        train.TrainingInputError, match=r"there is no such folder\. Give a Hugging Face model id"
    ):
        train.load_model(model_args, ["a", "b"], tasks.load(None))

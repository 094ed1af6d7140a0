"""Fine-tunes a wav2vec2-style audio classifier on an ``audiofolder`` dataset, on SageMaker or locally.

SageMaker runs ``python train.py --name value ...`` from this folder with the data channels in
``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` / ``SM_CHANNEL_TEST``; locally the same paths are
arguments::

    python -m training.train --model_name_or_path training/configs/tiny-wav2vec2 \\
        --train_dir data/train --test_dir data/test --model_dir out/model --output_data_dir out/eval

Metric lines (``eval_accuracy=0.9312``, and the training-health rules' ``health_overfit=0``) go to stdout
for the training job's metric regexes; a NaN or infinite loss stops the job with an error. The model
directory it leaves is self-contained (weights, feature extractor, labels, metrics, serving code) and
deploys as ``model.tar.gz`` unchanged. Works with transformers 4.56 and 5.x.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    EvalPrediction,
    HfArgumentParser,
    PreTrainedModel,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2FeatureExtractor,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

import tasks
from common import audio, contract
from common.cli import USAGE_ERROR
from common.cli import report as report_error
from tasks import SplitScores, Task, TaskError
from training import audiofolder, augment, curves, health, model_card, onnx_export

logger = logging.getLogger(__name__)

# The source dir's root (the repository's root locally): training/ is one of its folders.
SOURCE_DIR = Path(__file__).resolve().parents[1]
SAGEMAKER_CHECKPOINT_DIR = Path(contract.CHECKPOINT_DIR)
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MIN_WINDOW_SECONDS = 0.1
TRAINING_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}


class TrainingInputError(ValueError):
    """An argument or path is missing or unusable; the message says which and what to do."""


@dataclass
class ModelArguments:
    """Which task, which model to fine-tune and how."""

    task: str = field(
        default=tasks.DEFAULT_TASK,
        metadata={
            "help": "What the model learns and answers: a task of tasks/ ("
            + ", ".join(tasks.known())
            + ") or a task module's dotted path."
        },
    )
    task_settings: str = field(
        default="",
        metadata={
            "help": "The task's own settings, a JSON object (multilabel: "
            '{"pooling": "mean", "positive_weighting": true}); see the task module.'
        },
    )
    model_name_or_path: str = field(
        default="facebook/wav2vec2-base",
        metadata={
            "help": "Checkpoint to fine-tune: a Hugging Face id or a local folder. A folder holding only "
            "config.json and preprocessor_config.json initialises a model with random weights."
        },
    )
    freeze_feature_encoder: bool | None = field(
        default=None,
        metadata={
            "help": "Keep the convolutional feature encoder's weights fixed. Default: frozen when pretrained "
            "weights were loaded, trained when the model starts from random weights (a config-only folder)."
        },
    )
    export_onnx: bool = field(
        default=False, metadata={"help": f"Also write {contract.ONNX_FILE} next to the weights."}
    )
    early_stopping_patience: int = field(
        default=0,
        metadata={
            "help": "Stop after this many evaluations without an improvement of the best metric "
            "(--metric_for_best_model, the task's objective); 0: train all epochs."
        },
    )


@dataclass
class DataArguments:
    """Where the data comes from and where the results go; defaults from the SageMaker environment."""

    train_dir: str | None = field(
        default=None, metadata={"help": "audiofolder with <label>/<clip> files (default: $SM_CHANNEL_TRAIN)."}
    )
    validation_dir: str | None = field(
        default=None,
        metadata={
            "help": "Validation audiofolder (default: $SM_CHANNEL_VALIDATION; without one, a stratified "
            "share of the training clips is held out)."
        },
    )
    test_dir: str | None = field(
        default=None,
        metadata={"help": "Test audiofolder, evaluated once at the end (default: $SM_CHANNEL_TEST)."},
    )
    model_dir: str | None = field(
        default=None, metadata={"help": "Where the deployable model goes (default: $SM_MODEL_DIR)."}
    )
    output_data_dir: str | None = field(
        default=None,
        metadata={"help": "Where metrics and the evaluation report go (default: $SM_OUTPUT_DATA_DIR)."},
    )
    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoints, resumed from when the folder holds some (default: --output_dir if given, "
            f"else {SAGEMAKER_CHECKPOINT_DIR} when it exists, else a temporary folder removed at the end)."
        },
    )
    tensorboard_dir: str | None = field(
        default=None,
        metadata={
            "help": "TensorBoard event files (with --report_to tensorboard, the default). Default: "
            f"$TENSORBOARD_LOGGING_DIR, else in a SageMaker job {curves.SAGEMAKER_TENSORBOARD_DIR} (the job's "
            "TensorBoardOutputConfig.LocalPath), else <output_data_dir>/tensorboard."
        },
    )
    max_length_seconds: float = field(
        default=5.0,
        metadata={
            "help": "Random training crop and evaluation/serving window, seconds (windows overlap by half)."
        },
    )
    validation_split_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of each label's clips held out when there is no validation data."},
    )
    decoded_cache_gb: float = field(
        default=4.0,
        metadata={"help": "Decoded audio kept in memory, GiB; beyond it clips are decoded per read."},
    )
    min_clip_seconds: float = field(
        default=0.0,
        metadata={"help": "Clips shorter than this are skipped like corrupt ones, in every split; 0: none."},
    )
    max_clip_seconds: float = field(
        default=audio.DEFAULT_MAX_SECONDS,
        metadata={
            "help": "Clips longer than this, decoding to more than this many seconds of 48 kHz stereo, or "
            f"with more than {audio.DEFAULT_MAX_CHANNELS} channels are skipped like corrupt ones, in every split."
        },
    )
    noise_dir: str | None = field(
        default=None,
        metadata={
            "help": "Background clips (any audio files, any layout) mixed into training crops at a random "
            "SNR (default: $SM_CHANNEL_NOISE)."
        },
    )
    augment: bool = field(
        default=True,
        metadata={"help": "Augment training crops (the settings below); evaluation windows never are."},
    )
    gain_db: float = field(
        default=6.0,
        metadata={
            "help": "Random gain within +/- this many dB; 0: none. No effect when the feature extractor "
            "normalizes every input (do_normalize), which undoes any gain: then it is skipped."
        },
    )
    noise_probability: float = field(
        default=0.5, metadata={"help": "Chance of white noise added to a crop at a random SNR."}
    )
    background_probability: float = field(
        default=0.5, metadata={"help": "Chance of a --noise_dir clip mixed into a crop at a random SNR."}
    )
    mix_probability: float = field(
        default=0.0,
        metadata={
            "help": "Chance of another training clip's crop laid over a crop, the target the task's union of "
            "both (tasks that can mix: multilabel)."
        },
    )
    min_snr_db: float = field(default=10.0, metadata={"help": "Lowest SNR of added noise, dB."})
    max_snr_db: float = field(default=40.0, metadata={"help": "Highest SNR of added noise, dB."})
    time_shift_seconds: float = field(
        default=0.5,
        metadata={"help": "Rotate crops by up to this many seconds either way (wrapping around); 0: none."},
    )
    dataset_name: str = field(
        default="",
        metadata={
            "help": "The training data's name for the model card (README.md): a staging source (esc50, fsd50k, "
            "librispeech, commonvoice), whose license the card then knows, or any name (a Hub dataset id)."
        },
    )
    dataset_license: str = field(
        default="",
        metadata={
            "help": "The training data's license, a Hugging Face license id (cc-by-4.0...): the model card's "
            "license. Default: the license of a known --dataset_name, else unknown."
        },
    )


@dataclass(frozen=True)
class Paths:
    """Resolved input and output locations."""

    train: Path
    validation: Path | None
    test: Path | None
    model: Path
    output: Path
    checkpoints: Path | None  # None: a temporary folder
    noise: Path | None = None  # background clips for augmentation


@dataclass(frozen=True)
class Outcome:
    """What a run produced, for callers that run training in-process."""

    metrics: dict[str, float]
    model_dir: Path
    resumed_from: str | None
    start_step: int
    global_step: int


def training_defaults(task: Task | None = None) -> dict[str, Any]:
    """The Trainer settings this script uses unless overridden on the command line; the best model is the
    one with the best value of the task's objective."""
    task = task or tasks.load(None)
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    defaults: dict[str, Any] = {
        "num_train_epochs": 4.0,
        "learning_rate": 3e-5,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": task.objective,
        "logging_steps": 10,
        "report_to": curves.TENSORBOARD,  # without the tensorboard package: none (curves.py)
        "seed": 42,
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "dataloader_num_workers": min(4, os.cpu_count() or 1) if cuda else 0,
        "dataloader_pin_memory": cuda,
    }
    # transformers 5 folded warmup_ratio into warmup_steps (a value below 1 is a ratio).
    defaults["warmup_ratio" if "warmup_ratio" in TRAINING_FIELDS else "warmup_steps"] = 0.1
    for name, value in task.argument_defaults().items():
        if name == "train_sampling_strategy" and name not in TRAINING_FIELDS:  # before transformers 5
            defaults["group_by_length"] = value == "group_by_length"
        else:
            defaults[name] = value
    return defaults


def _portable(argv: Sequence[str]) -> list[str]:
    """Accepts ``--warmup_ratio`` on every transformers version."""
    if "warmup_ratio" in TRAINING_FIELDS:
        return list(argv)
    return [re.sub(r"^--warmup_ratio(?==|$)", "--warmup_steps", arg) for arg in argv]


def parse_arguments(
    argv: Sequence[str] | None,
) -> tuple[ModelArguments, DataArguments, TrainingArguments, health.HealthArguments]:
    """Parses ``--name value`` arguments (SageMaker hyperparameters) into the four dataclasses."""
    dataclass_types = (ModelArguments, DataArguments, TrainingArguments, health.HealthArguments)
    parser = HfArgumentParser(dataclass_types)  # type: ignore[arg-type]
    args = _portable(sys.argv[1:] if argv is None else argv)
    task = load_task(_named_task(args))
    parser.set_defaults(**training_defaults(task))
    unknown = _unknown_flags(parser, args)
    if unknown:
        raise TrainingInputError(unknown)
    model_args, data_args, training_args, health_args = parser.parse_args_into_dataclasses(args=args)
    load_task(model_args.task, model_args.task_settings)  # a bad setting stops here, before any data is read
    if "--greater_is_better" not in args:
        training_args.greater_is_better = _greater_is_better(task, training_args.metric_for_best_model)
    problem = health_args.problem()
    if problem:
        raise TrainingInputError(problem)
    _check_data_arguments(data_args)
    _check_early_stopping(model_args, training_args)
    if not 0 < data_args.validation_split_fraction < 1:
        raise TrainingInputError(
            f"--validation_split_fraction must be between 0 and 1, got {data_args.validation_split_fraction}"
        )
    return model_args, data_args, training_args, health_args


def _unknown_flags(parser: HfArgumentParser, args: Sequence[str]) -> str | None:
    """One line naming the first argument no dataclass takes, with the closest one that exists; None when
    every argument is known (the parser's own errors, a value of the wrong type say, are its one line)."""
    _, rest = parser.parse_known_args(args=list(args))
    flags = [arg.split("=", 1)[0] for arg in rest if arg.startswith("--")]
    if not flags:
        return (
            None if not rest else f"unexpected argument(s) {' '.join(rest)}: every argument is --name value"
        )
    known = sorted({option for action in parser._actions for option in action.option_strings})
    close = difflib.get_close_matches(flags[0], known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown argument {flags[0]}{hint} (python train.py --help lists every argument)"


def _named_task(args: Sequence[str]) -> str | None:
    """The value of ``--task`` (``--task NAME`` or ``--task=NAME``), before the other arguments are parsed:
    the task decides their defaults."""
    for i, arg in enumerate(args):
        if arg == "--task" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    return None


def load_task(name: str | None, settings: str = "") -> Task:
    """The task called ``name`` (default ``tasks.DEFAULT_TASK``) with ``settings`` (a JSON object, see
    ``--task_settings``); an unknown task or a bad setting is the user's mistake."""
    try:
        task = tasks.load(name)
    except TaskError as err:
        raise TrainingInputError(f"--task: {err}") from None
    try:
        chosen = json.loads(settings) if settings.strip() else {}
    except json.JSONDecodeError as err:
        raise TrainingInputError(
            f"--task_settings is not JSON ({err}): give an object, e.g. '{{}}'"
        ) from None
    if not isinstance(chosen, dict):
        raise TrainingInputError(f"--task_settings must be a JSON object, got {settings!r}")
    try:
        return task.configured(chosen)
    except TaskError as err:
        raise TrainingInputError(f"--task_settings: {err}") from None


def _greater_is_better(task: Task, metric: str | None) -> bool:
    """The direction of the best-model metric: the task's for its own metrics, else higher unless a loss."""
    name = (metric or "").removeprefix("eval_")
    if name in task.metric_names:
        return task.metric(name).higher_is_better
    return not name.endswith("loss")


def _check_data_arguments(data_args: DataArguments) -> None:
    """The window, clip-length and augmentation arguments make sense on their own and together."""
    if data_args.max_length_seconds < MIN_WINDOW_SECONDS:
        raise TrainingInputError(
            f"--max_length_seconds must be at least {MIN_WINDOW_SECONDS} (the feature encoder's receptive "
            f"field is 25 ms), got {data_args.max_length_seconds}"
        )
    if not data_args.max_clip_seconds > 0:
        raise TrainingInputError(f"--max_clip_seconds must be positive, got {data_args.max_clip_seconds}")
    if not 0 <= data_args.min_clip_seconds < data_args.max_clip_seconds:
        raise TrainingInputError(
            f"--min_clip_seconds must be at least 0 and below --max_clip_seconds "
            f"({data_args.max_clip_seconds}), got {data_args.min_clip_seconds}"
        )
    for name in ("noise_probability", "background_probability", "mix_probability"):
        if not 0 <= getattr(data_args, name) <= 1:
            raise TrainingInputError(f"--{name} must be between 0 and 1, got {getattr(data_args, name)}")
    for name in ("gain_db", "time_shift_seconds"):
        if not getattr(data_args, name) >= 0:
            raise TrainingInputError(f"--{name} must not be negative, got {getattr(data_args, name)}")
    if data_args.min_snr_db > data_args.max_snr_db:
        raise TrainingInputError(
            f"--min_snr_db ({data_args.min_snr_db}) must not be above --max_snr_db ({data_args.max_snr_db})"
        )


def _check_early_stopping(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """A patience needs evaluations to count and a best model to go back to."""
    if model_args.early_stopping_patience < 0:
        raise TrainingInputError(
            f"--early_stopping_patience must be 0 (off) or more, got {model_args.early_stopping_patience}"
        )
    if model_args.early_stopping_patience and (
        not training_args.load_best_model_at_end or training_args.eval_strategy == "no"
    ):
        raise TrainingInputError(
            "--early_stopping_patience needs evaluations and a best model: keep --eval_strategy epoch (or "
            "steps) and --load_best_model_at_end true"
        )


def resolve_paths(data: DataArguments, training: TrainingArguments, environ: Mapping[str, str]) -> Paths:
    """Command-line paths win over the SageMaker environment; train, model and output dirs are required."""

    def pick(value: str | None, variable: str) -> Path | None:
        chosen = value or environ.get(variable)
        return Path(chosen) if chosen else None

    train_variable = contract.channel_variable(contract.TRAIN_CHANNEL)
    train = pick(data.train_dir, train_variable)
    if train is None:
        raise TrainingInputError(f"no training data given: pass --train_dir or set {train_variable}")
    model = pick(data.model_dir, "SM_MODEL_DIR")
    if model is None:
        raise TrainingInputError("no model directory given: pass --model_dir or set SM_MODEL_DIR")
    output = pick(data.output_data_dir, "SM_OUTPUT_DATA_DIR")
    if output is None:
        raise TrainingInputError(
            "no output data directory given: pass --output_data_dir or set SM_OUTPUT_DATA_DIR"
        )

    checkpoints = Path(data.checkpoint_dir) if data.checkpoint_dir else None
    if checkpoints is None and training.output_dir not in (None, "trainer_output"):
        checkpoints = Path(training.output_dir)
    if checkpoints is None and SAGEMAKER_CHECKPOINT_DIR.is_dir():
        checkpoints = SAGEMAKER_CHECKPOINT_DIR
    if checkpoints is None and training.world_size > 1:
        raise TrainingInputError(
            "distributed training needs one checkpoint folder for all processes: pass --checkpoint_dir "
            "or configure SageMaker checkpoints"
        )
    return Paths(
        train=train,
        validation=pick(data.validation_dir, contract.channel_variable(contract.VALIDATION_CHANNEL)),
        test=pick(data.test_dir, contract.channel_variable(contract.TEST_CHANNEL)),
        model=model,
        output=output,
        checkpoints=checkpoints,
        noise=pick(data.noise_dir, contract.channel_variable(contract.NOISE_CHANNEL)),
    )


def setup_logging(training: TrainingArguments) -> None:
    """Script logs to stdout (INFO on the main process); transformers at its usual level."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = logging.INFO if training.should_log else logging.WARNING
    for name in (logger.name, audiofolder.logger.name, health.logger.name, curves.logger.name):
        logging.getLogger(name).setLevel(level)
    transformers.utils.logging.set_verbosity(training.get_process_log_level())
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def load_splits(
    paths: Paths,
    data: DataArguments,
    seed: int,
    cache: audiofolder.DecodeCache | None = None,
    task: Task | None = None,
) -> tuple[audiofolder.Split, audiofolder.Split, audiofolder.Split | None]:
    """Scans train, validation (or holds it out of train) and test; checks their labels agree.

    Every split is held to --min_clip_seconds and --max_clip_seconds (with the decoded-size and channel
    limits); a clip outside them is skipped and listed like a corrupt one.
    """
    cache = cache or audiofolder.DecodeCache(int(data.decoded_cache_gb * 2**30))
    limits = audio.Limits.default(data.max_clip_seconds)
    task = task or tasks.load(None)
    scan = functools.partial(
        audiofolder.scan,
        cache=cache,
        limits=limits,
        min_seconds=data.min_clip_seconds,
        column=task.label_column,
    )
    train = scan(contract.TRAIN_CHANNEL, paths.train)
    if len(train.labels) < 2:
        raise audiofolder.DatasetLayoutError(
            f"the train data folder {paths.train} has usable clips for {len(train.labels)} label(s) "
            f"({', '.join(train.labels)}); a model needs at least 2 label folders with clips"
        )
    if paths.validation is not None:
        validation = scan(contract.VALIDATION_CHANNEL, paths.validation)
        _check_labels(task, validation, train)
    else:
        logger.info(
            "no validation data: holding out %.0f%% of each label's training clips",
            100 * data.validation_split_fraction,
        )
        train, validation = audiofolder.stratified_split(train, data.validation_split_fraction, seed)
    test = None
    if paths.test is not None:
        test = scan(contract.TEST_CHANNEL, paths.test)
        _check_labels(task, test, train)
    for split in (train, validation, test):
        if split is not None:
            _log_split(split)
    return train, validation, test


def _check_labels(task: Task, split: audiofolder.Split, train: audiofolder.Split) -> None:
    """Every label of an evaluation split is one the model trained on can answer (``Task.unknown_labels``)."""
    unknown = task.unknown_labels(split.labels, train.labels)
    if unknown:
        raise audiofolder.DatasetLayoutError(
            f"the {split.name} data folder {split.root} has labels the training data lacks: "
            f"{', '.join(unknown)}; the model can only predict {', '.join(task.labels(train.labels))}"
        )


def usable_splits(
    task: Task, labels: list[str], splits: Sequence[audiofolder.Split | None]
) -> list[audiofolder.Split | None]:
    """Each split without the clips whose label gives no target (``Task.usable``: a transcript that keeps
    nothing of the vocabulary, say), which are skipped and counted like corrupt ones."""
    kept: list[audiofolder.Split | None] = []
    for split in splits:
        if split is None:
            kept.append(None)
            continue
        clips, skipped = [], list(split.skipped)
        for clip in split.clips:
            reason = task.usable(clip.label, labels)
            if reason is None:
                clips.append(clip)
            else:
                skipped.append(
                    audiofolder.Skipped(str(clip.path.relative_to(split.root)), reason, audiofolder.NO_TARGET)
                )
                logger.info("  skipped %s (%s): %s", skipped[-1].path, audiofolder.NO_TARGET, reason)
        if not clips:
            raise audiofolder.DatasetLayoutError(
                f"the {split.name} data folder {split.root} has no usable clip"
            )
        kept.append(dataclasses.replace(split, clips=clips, skipped=skipped))
    return kept


def _log_split(split: audiofolder.Split) -> None:
    logger.info("%s", split.describe())
    for skipped in split.skipped:
        logger.info("  skipped %s (%s): %s", skipped.path, skipped.kind, skipped.reason)


def load_background(
    paths: Paths, data: DataArguments, cache: audiofolder.DecodeCache
) -> audiofolder.Split | None:
    """The background clips of --noise_dir (SM_CHANNEL_NOISE), when augmentation can use them."""
    if paths.noise is None:
        return None
    if not data.augment or data.background_probability == 0:
        logger.info(
            "background clips in %s are not used: augmentation or background mixing is off", paths.noise
        )
        return None
    limits = audio.Limits.default(data.max_clip_seconds)
    noise = audiofolder.scan(contract.NOISE_CHANNEL, paths.noise, cache, limits=limits, labelled=False)
    _log_split(noise)
    return noise


def build_augmentation(
    data: DataArguments, normalizes: bool, background: audiofolder.Split | None
) -> augment.Augmentation | None:
    """The training crops' augmentation from the arguments; None with --augment false.

    ``normalizes``: the feature extractor scales every input to unit variance, which undoes a gain.
    """
    if not data.augment:
        logger.info("augmentation: off (--augment false)")
        return None
    gain_db = data.gain_db
    if gain_db and normalizes:
        logger.info("augmentation: random gain skipped: the feature extractor normalizes every input")
        gain_db = 0.0
    augmentation = augment.Augmentation(
        gain_db=gain_db,
        noise_probability=data.noise_probability,
        background_probability=data.background_probability,
        min_snr_db=data.min_snr_db,
        max_snr_db=data.max_snr_db,
        time_shift_seconds=data.time_shift_seconds,
        background=[clip.load for clip in background.clips] if background else (),
    )
    logger.info("augmentation of training crops: %s", augmentation.describe())
    return augmentation


@dataclass
class LoadedModel:
    """The model to fine-tune, its feature extractor, and how its weights started."""

    model: PreTrainedModel
    extractor: Any
    pretrained: bool  # weights loaded from a checkpoint, rather than initialised at random
    frozen: bool  # the feature encoder's weights are fixed
    freeze_reason: str


def decide_freeze(requested: bool | None, pretrained: bool) -> tuple[bool, str]:
    """Whether to freeze the feature encoder, and why: an explicit flag wins, else only pretrained weights.

    A random-init encoder that stays frozen turns audio into fixed random features; the tiny config loses
    about 8 points of test accuracy to that. A pretrained encoder is frozen, as the wav2vec2 papers do.
    """
    if requested is not None:
        return requested, f"--freeze_feature_encoder {str(requested).lower()}"
    if pretrained:
        return True, "pretrained weights were loaded (the default for a pretrained checkpoint)"
    return False, "the model starts from random weights (the default for a config-only model)"


def model_labels(task: Task, source: str, train: audiofolder.Split) -> list[str]:
    """The model's outputs: those the checkpoint already has when the task keeps them (a speech checkpoint's
    tokenizer vocabulary), else the task's from the training clips."""
    kept = task.checkpoint_labels(source)
    if kept:
        logger.info("the model keeps %s's %d outputs (its head is kept)", source, len(kept))
        return kept
    return task.labels(train.labels)


def load_model(args: ModelArguments, labels: list[str], task: Task) -> LoadedModel:
    """The model with a fresh head for the task's ``labels``, its feature extractor, frozen or not."""
    source = args.model_name_or_path
    try:
        config = AutoConfig.from_pretrained(source, **task.config_fields(labels))
        extractor = AutoFeatureExtractor.from_pretrained(source)
    except OSError as err:  # no such folder or Hub repository, or the Hub cannot be reached
        reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().exists():
            reason = "there is no such folder"
        raise TrainingInputError(
            f"--model_name_or_path {source!r} cannot be loaded: {reason}. Give a Hugging Face model id "
            "(e.g. facebook/wav2vec2-base) or a local folder with config.json and preprocessor_config.json"
        ) from None
    rate = getattr(extractor, "sampling_rate", None)
    if rate != audio.TARGET_SAMPLE_RATE:
        raise TrainingInputError(
            f"{source} expects {rate} Hz audio; this pipeline decodes to {audio.TARGET_SAMPLE_RATE} Hz: "
            "pick a 16 kHz model (wav2vec2, HuBERT, WavLM...)"
        )
    local = Path(source)
    pretrained = not (local.is_dir() and not any((local / name).is_file() for name in WEIGHT_FILES))
    auto_model = getattr(transformers, task.auto_model)
    if pretrained:
        model = auto_model.from_pretrained(source, config=config, ignore_mismatched_sizes=True)
    else:
        logger.warning("%s holds a config but no weights: initialising the model with random weights", source)
        model = auto_model.from_config(config)
    frozen, reason = decide_freeze(args.freeze_feature_encoder, pretrained)
    if frozen and not hasattr(model, "freeze_feature_encoder"):
        logger.warning("%s has no feature encoder to freeze; training all weights", type(model).__name__)
        frozen, reason = False, f"{type(model).__name__} has no feature encoder to freeze"
    if frozen:
        model.freeze_feature_encoder()
    logger.info("feature encoder %s: %s", "frozen" if frozen else "trained", reason)
    return LoadedModel(model, extractor, pretrained, frozen, reason)


def featurize(extractor: Any, samples: np.ndarray) -> np.ndarray:
    """One window or crop through the feature extractor (normalisation), as float32."""
    values = extractor(samples, sampling_rate=audio.TARGET_SAMPLE_RATE, return_tensors="np")["input_values"]
    return np.asarray(values[0], dtype=np.float32)


def model_inputs(
    extractor: Any, config: Any, task: Task | None = None, labels: Sequence[str] = ()
) -> tuple[audiofolder.Featurize, audiofolder.PadBatch, str]:
    """How crops and windows become model inputs and batches, and a line saying how padding is done.

    A ``Wav2Vec2FeatureExtractor`` is ``audio.Features``, the very code the endpoint runs. Batches pad to
    their longest input: with an attention mask when the feature extractor asks for one and the feature
    encoder is not group-normalized; else (wav2vec2-base, the tiny config) by repeating shorter inputs,
    without a mask (see ``audiofolder.PadBatch``).
    """
    features = None
    if isinstance(extractor, Wav2Vec2FeatureExtractor):
        features = audio.Features(do_normalize=bool(extractor.do_normalize))
    featurize_fn: audiofolder.Featurize = features or functools.partial(featurize, extractor)
    mask = bool(getattr(extractor, "return_attention_mask", False))
    why = f"the feature extractor's return_attention_mask is {str(mask).lower()}"
    if mask and getattr(config, "feat_extract_norm", None) == "group":
        mask, why = False, "the feature encoder is group-normalized (feat_extract_norm=group)"
    padding = float(getattr(extractor, "padding_value", 0.0))
    task = task or tasks.load(None)
    # A whole-clip task's input is never repeated: its target would not repeat with it.
    wrap = not mask and not task.whole_clips
    collator = audiofolder.PadBatch(
        padding_value=padding,
        attention_mask=mask,
        wrap=wrap,
        targets=functools.partial(task.batch_targets, labels=list(labels)),
    )
    how = (
        f"with {padding:g} and an attention mask"
        if mask
        else "by repeating shorter inputs, without a mask"
        if wrap
        else f"with {padding:g}, without a mask (the task's targets follow the audio in time)"
    )
    return featurize_fn, collator, f"{how} ({why})"


def _logits(predictions: Any) -> np.ndarray:
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def split_scores(task: Task, windows: audiofolder.Windows, predictions: Any) -> SplitScores:
    """One evaluation set's window and clip scores from the model's window logits."""
    logits = _logits(predictions)
    if logits.shape[0] != len(windows):
        raise RuntimeError(f"got {logits.shape[0]} predictions for {len(windows)} evaluation windows")
    return SplitScores.of(task, logits, windows.window_labels, windows.clip_ids, windows.clip_labels)


def split_metrics(
    task: Task, labels: list[str], windows: audiofolder.Windows, prediction: EvalPrediction
) -> dict[str, float]:
    """Trainer ``compute_metrics`` for one evaluation set: the task's window- and clip-level metrics."""
    return task.split_metrics(split_scores(task, windows, prediction.predictions), labels)


def task_loss(task: Task) -> Callable[..., Any] | None:
    """The Trainer's ``compute_loss_func`` for a task with a loss of its own (None: the model's own)."""
    loss = task.loss()
    if loss is None:
        return None

    def compute(outputs: Any, targets: Any, num_items_in_batch: Any = None) -> Any:
        return loss(outputs["logits"], targets)

    return compute


def metric_line_names(task: Task) -> tuple[str, ...]:
    """What each evaluated split prints as metric lines: its loss and the task's metrics."""
    return ("loss", *task.metric_names)


def print_metric_lines(metrics: Mapping[str, float], prefix: str, names: Sequence[str]) -> None:
    """``<prefix>_<name>=<value>`` lines (``contract.metric_line``) for the training job's metric regexes."""
    for name in names:
        value = metrics.get(f"{prefix}_{name}")
        if value is not None:
            # tqdm.write lifts any progress bar first, so each metric line stays a line of its own.
            tqdm.write(contract.metric_line(f"{prefix}_{name}", value), file=sys.stdout)


class MetricLines(TrainerCallback):
    """Prints the metric lines (``names``) after every evaluation; records where training (re)started."""

    def __init__(self, names: Sequence[str]) -> None:
        self.start_step = 0
        self.names = tuple(names)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start_step = state.global_step

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            print_metric_lines(kwargs.get("metrics") or {}, "eval", self.names)


def build_callbacks(
    model_args: ModelArguments,
    health_args: health.HealthArguments,
    training_args: TrainingArguments,
    names: Sequence[str] = ("loss",),
) -> tuple[MetricLines, health.HealthRules, list[TrainerCallback]]:
    """The metric lines (``names``), the health rules and, with a patience, early stopping (whose condition
    the overtraining rule reports)."""
    lines = MetricLines(names)
    patience = model_args.early_stopping_patience
    rules = health.HealthRules(health_args, health.RunFacts.of(training_args, patience, health_args))
    callbacks: list[TrainerCallback] = [lines, rules]
    if patience:
        callbacks.append(health.EarlyStopping(early_stopping_patience=patience))
    return lines, rules, callbacks


def find_resume_checkpoint(
    training: TrainingArguments, checkpoint_dir: Path, labels: list[str]
) -> str | None:
    """An explicit ``--resume_from_checkpoint``, else the last checkpoint in the folder (spot restarts)."""
    explicit = training.resume_from_checkpoint
    checkpoint = explicit or (get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None)
    if checkpoint is None:
        return None
    config = Path(checkpoint) / "config.json"
    if config.is_file():
        saved = json.loads(config.read_text()).get("id2label", {})
        saved_labels = [saved[key] for key in sorted(saved, key=int)]
        if saved_labels != labels:
            raise TrainingInputError(
                f"checkpoint {checkpoint} was trained on labels {saved_labels}, the data has {labels}; "
                "point --checkpoint_dir at an empty folder to start afresh"
            )
    return str(checkpoint)


def task_name(task: Task) -> str:
    """What names the task for ``tasks.load``: its name in tasks/, else its module's dotted path."""
    module = type(task).__module__
    return task.name if module == f"{tasks.__name__}.{task.name}" else module


def task_files(task: Task) -> list[str]:
    """The task module's file and its packages' ``__init__.py``, as paths in the source dir; none when the
    module lives outside it (a task only the local machine knows, which the endpoint then cannot load)."""
    module = sys.modules[type(task).__module__]
    path = Path(module.__file__ or "").resolve()
    if not path.is_relative_to(SOURCE_DIR):
        logger.warning("task module %s is outside the source dir: the model's code/ will lack it", module)
        return []
    parts = path.relative_to(SOURCE_DIR).parts
    inits = [Path(*parts[:i], "__init__.py").as_posix() for i in range(1, len(parts))]
    return [*inits, Path(*parts).as_posix()]


def copy_serving_code(code_dir: Path, task: Task | None = None) -> None:
    """What the source dir ships onward (``contract.SERVING_CODE``) into ``code/``: the serving entry as
    ``inference.py``, the modules it imports at their paths, the model's task module (default: the default
    task's), the serving requirements."""
    if code_dir.exists():
        shutil.rmtree(code_dir)
    code_dir.mkdir(parents=True)
    shipped = {
        contract.HANDLER_FILE: contract.SERVING_ENTRY,
        "requirements.txt": contract.SERVING_REQUIREMENTS,
        **{name: name for name in contract.SERVING_CODE},
        **{name: name for name in task_files(task or tasks.load(None))},
    }
    for target, name in shipped.items():
        source = SOURCE_DIR / name
        if not source.is_file():
            raise TrainingInputError(
                f"{name} is missing from the source dir {SOURCE_DIR}: it ships the serving code"
            )
        (code_dir / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, code_dir / target)


def write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n")


def write_model_files(
    model_dir: Path, labels: list[str], max_length_seconds: float, hop: int, metrics: dict, task: Task
) -> None:
    """Everything besides the weights that makes the model directory deployable on its own.

    ``hop`` is the windows' hop in samples as evaluated; ``task`` the task and what it chose on validation:
    serving reads them back from labels.json.
    """
    write_json(
        model_dir / contract.LABELS_FILE,
        {
            contract.TASK_KEY: task_name(task),
            **({contract.TASK_SETTINGS_KEY: task.settings()} if task.settings() else {}),
            contract.LABELS_KEY: labels,
            contract.SAMPLING_RATE_KEY: audio.TARGET_SAMPLE_RATE,
            contract.WINDOW_SECONDS_KEY: max_length_seconds,
            contract.HOP_SECONDS_KEY: hop / audio.TARGET_SAMPLE_RATE,
        },
    )
    write_json(model_dir / contract.METRICS_FILE, metrics)
    for name, text in task.model_files(labels).items():
        (model_dir / name).write_text(text + "\n", encoding="utf-8")
    copy_serving_code(model_dir / contract.CODE_DIR, task)


def write_reports(
    output_dir: Path,
    metrics: dict[str, float],
    reports: dict[str, Any],
    splits: Mapping[str, audiofolder.Split | None],
    about: dict[str, Any],
    task: Task,
) -> None:
    """metrics.json (flat), evaluation.json (full report) and the task's picture of each split."""
    names = {"eval": contract.VALIDATION_CHANNEL, "test": contract.TEST_CHANNEL}
    write_json(output_dir / contract.METRICS_FILE, metrics)
    write_json(
        output_dir / contract.EVALUATION_FILE,
        {
            **about,
            "labels": next(iter(reports.values()))["labels"],
            "metrics": metrics,
            "data": {
                name: {
                    "root": str(split.root),
                    "clips": len(split.clips),
                    "per_class": split.counts(),
                    "skipped_counts": split.skipped_counts(),
                    "skipped": [dataclasses.asdict(s) for s in split.skipped],
                }
                for name, split in splits.items()
                if split is not None
            },
            "evaluation": {names[prefix]: report for prefix, report in reports.items()},
        },
    )
    for prefix, report in reports.items():
        task.plot(report, output_dir, names[prefix])


@dataclass(frozen=True)
class Inputs:
    """What the Trainer reads (training crops, evaluation windows per split) and how it was made."""

    train_set: audiofolder.RandomCrops
    eval_sets: dict[str, audiofolder.Windows]
    collator: audiofolder.PadBatch
    padding: str
    augmentation: augment.Augmentation | None
    hop: int  # the evaluation windows' hop, in samples


def build_inputs(
    loaded: LoadedModel,
    data: DataArguments,
    labels: list[str],
    splits: tuple[audiofolder.Split, audiofolder.Split, audiofolder.Split | None],
    background: audiofolder.Split | None,
    task: Task,
) -> Inputs:
    """Random (augmented) crops of the training clips; windows of the validation and test clips; each with
    the task's target."""
    train, validation, test = splits
    target = functools.partial(task.target, labels=labels)
    features, collator, padding = model_inputs(loaded.extractor, loaded.model.config, task, labels)
    logger.info("batches are padded to their longest input, %s", padding)
    normalizes = bool(getattr(loaded.extractor, "do_normalize", False))
    augmentation = build_augmentation(data, normalizes, background)
    length = round(data.max_length_seconds * audio.TARGET_SAMPLE_RATE)
    hop = task.hop(length)
    mix = _mixing(task, data, target(train.clips[0].label))

    def window(split: audiofolder.Split) -> int:  # a whole-clip task's crops and windows are whole clips
        return max(clip.num_samples for clip in split.clips) if task.whole_clips else length

    train_set = audiofolder.RandomCrops(train.clips, target, window(train), features, augmentation, mix)
    eval_sets = {"eval": audiofolder.Windows(validation.clips, target, window(validation), hop, features)}
    if test is not None:
        eval_sets["test"] = audiofolder.Windows(test.clips, target, window(test), hop, features)
    if task.whole_clips:
        logger.info(
            "the %s task reads whole clips: no crops in training, one window per clip in evaluation",
            task.name,
        )
    return Inputs(train_set, eval_sets, collator, padding, augmentation, hop)


def _mixing(task: Task, data: DataArguments, example: Any) -> audiofolder.Mixing | None:
    """How training crops mix with other clips' (``--mix_probability``), when asked; a task whose targets
    cannot be united (``Task.mix`` returns None) cannot mix."""
    if not data.mix_probability:
        return None
    if task.mix(example, example) is None:
        raise TrainingInputError(
            f"--mix_probability: the {task.name} task cannot mix clips (its targets have no union); "
            "leave it at 0, or train a task that can (multilabel)"
        )
    logger.info("mixing a crop with another clip's with probability %g", data.mix_probability)
    return audiofolder.Mixing(task.mix, data.mix_probability)


def _log_environment(training: TrainingArguments) -> None:
    precision = "bf16" if training.bf16 else "fp16" if training.fp16 else "fp32"
    logger.info(
        "device %s, precision %s, transformers %s, torch %s",
        training.device,
        precision,
        transformers.__version__,
        torch.__version__,
    )


def _stopped_early(
    trainer: audiofolder.AudioTrainer, model_args: ModelArguments, training_args: TrainingArguments
) -> bool:
    """Whether early stopping ended the training before its last step (and says so)."""
    stopped_early = trainer.state.global_step < trainer.state.max_steps
    if stopped_early:
        logger.info(
            "stopped early at step %d of %d: %d evaluations without a better %s",
            trainer.state.global_step,
            trainer.state.max_steps,
            model_args.early_stopping_patience,
            training_args.metric_for_best_model,
        )
    return stopped_early


def evaluate_splits(
    trainer: audiofolder.AudioTrainer,
    eval_sets: dict[str, audiofolder.Windows],
    labels: list[str],
    training_loss: float,
    task: Task,
) -> tuple[dict[str, float], dict[str, Any], Task]:
    """The flat metrics (the training loss, each split's; no timings), each split's full report, and the task
    with what it chose on the validation split (``Task.fit``: per-class thresholds, say), which scores every
    split and which the model directory keeps."""
    trainer.compute_metrics = None
    outputs = {
        prefix: trainer.predict(windows, metric_key_prefix=prefix) for prefix, windows in eval_sets.items()
    }
    scores = {
        prefix: split_scores(task, eval_sets[prefix], out.predictions) for prefix, out in outputs.items()
    }
    validation = scores["eval"]
    task = task.configured(task.fit(validation, labels))
    metrics: dict[str, float] = {contract.TRAIN_LOSS: training_loss}
    reports: dict[str, Any] = {}
    for prefix, output in outputs.items():
        metrics.update(
            {
                k: float(v)
                for k, v in (output.metrics or {}).items()
                if k.startswith(f"{prefix}_") and not k.endswith(("_runtime", "_per_second"))
            }
        )
        metrics.update({f"{prefix}_{k}": v for k, v in task.split_metrics(scores[prefix], labels).items()})
        reports[prefix] = task.report(scores[prefix], labels)
        speakers = audiofolder.listed_speakers([clip.path for clip in eval_sets[prefix].clips])
        reports[prefix].update(task.group_report(scores[prefix], labels, speakers))
    return metrics, reports, task


def describe_run(
    *,
    model_args: ModelArguments,
    data_args: DataArguments,
    loaded: LoadedModel,
    inputs: Inputs,
    trainer: audiofolder.AudioTrainer,
    rules: health.HealthRules,
    stopped_early: bool,
    resume: str | None,
    targets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """evaluation.json's account of the run: the task, the model, the inputs, early stopping, health,
    checkpoints."""
    return {
        contract.TASK_KEY: model_args.task,
        "model_name_or_path": model_args.model_name_or_path,
        "pretrained": loaded.pretrained,
        "feature_encoder": {"frozen": loaded.frozen, "reason": loaded.freeze_reason},
        "max_length_seconds": data_args.max_length_seconds,
        "window_hop_seconds": inputs.hop / audio.TARGET_SAMPLE_RATE,
        "padding": f"to the longest input of a batch, {inputs.padding}",
        "clip_seconds": {"min": data_args.min_clip_seconds, "max": data_args.max_clip_seconds},
        **({"targets": dict(targets)} if targets else {}),
        "augmentation": inputs.augmentation.describe() if inputs.augmentation else None,
        "mix_probability": data_args.mix_probability,
        "early_stopping": {
            "patience": model_args.early_stopping_patience,
            "stopped_early": stopped_early,
            "epochs_trained": round(float(trainer.state.epoch or 0.0), 4),
        },
        contract.HEALTH_REPORT: rules.report.as_json(),
        "global_step": trainer.state.global_step,
        "resumed_from": resume,
        "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
    }


def main(argv: Sequence[str] | None = None) -> Outcome:
    """Parses arguments, loads the data and the model, trains, evaluates and writes the model directory."""
    model_args, data_args, training_args, health_args = parse_arguments(argv)
    paths = resolve_paths(data_args, training_args, os.environ)
    setup_logging(training_args)
    _log_environment(training_args)
    set_seed(training_args.seed)
    curves.prepare_tensorboard(training_args, data_args.tensorboard_dir, paths.output, os.environ)

    cache = audiofolder.DecodeCache(int(data_args.decoded_cache_gb * 2**30))
    task = load_task(model_args.task, model_args.task_settings)
    train, validation, test = load_splits(paths, data_args, training_args.seed, cache, task)
    background = load_background(paths, data_args, cache)
    labels = model_labels(task, model_args.model_name_or_path, train)
    targets = {
        split.name: described
        for split in (train, validation, test)
        if split is not None and (described := task.describe_targets([c.label for c in split.clips], labels))
    }
    for name, described in targets.items():
        logger.info("%s targets: %s", name, json.dumps(described, ensure_ascii=False))
    train, validation, test = usable_splits(task, labels, (train, validation, test))  # type: ignore[assignment]
    assert train is not None and validation is not None

    loaded = load_model(model_args, labels, task)
    inputs = build_inputs(loaded, data_args, labels, (train, validation, test), background, task)
    task = task.prepared(np.stack([np.asarray(task.target(clip.label, labels)) for clip in train.clips]))

    temporary = paths.checkpoints is None
    checkpoint_dir = paths.checkpoints or Path(tempfile.mkdtemp(prefix="checkpoints-"))
    training_args.output_dir = str(checkpoint_dir)
    resume = find_resume_checkpoint(training_args, checkpoint_dir, labels)
    logger.info(
        "checkpoints in %s; %s", checkpoint_dir, f"resuming from {resume}" if resume else "starting afresh"
    )

    names = metric_line_names(task)
    lines, rules, callbacks = build_callbacks(model_args, health_args, training_args, names)
    trainer = audiofolder.AudioTrainer(
        model=loaded.model,
        args=training_args,
        data_collator=inputs.collator,
        train_dataset=inputs.train_set,
        eval_dataset=inputs.eval_sets["eval"],
        processing_class=loaded.extractor,
        compute_metrics=functools.partial(split_metrics, task, labels, inputs.eval_sets["eval"]),
        compute_loss_func=task_loss(task),
        callbacks=[*callbacks, curves.TrainingCurves(paths.output, task)],
    )
    try:
        result = trainer.train(resume_from_checkpoint=resume)
        if rules.stopped:
            raise health.TrainingStopped(rules.stopped)
        stopped_early = _stopped_early(trainer, model_args, training_args)
        metrics, reports, task = evaluate_splits(
            trainer, inputs.eval_sets, labels, float(result.training_loss), task
        )
        metrics.update(rules.report.metrics())
        if trainer.is_world_process_zero():
            print_metric_lines(metrics, "train", ["loss"])
            for prefix in inputs.eval_sets:
                print_metric_lines(metrics, prefix, names)
            trainer.save_model(str(paths.model))
            write_model_files(paths.model, labels, data_args.max_length_seconds, inputs.hop, metrics, task)
            if model_args.export_onnx:
                for path in onnx_export.export_model_dir(loaded.model, paths.model):
                    logger.info("wrote %s", path)
            about = describe_run(
                model_args=model_args,
                data_args=data_args,
                loaded=loaded,
                inputs=inputs,
                trainer=trainer,
                rules=rules,
                stopped_early=stopped_early,
                resume=resume,
                targets=targets,
            )
            splits = {
                contract.TRAIN_CHANNEL: train,
                contract.VALIDATION_CHANNEL: validation,
                contract.TEST_CHANNEL: test,
                contract.NOISE_CHANNEL: background,
            }
            write_reports(paths.output, metrics, reports, splits=splits, about=about, task=task)
            model_card.write_card(
                paths.model,
                about=about,
                metrics=metrics,
                reports=reports,
                splits=splits,
                labels=labels,
                task=task,
                training=training_args,
                data=data_args,
                model=loaded.model,
            )
            logger.info("model directory %s, reports in %s", paths.model, paths.output)
    finally:
        if temporary:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return Outcome(metrics, paths.model, resume, lines.start_step, trainer.state.global_step)


def cli(argv: Sequence[str] | None = None) -> None:
    """The command (the source dir's ``train.py``): a mistake the user can fix ends as one line and exit
    status 2 (``ACOUSTIC_TRACEBACK=1``: its traceback); a run the health rules stop, exit status 1."""
    try:
        main(argv)
    except (TrainingInputError, audiofolder.DatasetLayoutError, health.TrainingStopped) as err:
        report_error(err)
        sys.exit(1 if isinstance(err, health.TrainingStopped) else USAGE_ERROR)


if __name__ == "__main__":
    cli()

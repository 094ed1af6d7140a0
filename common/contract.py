"""The contract between training (writer), serving (reader), the Lambdas and the stacks.

Every fact that more than one of them relies on is written here once: the data bucket's layout, the
training job's entry point, channels, checkpoint path and archives, the stack names, the model directory's
and the reports' file names, the metric lines and their regexes, the quality gate's metrics, content types,
the handler's environment and headers, and the windowing rule. A model directory is what ``train.py``
leaves in ``SM_MODEL_DIR``; SageMaker packs it as ``model.tar.gz`` and the inference containers unpack
it to ``/opt/ml/model`` unchanged.

Plain constants and small pure functions, standard library only: the CDK app imports this module, and
every bundle carries it (the training job's source dir, the model's ``code/``, the staging build, both
Lambda packages) at the same path, ``common/contract.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

# --- Files ---------------------------------------------------------------------------------------------
# Hugging Face files (written by save_pretrained): config.json (with id2label/label2id),
# model.safetensors, preprocessor_config.json.
# A staged dataset's index, written last (datasets/<name>/manifest.jsonl): its creation means the dataset is
# complete, which is what the retrain-on-new-data rule and the launcher wait for.
MANIFEST_FILE = "manifest.jsonl"
# A split folder whose clips carry more than a folder name can say (several labels, a transcription) lists
# them in METADATA_FILE, the audiofolder convention: a file_name column (paths relative to the split folder)
# and the task's column. Several labels share a cell, separated by LABEL_SEPARATOR; an empty cell is a clip
# without any (valid: no event).
METADATA_FILE = "metadata.csv"
FILE_NAME_COLUMN = "file_name"
LABELS_COLUMN = "labels"
LABEL_SEPARATOR = ";"
# A speech split's metadata.csv: each clip's transcription, and (optional) its speaker, which keeps a
# folder's own split speaker-disjoint and gives the report its per-speaker error rates.
TRANSCRIPTION_COLUMN = "transcription"
SPEAKER_COLUMN = "speaker"
# {"task": "classification", "labels": [...id order...], "sampling_rate": 16000, "max_length_seconds": 5.0,
#  "window_hop_seconds": 2.5}: written by training, read by serving, with these keys. A model without "task"
# is a classification model (it predates tasks).
LABELS_FILE = "labels.json"
TASK_KEY = "task"
LABELS_KEY = "labels"
SAMPLING_RATE_KEY = "sampling_rate"
WINDOW_SECONDS_KEY = "max_length_seconds"
HOP_SECONDS_KEY = "window_hop_seconds"
TASK_SETTINGS_KEY = "task_settings"  # what the task chose on validation (per-class thresholds...), if any
# Both reports are in the model directory and at the root of the job's output.tar.gz, where the
# promoter reads them; the promoter also keeps evaluation.json under evaluation/<job>/.
METRICS_FILE = "metrics.json"  # flat {metric_name: float}, the names in METRIC_NAMES
EVALUATION_FILE = "evaluation.json"  # the full evaluation report
ONNX_FILE = "model.onnx"  # optional fast path, written with --export_onnx
# Optional: model.onnx with int8 MatMul/Gemm weights (inference.quantize_int8). Serving quantizes at
# load when it is missing, which needs the onnx package (not in the serving image: it requires numpy 2).
ONNX_INT8_FILE = "model.int8.onnx"
CODE_DIR = "code"  # the inference handler, loaded by the toolkit from /opt/ml/model/code/
HANDLER_FILE = "inference.py"
MODEL_DIR = "/opt/ml/model"  # where the inference containers unpack MODEL_ARCHIVE

# --- What each runtime carries ---------------------------------------------------------------------------
# Every bundle keeps the repository's layout (common/, training/, serving/, ...), so a module imports the
# same way in the repository, the training job, the endpoint, the builds and the Lambdas. The training job's
# source dir holds the serving code too, and ships it onward: train.py copies these paths (from the source
# dir's root) into <model_dir>/code/, the serving entry as code/inference.py, which the toolkit imports.
SERVING_ENTRY = "serving/entry.py"
SERVING_CODE = (
    "common/__init__.py",
    "common/audio.py",
    "common/contract.py",
    "serving/__init__.py",
    "serving/inference.py",
    "tasks/__init__.py",
)
# ... and the model's task module (tasks/<task>.py), the one task the endpoint answers for.
TASKS_DIR = "tasks"
# Copied to <model_dir>/code/requirements.txt; the inference toolkit installs it at start-up.
SERVING_REQUIREMENTS = "serving/requirements.txt"

# --- The data bucket -----------------------------------------------------------------------------------
# Its layout: every IAM grant is scoped to one of these prefixes, and the stacks, the Lambdas, the staging
# tool and the operator commands read and write under them.
DATASETS_PREFIX = "datasets/"  # staged audiofolder datasets: <name>/{train,validation,test}/<label>/*
MODELS_PREFIX = "models/"  # training job outputs: <job>/output/{model,output}.tar.gz
CHECKPOINTS_PREFIX = "checkpoints/"  # per-job spot checkpoints: <job>/
EVALUATION_PREFIX = "evaluation/"  # evaluation reports attached to model packages: <job>/evaluation.json
DATACAPTURE_PREFIX = "datacapture/"  # endpoint data capture, when enabled
RAW_PREFIX = "raw/"  # your own clips before staging (the `folder` source): <name>/<label>/*.wav or a CSV
ASYNC_INPUT_PREFIX = "async-input/"  # requests to an async endpoint, uploaded by callers
ASYNC_OUTPUT_PREFIX = "async-output/"  # an async endpoint's responses
ASYNC_FAILURE_PREFIX = "async-failures/"  # an async endpoint's error responses
LOCKS_PREFIX = "locks/"  # leases that serialize the Lambdas' critical sections (lambdas/lease.py)
BATCH_INPUT_PREFIX = "batch-input/"  # batch transform requests: <prefix>/<files>
BATCH_OUTPUT_PREFIX = "batch-output/"  # batch transform answers: <prefix>/<file>.out
# The Debugger hook's tensors and the Profiler's system metrics, each with the reports of the rules that read
# them: <prefix><job>/{debug-output,profiler-output,rule-output}/.
DEBUG_PREFIX = "debug/"
# TensorBoard event files: the launcher's TensorBoardOutputConfig.S3OutputPath, under which SageMaker writes
# <job>/tensorboard-output/; the training role may write there.
TENSORBOARD_PREFIX = "tensorboard/"
PROFILER_PREFIX = "profiler/"

# --- The training job ------------------------------------------------------------------------------------
# The launcher passes this entry point to the training toolkit, which runs it from the source dir.
ENTRY_POINT = "train.py"
# train.py's argument that names the task a job trains (``--task``): a deployment of a task other than the
# default one sets it among the jobs' static hyperparameters.
TASK_ARGUMENT = "task"
# The training data's name, from the dataset prefix (datasets/<name>/): the model card names the data and, for
# a known source (esc50, fsd50k, ...), its license.
DATASET_NAME_ARGUMENT = "dataset_name"


def dataset_name(dataset_prefix: str) -> str:
    """``esc50`` for ``datasets/esc50/``: the last part of a dataset prefix."""
    return dataset_prefix.rstrip("/").rsplit("/", 1)[-1]


# Input channels: a staged dataset's split folders, each sent as the channel of the same name (train is
# required, validation and test are used when present), and the optional background-noise channel.
TRAIN_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"
TEST_CHANNEL = "test"
NOISE_CHANNEL = "noise"
DATASET_CHANNELS = (TRAIN_CHANNEL, VALIDATION_CHANNEL, TEST_CHANNEL)


def channel_variable(channel: str) -> str:
    """``SM_CHANNEL_<NAME>``: where the training toolkit tells the job a channel's files are."""
    return f"SM_CHANNEL_{channel.upper()}"


# Where SageMaker syncs a job's checkpoints with CheckpointConfig.S3Uri (spot jobs resume from it).
CHECKPOINT_DIR = "/opt/ml/checkpoints"
# What SageMaker packs at the end of a job, under <output path>/<job>/output/: SM_MODEL_DIR as the model
# archive and SM_OUTPUT_DATA_DIR (the reports) as the output archive.
MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"

# --- Stacks ----------------------------------------------------------------------------------------------
# The CloudFormation stack names people, the deploy project and the rehearsal use.
STACK_NAME_PREFIX = "AcousticShield-"


def stack_name(env_name: str, lifecycle: str) -> str:
    """``AcousticShield-<env>-<lifecycle>`` (lifecycle: Data, Training, Serving)."""
    return f"{STACK_NAME_PREFIX}{env_name}-{lifecycle}"


# --- Windows -------------------------------------------------------------------------------------------
# Training crops and evaluates windows of max_length_seconds; serving classifies a clip as the mean of
# its windows' probabilities. Windows overlap by half; train.py writes the hop it used into labels.json
# and serving reads it from there.


def window_hop(window: int) -> int:
    """Samples between the starts of consecutive windows of ``window`` samples."""
    return max(1, window // 2)


# --- Metrics ---------------------------------------------------------------------------------------------
# train.py prints one line per metric after every evaluation (metric_line: "eval_accuracy=0.9312"); the
# training job's metric definitions scrape them (metric_definitions) and the promoter reads the final
# values. METRICS_FILE has the same names.
METRIC_SPLITS = ("eval", "test")  # validation; test when the dataset has a test split
# After the split's prefix: the loss and the default task's metrics (tasks/classification.py; a test keeps
# the two equal). What other tasks print is theirs.
METRIC_LINE_NAMES = ("loss", "accuracy", "f1", "clip_accuracy", "clip_f1")
# Every task's first metric line on each split: its loss (train.py prints the loss, then the task's metrics).
LOSS_LINE = METRIC_LINE_NAMES[0]
TRAIN_LOSS = "train_loss"  # the training loss of the whole run, printed once at the end
METRIC_NAMES = (TRAIN_LOSS, *(f"{split}_{name}" for split in METRIC_SPLITS for name in METRIC_LINE_NAMES))
VALIDATION_LOSS = f"{METRIC_SPLITS[0]}_loss"  # logged after every evaluation; the overfit rule reads it
# The quality gate checks the metrics the task gates (its rules: the promoter's GATE_RULES). Test metrics
# decide when the dataset has a test split; validation ("eval") metrics otherwise.
GATE_SPLITS = ("test", "eval")
# What a tuning job may optimize: metrics printed after every evaluation of the validation split, and
# which way is better. The first is the default.
TUNING_OBJECTIVES = {"eval_f1": "Maximize", "eval_accuracy": "Maximize", "eval_loss": "Minimize"}
DEFAULT_TUNING_OBJECTIVE = next(iter(TUNING_OBJECTIVES))


# --- Training health ------------------------------------------------------------------------------------
# The job checks its own health (training/health.py: what SageMaker Debugger's built-in rules told people).
# Each rule that could be evaluated prints health_<rule>=1 (fired) or 0 (silent) and health_<rule>_value=<the
# measured value>; a rule that could not be evaluated prints nothing, and evaluation.json's "health" section
# says why. A NaN or infinite loss stops the job at once (nonfinite_loss).
HEALTH_RULES = (
    "loss_not_decreasing",  # the training loss stopped falling over the last logging windows
    "overfit",  # the gap between validation and training loss grew evaluation after evaluation
    "overtraining",  # the validation metric has not improved for several evaluations
    "vanishing_gradient",  # the gradient norm collapsed towards zero
    "exploding_gradient",  # the gradient norm blew up, or became NaN or infinite
    "nonfinite_loss",  # the loss became NaN or infinite: training stops
    "data_loading",  # waiting for batches took a large share of each step
    "gpu_utilization",  # the GPU was mostly idle (GPU instances only)
    "gpu_memory",  # the GPU's memory was nearly full (GPU instances only)
)
# evaluation.json's "health" section: {"parameters": {name: value, ...}, "rules": {rule: {"status": "fired" |
# "silent" | "not_evaluated", "value": float or null, "threshold": float or null, "step": the global step at
# which it fired (or null), "reason": what was measured, or why it was not evaluated, "advice": what to do}}}.
HEALTH_REPORT = "health"
HEALTH_STATUSES = ("fired", "silent", "not_evaluated")


def health_metric(rule: str) -> str:
    """``health_<rule>``: 1 when the rule fired, 0 when it was evaluated and stayed silent."""
    return f"health_{rule}"


def health_value_metric(rule: str) -> str:
    """``health_<rule>_value``: what the rule measured (the value it compared with its threshold)."""
    return f"health_{rule}_value"


HEALTH_METRIC_NAMES = tuple(
    name for rule in HEALTH_RULES for name in (health_metric(rule), health_value_metric(rule))
)
# A model whose run tripped one of these goes to manual approval, never straight to Approved (the config key
# health_blocking_rules chooses others).
DEFAULT_BLOCKING_HEALTH_RULES = ("loss_not_decreasing", "exploding_gradient")
# Everything a training job prints for its metric definitions: quality metrics, then health.
JOB_METRIC_NAMES = (*METRIC_NAMES, *HEALTH_METRIC_NAMES)
# CreateTrainingJob (API reference), AlgorithmSpecification.MetricDefinitions: at most 40 items.
MAX_METRIC_DEFINITIONS = 40
# A number as train.py prints it: an optional sign, digits with an optional point, an optional exponent.
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"


def metric_line(name: str, value: float) -> str:
    """The line train.py prints for one metric: six significant digits, scientific notation where a value
    needs it (``health_vanishing_gradient_value=3.2e-09``). NaN and infinity print as ``nan`` / ``inf``, which
    no metric regex reads: CloudWatch stores neither, and a health flag says it happened."""
    return f"{name}={value:.6g}"


def metric_regex(name: str) -> str:
    """The training job's regex for one metric; its group is the value of ``metric_line(name, ...)``."""
    return f"{name}=({_NUMBER})"


def job_metric_names(line_names: Sequence[str] = METRIC_LINE_NAMES) -> tuple[str, ...]:
    """Everything a training job of a task prints for its metric definitions, when the task's metric lines
    (after the split's prefix) are ``line_names``: the training loss, each split's lines, then health. The
    default task's are JOB_METRIC_NAMES."""
    splits = tuple(f"{split}_{name}" for split in METRIC_SPLITS for name in line_names)
    return (TRAIN_LOSS, *splits, *HEALTH_METRIC_NAMES)


def metric_definitions(line_names: Sequence[str] = METRIC_LINE_NAMES) -> list[dict[str, str]]:
    """``MetricDefinitions`` of the training job (and of a tuning job's training definition), for a task whose
    metric lines are ``line_names`` (default: the default task's)."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in job_metric_names(line_names)]


# --- Requests and responses ------------------------------------------------------------------------------
# The request content types the handler accepts (inference.py) and what it answers with; the promoter
# registers them on every model package, so a package advertises exactly what the endpoint serves.
JSON_CONTENT_TYPE = "application/json"
SNIFFED_CONTENT_TYPE = "application/octet-stream"  # the format is sniffed from the file's header
AUDIO_CONTENT_TYPES = (
    SNIFFED_CONTENT_TYPE,
    "audio/flac",
    "audio/mpeg",
    "audio/ogg",
    "audio/vnd.wave",
    "audio/wav",
    "audio/wave",
    "audio/x-flac",
    "audio/x-wav",
)
REQUEST_CONTENT_TYPES = (*AUDIO_CONTENT_TYPES, JSON_CONTENT_TYPE)
RESPONSE_CONTENT_TYPES = (JSON_CONTENT_TYPE,)
# What clients send for a file, by its suffix; anything else goes as SNIFFED_CONTENT_TYPE.
SUFFIX_CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".json": JSON_CONTENT_TYPE,  # {"base64": ..., "sample_rate"?: ..., "channels"?: ..., "segments"?: ...}
}
# SageMaker passes this header to the container untouched; "segments=true" in it (or in the Accept
# header's parameters, or a JSON body's field) asks for per-window labels.
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
SEGMENTS_KEY = "segments"
# The answer's other shared key: what the handler did to a request (downmixed, resampled...), when anything.
NOTES_KEY = "notes"
SEGMENTS_ATTRIBUTE = f"{SEGMENTS_KEY}=true"

# --- The handler's environment ----------------------------------------------------------------------------
# Where the inference toolkit finds the handler inside the model archive; set on every model.
ENV_PROGRAM = "SAGEMAKER_PROGRAM"  # the handler's file name inside code/
HANDLER_ENVIRONMENT = {ENV_PROGRAM: HANDLER_FILE, "SAGEMAKER_SUBMIT_DIRECTORY": f"{MODEL_DIR}/{CODE_DIR}"}
ENV_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"  # the model server starts this many workers
ENV_FAST_PATH = "ACOUSTIC_FAST_PATH"  # one of FAST_PATHS
ENV_THREADS = "ACOUSTIC_THREADS"  # intra-op threads per worker
ENV_MAX_AUDIO_SECONDS = "ACOUSTIC_MAX_AUDIO_SECONDS"  # longest clip accepted
ENV_MAX_REQUEST_BYTES = "ACOUSTIC_MAX_REQUEST_BYTES"  # largest request body accepted
# Most frames x channels one clip may decode to, at its own rate (default: ACOUSTIC_MAX_AUDIO_SECONDS of
# 48 kHz stereo): a few hundred KB of FLAC can declare 384 kHz in 8 channels.
ENV_MAX_DECODED_SAMPLES = "ACOUSTIC_MAX_DECODED_SAMPLES"
ENV_MAX_CHANNELS = "ACOUSTIC_MAX_CHANNELS"  # most channels one clip may have
FAST_PATHS = ("off", "onnx", "onnx-int8")  # PyTorch fp32; ONNX Runtime fp32; ONNX Runtime int8 MatMul/Gemm

# --- Launch events ---------------------------------------------------------------------------------------
# The train.py arguments an event may set (the launcher refuses every other name, with its reason), as
# name: (kind, lowest, highest). Everything else (paths, hub access, logging, the framework's own
# sagemaker_* values) is fixed by the deployment. tests/training/test_arguments.py parses each through
# train.py's own argument parser, so the list cannot name an argument the script does not take.
EVENT_HYPERPARAMETERS: dict[str, tuple[str, float | None, float | None]] = {
    "model_name_or_path": ("model", None, None),  # a Hugging Face id or a folder inside the source dir
    "freeze_feature_encoder": ("bool", None, None),
    "export_onnx": ("bool", None, None),
    "max_length_seconds": ("float", 0.1, 60.0),
    "validation_split_fraction": ("float", 0.01, 0.5),
    "num_train_epochs": ("float", 0.01, 1000.0),
    "max_steps": ("int", -1, 10_000_000),
    "learning_rate": ("float", 1e-8, 1.0),
    "weight_decay": ("float", 0.0, 1.0),
    "warmup_ratio": ("float", 0.0, 0.5),
    "per_device_train_batch_size": ("int", 1, 1024),
    "per_device_eval_batch_size": ("int", 1, 1024),
    "gradient_accumulation_steps": ("int", 1, 1024),
    "seed": ("int", 0, 2**32 - 1),
    "early_stopping_patience": ("int", 0, 1000),  # evaluations without a better metric; 0: off
    "min_clip_seconds": ("float", 0.0, 60.0),  # shorter clips are skipped
    "max_clip_seconds": ("float", 0.1, 3600.0),  # longer clips are skipped; also caps decoding
    "augment": ("bool", None, None),
    "gain_db": ("float", 0.0, 24.0),
    "noise_probability": ("float", 0.0, 1.0),
    "background_probability": ("float", 0.0, 1.0),  # needs the job's noise channel
    "min_snr_db": ("float", -10.0, 60.0),
    "max_snr_db": ("float", -10.0, 60.0),
    "time_shift_seconds": ("float", 0.0, 60.0),
}

# --- Instances --------------------------------------------------------------------------------------------
# SageMaker refuses a volume KMS key on instance types whose storage is NVMe instance store (encrypted by
# the hardware): ResourceConfig (training and tuning), TransformResources and ProductionVariant all say
# so. The SageMaker Python SDK's rule (sagemaker.utils.volume_size_supported): a "d" in the family name
# (c5d, g4dn, p4d, ...) or a family starting with g5, g6, p5 or trn1; trn2 and gr6 carry NVMe storage too.
_LOCAL_STORAGE_FAMILY_PREFIXES = ("g5", "g6", "gr6", "p5", "trn1", "trn2")


def instance_family(instance_type: str) -> str:
    """``g5`` of ``ml.g5.xlarge``; ValueError for anything that is not ``ml.<family>.<size>``."""
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[0] != "ml" or not parts[1] or not parts[2]:
        raise ValueError(f"{instance_type!r} is not a SageMaker instance type such as 'ml.g5.xlarge'")
    return parts[1]


def has_local_storage(instance_type: str) -> bool:
    """Whether ``instance_type`` stores on NVMe instance storage, so that no volume KMS key may be sent."""
    family = instance_family(instance_type)
    return "d" in family or family.startswith(_LOCAL_STORAGE_FAMILY_PREFIXES)


def volume_key(instance_type: str, key_arn: str) -> dict[str, str]:
    """``{"VolumeKmsKeyId": key_arn}`` where the instance type takes a volume key, else ``{}``."""
    return {} if has_local_storage(instance_type) else {"VolumeKmsKeyId": key_arn}

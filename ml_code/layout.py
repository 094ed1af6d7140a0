"""The contract shared by training (writer), serving (reader) and the stacks (configuration).

A model directory is what ``train.py`` leaves in ``SM_MODEL_DIR``; SageMaker packs it as
``model.tar.gz`` and the inference containers unpack it to ``/opt/ml/model`` unchanged. The handler's
settings are environment variables, which the Serving stack sets. Plain constants only: the CDK app
imports this module too.
"""

from __future__ import annotations

# Hugging Face files (written by save_pretrained): config.json (with id2label/label2id),
# model.safetensors, preprocessor_config.json.
# A staged dataset's index, written last (datasets/<name>/manifest.jsonl): its creation means the dataset is
# complete, which is what the retrain-on-new-data rule and the launcher wait for.
MANIFEST_FILE = "manifest.jsonl"
LABELS_FILE = "labels.json"  # {"labels": [...id order...], "sampling_rate": 16000, "max_length_seconds": 5.0}
METRICS_FILE = "metrics.json"  # flat {metric_name: float}
EVALUATION_FILE = "evaluation.json"  # the full evaluation report
ONNX_FILE = "model.onnx"  # optional fast path, written with --export_onnx
# Optional: model.onnx with int8 MatMul/Gemm weights (inference.quantize_int8). Serving quantizes at
# load when it is missing, which needs the onnx package (not in the serving image: it requires numpy 2).
ONNX_INT8_FILE = "model.int8.onnx"
CODE_DIR = "code"  # the inference handler, loaded by the toolkit from /opt/ml/model/code/

# What train.py copies from this source directory into <model_dir>/code/.
SERVING_CODE_FILES = ("inference.py", "audio.py", "layout.py")
# Copied to <model_dir>/code/requirements.txt; the inference toolkit installs it at start-up.
SERVING_REQUIREMENTS = "requirements-serving.txt"

# The request content types the handler accepts (inference.py) and what it answers with; the promoter
# registers them on every model package, so a package advertises exactly what the endpoint serves.
JSON_CONTENT_TYPE = "application/json"
AUDIO_CONTENT_TYPES = (
    "application/octet-stream",  # sniffed from the file's header
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

# The inference handler's environment.
ENV_FAST_PATH = "ACOUSTIC_FAST_PATH"  # one of FAST_PATHS
ENV_THREADS = "ACOUSTIC_THREADS"  # intra-op threads per worker
ENV_MAX_AUDIO_SECONDS = "ACOUSTIC_MAX_AUDIO_SECONDS"  # longest clip accepted
ENV_MAX_REQUEST_BYTES = "ACOUSTIC_MAX_REQUEST_BYTES"  # largest request body accepted
# Most frames x channels one clip may decode to, at its own rate (default: ACOUSTIC_MAX_AUDIO_SECONDS of
# 48 kHz stereo): a few hundred KB of FLAC can declare 384 kHz in 8 channels.
ENV_MAX_DECODED_SAMPLES = "ACOUSTIC_MAX_DECODED_SAMPLES"
ENV_MAX_CHANNELS = "ACOUSTIC_MAX_CHANNELS"  # most channels one clip may have
FAST_PATHS = ("off", "onnx", "onnx-int8")  # PyTorch fp32; ONNX Runtime fp32; ONNX Runtime int8 MatMul/Gemm

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

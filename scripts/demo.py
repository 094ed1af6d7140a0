"""The whole ML loop on this machine, no AWS account and no download needed.

1. generates a small labelled sound dataset (four synthetic event classes, mixed sample rates and
   channel counts, one corrupt clip),
2. stages it with the staging tool into the audiofolder layout (train/validation/test + manifest),
3. trains the shipped tiny wav2vec2 config with train.py exactly as the SageMaker job runs it
   (``ml_code/`` as working directory, ``SM_*`` environment),
4. packs the model directory as SageMaker does (``model.tar.gz``),
5. serves it with the local server speaking the SageMaker container contract and classifies fresh
   clips over HTTP, plus one broken request that must get a clear 4xx.

Everything lands in ``build/demo/``. Run it with ``make demo``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "demo"
CLASSES = ("siren", "beeps", "hum", "noise")
CLIPS_PER_CLASS = 30
# The tiny config starts from random weights, so its feature encoder must learn too (unfrozen), at a
# learning rate far above what fine-tuning a pretrained checkpoint wants.
TRAIN_ARGUMENTS = (
    "--model_name_or_path=configs/tiny-wav2vec2",
    "--max_length_seconds=1",
    "--num_train_epochs=15",
    "--learning_rate=3e-3",
    "--no_freeze_feature_encoder",
    "--export_onnx=true",
    "--disable_tqdm=true",
)


def say(step: str) -> None:
    print(f"\n=== {step}", flush=True)


def synthesize(label: str, rng: np.random.Generator, sample_rate: int, seconds: float) -> np.ndarray:
    """One clip of a class: the classes differ in spectrum and time structure, not in loudness."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    if label == "siren":  # a tone sweeping up and down
        f = 700 + 400 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
    elif label == "beeps":  # short tone bursts
        f0 = rng.uniform(1500, 2500)
        gate = (np.sin(2 * np.pi * rng.uniform(3, 6) * t) > 0.3).astype(float)
        x = gate * np.sin(2 * np.pi * f0 * t)
    elif label == "hum":  # mains hum with harmonics
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    else:  # broadband noise
        x = rng.standard_normal(t.size)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    return (x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def generate_dataset(raw: Path) -> None:
    rng = np.random.default_rng(7)
    rates = (8_000, 16_000, 22_050, 44_100)
    for label in CLASSES:
        (raw / label).mkdir(parents=True, exist_ok=True)
        for i in range(CLIPS_PER_CLASS):
            rate = rates[i % len(rates)]
            clip = synthesize(label, rng, rate, rng.uniform(0.8, 2.5))
            if i % 3 == 0:  # some stereo clips
                clip = np.stack([clip, 0.8 * clip], axis=1)
            sf.write(raw / label / f"{label}-{i:03d}.wav", clip, rate)
    (raw / "noise" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    print(f"{len(CLASSES) * CLIPS_PER_CLASS} clips in {len(CLASSES)} classes (+1 corrupt) in {raw}")


def run(command: list[str], **kwargs: object) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def serve_and_classify(model_tar: Path, fast_path: str) -> list[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_code.serve",
            "--model-dir",
            str(model_tar),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "ACOUSTIC_FAST_PATH": fast_path},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the local server did not come up; see its log above")
            time.sleep(0.5)
        print(
            f"serving {model_tar.name} on {base} (GET /ping, POST /invocations), ACOUSTIC_FAST_PATH={fast_path}"
        )
        rng = np.random.default_rng(2024)
        answers = []
        for label in CLASSES:
            path = OUT / f"query-{label}.flac"
            sf.write(path, synthesize(label, rng, 44_100, 3.0), 44_100)
            status, answer = post(f"{base}/invocations", path.read_bytes(), "audio/flac")
            answers.append(str(answer.get("label")))
            print(f"{path.name:22s} -> HTTP {status} {json.dumps(answer)}")
        status, answer = post(f"{base}/invocations", b"definitely not audio", "audio/wav")
        print(f"{'broken payload':22s} -> HTTP {status} {json.dumps(answer)}")
        if not 400 <= status < 500:
            raise SystemExit(f"a broken payload must get a 4xx answer, got {status}")
        correct = sum(a == label for a, label in zip(answers, CLASSES, strict=True))
        print(f"{correct}/{len(CLASSES)} fresh clips classified correctly")
        return answers
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    raw, staged = OUT / "raw", OUT / "datasets" / "synthetic"
    model_dir, evaluation = OUT / "model", OUT / "evaluation"

    say("1/5 generate a labelled dataset")
    generate_dataset(raw)

    say("2/5 stage it into the audiofolder layout")
    run(
        [
            sys.executable,
            "-m",
            "ml_code.stage",
            "folder",
            "--source-url",
            str(raw),
            "--to",
            str(staged),
            "--test-fraction",
            "0.2",
            "--no-progress",
        ],
        cwd=ROOT,
    )

    say("3/5 train (as the SageMaker training job runs train.py)")
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(staged / "train"),
        "SM_CHANNEL_VALIDATION": str(staged / "validation"),
        "SM_CHANNEL_TEST": str(staged / "test"),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(evaluation),
    }
    run([sys.executable, "train.py", *TRAIN_ARGUMENTS], cwd=ROOT / "ml_code", env=env)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    print(
        "metrics: "
        + ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items()) if k.startswith(("test_", "eval_")))
    )

    say("4/5 pack model.tar.gz (what SageMaker uploads to models/<job>/output/)")
    model_tar = OUT / "model.tar.gz"
    with tarfile.open(model_tar, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix(), recursive=False)
    print(
        f"{model_tar} ({model_tar.stat().st_size / 1e6:.1f} MB): {', '.join(sorted(p.name for p in model_dir.iterdir()))}"
    )

    say("5/5 serve it on the SageMaker container contract and classify fresh clips")
    eager = serve_and_classify(model_tar, "off")
    fast = serve_and_classify(model_tar, "onnx-int8")
    agree = sum(a == b for a, b in zip(eager, fast, strict=True))
    print(
        f"fast path (ONNX Runtime, int8 MatMul/Gemm) agrees with PyTorch fp32 on {agree}/{len(eager)} clips"
    )
    print(f"\nDone. Artifacts in {OUT.relative_to(ROOT)}/; infrastructure templates in cdk.out/.")


if __name__ == "__main__":
    main()

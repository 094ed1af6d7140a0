"""Keeps every environment on torch's CPU build, the one the project pins (``torch==2.13.0``).

``python scripts/torch_cpu.py pip-args`` prints the pip arguments ``make install`` adds so that torch comes as
the CPU build: nothing where pip already resolves a CPU build (a local wheel, macOS, Windows), else the
PyTorch CPU package index as an extra index (``TORCH_CPU_INDEX`` overrides it). On Linux, PyPI's torch is
the CUDA build, which pulls several GB of NVIDIA packages.

``python scripts/torch_cpu.py pin`` prints the pin itself: ``make install`` installs torch first, alone, and
no lock file has it (a lock's hashes would be PyPI's CUDA build's, not the CPU build's; see ``make lock``).

``python scripts/torch_cpu.py check`` runs after installing: it fails, saying why and what to do, if the
environment ended up with a CUDA build (the CPU index was unreachable and pip fell back to PyPI), unless
``ALLOW_CUDA_TORCH=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PIN = "torch==2.13.0"
CPU_INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")


def resolves_to_cpu_build() -> bool:
    """Whether pip, as configured here, would install a CPU build of the pinned torch."""
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed"),
            *("--quiet", "--disable-pip-version-check", "--report", "-", PIN),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if run.returncode != 0:
        return False
    (item,) = json.loads(run.stdout)["install"]
    version = item["metadata"]["version"]
    requires = " ".join(item["metadata"].get("requires_dist", []))
    return "+cpu" in version or "nvidia-" not in requires


def pip_args() -> str:
    return "" if resolves_to_cpu_build() else f"--extra-index-url {CPU_INDEX}"


def check() -> int:
    try:
        import torch
    except ImportError:
        return 0
    cuda = torch.version.cuda
    if cuda is None or os.environ.get("ALLOW_CUDA_TORCH") == "1":
        return 0
    print(
        f"{sys.prefix}: torch {torch.__version__} is a CUDA {cuda} build (several GB of NVIDIA packages): "
        f"the CPU index {CPU_INDEX} was not reachable. Point TORCH_CPU_INDEX at a mirror of it and run "
        "`make install` again, or keep this build with ALLOW_CUDA_TORCH=1.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "pip-args":
        print(pip_args())
    elif command == "pin":
        print(PIN)
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit("usage: torch_cpu.py pip-args | pin | check")

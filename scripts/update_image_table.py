"""Regenerates stacks/image_table.json from the SageMaker Python SDK's image tables.

The table holds the Hugging Face PyTorch training and inference images (repository, tag parts and
the ECR registry account per region). Run it after upgrading the SDK, and review the diff:

    pip install sagemaker-core && python scripts/update_image_table.py
    python scripts/update_image_table.py --source path/to/huggingface.json
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent.parent / "stacks" / "image_table.json"
OLDEST = (4, 49)  # older images predate the transformers APIs train.py relies on


def _sdk_table() -> tuple[dict[str, Any], str]:
    for package in ("sagemaker.core", "sagemaker"):
        try:
            ref = importlib.resources.files(package) / "image_uri_config" / "huggingface.json"
            return json.loads(ref.read_text()), f"{package} image_uri_config/huggingface.json"
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    raise SystemExit("install sagemaker-core (or pass --source) to read the SDK's image table")


def extract(table: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {"source": source}
    for scope in ("training", "inference"):
        versions: dict[str, Any] = {}
        for version, entry in table[scope]["versions"].items():
            if tuple(int(p) for p in version.split(".")[:2]) < OLDEST:
                continue
            frameworks = [k for k in entry if k.startswith("pytorch") and k != "version_aliases"]
            if not frameworks:
                continue
            framework = max(frameworks, key=lambda k: [int(p) for p in k[len("pytorch") :].split(".")])
            spec = entry[framework]
            versions[version] = {
                "pytorch": framework[len("pytorch") :],
                "py": spec["py_versions"][-1],
                "repository": spec["repository"],
                "container_version": spec["container_version"],
                "registries": dict(sorted(spec["registries"].items())),
            }
        out[scope] = {"versions": versions}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", type=Path, help="a huggingface.json image table (default: the installed SDK's)"
    )
    args = parser.parse_args()
    if args.source:
        table, source = json.loads(args.source.read_text()), f"{args.source.name}"
    else:
        table, source = _sdk_table()
    TARGET.write_text(json.dumps(extract(table, source), indent=2, sort_keys=True) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()

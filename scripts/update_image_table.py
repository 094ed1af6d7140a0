"""Regenerates infra/image_table.json from the SageMaker Python SDK's image tables.

The table holds the Hugging Face PyTorch training and inference images (repository, tag parts and
the ECR registry account per region, from ``image_uri_config/huggingface.json``) and the SageMaker
Debugger rule evaluator image (``image_uri_config/debugger.json``, what ``sagemaker.debugger``'s
``get_rule_container_image_uri`` resolves). Run it after upgrading the SDK, and review the diff:

    pip install sagemaker-core && python scripts/update_image_table.py
    python scripts/update_image_table.py --source path/to/image_uri_config --label "sagemaker-core 2.27.0"
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent.parent / "infra" / "image_table.json"
OLDEST = (4, 49)  # older images predate the transformers APIs train.py relies on
TABLES = ("huggingface.json", "debugger.json")


def _sdk_tables() -> tuple[dict[str, dict[str, Any]], str]:
    for package, distribution in (("sagemaker.core", "sagemaker-core"), ("sagemaker", "sagemaker")):
        try:
            folder = importlib.resources.files(package) / "image_uri_config"
            tables = {name: json.loads((folder / name).read_text()) for name in TABLES}
            return tables, f"{distribution} {importlib.metadata.version(distribution)}"
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    raise SystemExit("install sagemaker-core (or pass --source) to read the SDK's image tables")


def extract_debugger(table: dict[str, Any]) -> dict[str, Any]:
    """The rule evaluator image: one repository, tag ``latest``, a registry account per region."""
    versions = table["versions"]
    (tag,) = versions  # the SDK publishes one version of it, "latest"
    entry = versions[tag]
    return {
        "repository": entry["repository"],
        "tag": tag,
        "registries": dict(sorted(entry["registries"].items())),
    }


def extract(table: dict[str, Any], source: str, debugger: dict[str, Any] | None = None) -> dict[str, Any]:
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
    if debugger is not None:
        out["debugger"] = extract_debugger(debugger)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="a folder holding the SDK's huggingface.json and debugger.json (default: the installed SDK's)",
    )
    parser.add_argument("--label", help="how the table names its source, e.g. 'sagemaker-core 2.27.0'")
    args = parser.parse_args()
    if args.source:
        tables = {name: json.loads((args.source / name).read_text()) for name in TABLES}
        label = args.label or str(args.source)
    else:
        tables, label = _sdk_tables()
        label = args.label or label
    source = f"{label} image_uri_config/{' and '.join(TABLES)}"
    table = extract(tables["huggingface.json"], source, tables["debugger.json"])
    TARGET.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()

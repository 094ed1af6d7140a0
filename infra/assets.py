"""What each runtime's bundle ships, in one place: file by file, at the repository's paths.

Every bundle keeps the repository's layout, so a module imports the same way everywhere (``from common
import contract``). A bundle is the files of its runtime's folders plus the ``common/`` modules it imports;
``tests/test_bundles.py`` proves that each runtime imports every Python file it ships (what it ships
onward, ``contract.SERVING_CODE``, is declared there) and imports with the repository out of reach.
Operator commands (``tools/``) ship nowhere but the deploy build, which runs ``cdk deploy`` itself.
"""

from __future__ import annotations

from pathlib import Path

from common import contract

ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")

Bundle = dict[str, Path]  # path in the bundle -> the repository's file


# The files of a bundle that no import reads, and what reads them (tests/infra/test_bundles.py allows these).
DATA_FILES = {
    "requirements.txt": "the training toolkit installs the source dir's requirements before train.py runs",
    contract.SERVING_REQUIREMENTS: "shipped onward as code/requirements.txt, which the inference toolkit installs",
    "staging/requirements.txt": "the staging build installs it (infra/training/stager.py)",
    "training/configs/": "small model configurations: --model_name_or_path of jobs that need no download",
}


def tree(folder: str, root: Path = ROOT) -> Bundle:
    """Every file under ``folder`` (a path from ``root``, the repository's by default), caches and bytecode
    left out."""
    found: Bundle = {}
    for path in sorted((root / folder).rglob("*")):
        relative = path.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in relative.parts) or path.suffix in EXCLUDED_SUFFIXES:
            continue
        if path.is_file():
            found[relative.as_posix()] = path
    return found


def files(*names: str) -> Bundle:
    """The named files (paths from the repository's root), each at its own path."""
    return {name: ROOT / name for name in names}


def training_source_dir() -> Bundle:
    """SageMaker's ``sourcedir.tar.gz``: ``train.py`` and ``requirements.txt`` at its root (the toolkit runs
    the one and installs the other), the training package, every task, and the serving code it ships
    onward."""
    bundle = {
        contract.ENTRY_POINT: ROOT / "training" / "entry.py",
        "requirements.txt": ROOT / "training" / "requirements.txt",
        **{name: path for name, path in tree("training").items() if name not in ("training/entry.py",)},
        **tree(contract.TASKS_DIR),
        **files(contract.SERVING_ENTRY, contract.SERVING_REQUIREMENTS, *contract.SERVING_CODE),
        **files("common/cli.py"),  # train.py's one-line errors; the endpoint does not import it
    }
    del bundle["training/requirements.txt"]
    return dict(sorted(bundle.items()))


def staging_source() -> Bundle:
    """The staging build's source: the staging package and the common modules it imports."""
    return {
        **tree("staging"),
        **files("common/__init__.py", "common/audio.py", "common/cli.py", "common/contract.py"),
    }


def lambda_package(package: str) -> Bundle:
    """A Lambda function's own code (``lambdas/<package>/``), the Lambdas' ground floor (environment reader,
    lease) and the contracts; Powertools comes on top (``infra.python_function``)."""
    return {
        **tree(f"lambdas/{package}"),
        **files(
            "lambdas/__init__.py",
            "lambdas/environment.py",
            "lambdas/lease.py",
            "common/__init__.py",
            "common/contract.py",
            "common/lambda_contract.py",
        ),
    }


# What `cdk deploy` in the deploy build needs: the app, its pinned dependencies and every folder the stacks
# bundle or import, and the verification command (tools/invoke.py).
APP_FOLDERS = ("common", "infra", "lambdas", "serving", "staging", "tasks", "tools", "training")
APP_FILES = ("app.py", "cdk.json", "requirements.txt", "package.json", "package-lock.json")


def app_source() -> Bundle:
    """The CDK app as the deploy build runs it."""
    bundle = files(*APP_FILES)
    for folder in APP_FOLDERS:
        bundle.update(tree(folder))
    return bundle

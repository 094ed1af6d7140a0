"""Each bundle ships exactly what runs there: every Python file in it is imported by its runtime.

The bundles are the synthesized assets themselves (the training job's sourcedir.tar.gz, the staging build's
source, each Lambda package) and the model's ``code/`` that the training job's own function writes. Each is
imported as its runtime imports it, in the runtime's environment where this machine has it (.venv-train for
the job, .venv-toolkit for the endpoint), with the repository out of reach; then every first-party module
that loaded must come from the bundle, and every Python file the bundle ships must have loaded, except what
a runtime deliberately ships onward (``contract.SERVING_ENTRY``: the training job copies it into the model's
``code/``). A file that no import reads is allowed only when ``infra.assets.DATA_FILES`` says who reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import aws_cdk as cdk
import pytest

import tasks
from common import contract
from infra.app_builder import AcousticShieldApp
from infra.assets import DATA_FILES, ROOT
from training.train import copy_serving_code

FIRST_PARTY = ("common", "training", "serving", "staging", "lambdas", "infra", "tools", "standins")
# Imports a bundle's entry modules with the repository out of reach (its folders off sys.path, the editable
# install's finder gone), then lists every module that loaded from a file.
PROBE = """
import importlib, json, pathlib, sys
root, first_party = pathlib.Path(sys.argv[1]).resolve(), json.loads(sys.argv[2])
def holds_repository(entry):
    path = pathlib.Path(entry or ".").resolve()
    return path != root and any((path / name).is_dir() for name in first_party)
sys.path[:] = [str(root)] + [entry for entry in sys.path if not holds_repository(entry)]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
for name in sys.argv[3:]:
    importlib.import_module(name)
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()}))
"""
TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
TOOLKIT_PYTHON = ROOT / ".venv-toolkit" / "bin" / "python"


def probe(python: Path, bundle: Path, *modules: str) -> dict[str, str]:
    """``{module: file}`` of every module loaded from a file when ``modules`` are imported from ``bundle``."""
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make install`")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AWS_LAMBDA_FUNCTION_NAME")}
    run = subprocess.run(
        [str(python), "-c", PROBE, str(bundle), json.dumps(FIRST_PARTY), *modules],
        cwd=bundle,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return {name: file for name, file in json.loads(run.stdout.splitlines()[-1]).items() if file}


# The entry points a toolkit runs at a bundle's root (every other root-level module is a vendored library).
ENTRY_FILES = (contract.ENTRY_POINT, contract.HANDLER_FILE)


def shipped_code(bundle: Path) -> set[str]:
    """The bundle's own Python files (paths in it): an entry point at its root, or in a first-party folder."""
    return {
        path.relative_to(bundle).as_posix()
        for path in bundle.rglob("*.py")
        if path.relative_to(bundle).as_posix() in ENTRY_FILES
        or path.relative_to(bundle).parts[0] in FIRST_PARTY
    }


def unread_files(bundle: Path) -> list[str]:
    """Files that are neither Python nor declared data (``DATA_FILES``), and folders of third parties aside."""
    return sorted(
        name
        for path in bundle.rglob("*")
        if path.is_file()
        and path.suffix != ".py"
        and "__pycache__" not in path.parts
        and (len(path.relative_to(bundle).parts) == 1 or path.relative_to(bundle).parts[0] in FIRST_PARTY)
        and not any(
            (name := path.relative_to(bundle).as_posix()) == data
            or (name.startswith(data) and data.endswith("/"))
            for data in DATA_FILES
        )
    )


def assert_ships_what_runs(bundle: Path, loaded: dict[str, str], onward: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    # Every first-party module that loaded came from the bundle, not the repository
    strays = {
        name: file
        for name, file in loaded.items()
        if name.split(".")[0] in FIRST_PARTY and not Path(file).resolve().is_relative_to(bundle.resolve())
    }
    assert strays == {}
    # And every Python file the bundle ships was imported, or is declared as shipped onward
    imported = {
        Path(file).resolve().relative_to(bundle.resolve()).as_posix()
        for file in loaded.values()
        if Path(file).resolve().is_relative_to(bundle.resolve())
    }
    assert shipped_code(bundle) - imported == onward
    # And every other file is data that something reads
    assert unread_files(bundle) == []


def synthesized_asset(dev_app: AcousticShieldApp, marker: str) -> Path:
    """The one asset folder of dev's Training stack that holds ``marker`` (a path) and no infra/ folder."""
    outdir = Path(cdk.Stage.of(dev_app.training).outdir)  # type: ignore[union-attr]
    found = {p for p in outdir.glob("asset.*") if (p / marker).exists() and not (p / "infra").exists()}
    assert len(found) == 1, found
    return found.pop()


def test_the_training_source_dir_ships_what_the_job_imports_and_the_serving_code(
    dev_app: AcousticShieldApp, tmp_path: Path
) -> None:
    # Given the Training stack's sourcedir.tar.gz, unpacked as the training toolkit unpacks it
    outdir = Path(cdk.Stage.of(dev_app.training).outdir)  # type: ignore[union-attr]
    source = dev_app.training.source_dir  # type: ignore[union-attr]
    (archive,) = [p for p in outdir.glob("asset.*") if p.name.startswith(f"asset.{source.asset_hash}")]
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    # When train.py and every task (the job runs the one --task names) are imported there, in the training
    # image's environment (train.py runs main only as a script)
    loaded = probe(TRAIN_PYTHON, tmp_path, "train", *(f"tasks.{name}" for name in tasks.known()))
    # Then it ships what the job imports, and the serving entry it ships onward into the model's code/
    assert_ships_what_runs(tmp_path, loaded, onward={contract.SERVING_ENTRY})
    # And its files are the repository's, the entry point being training/entry.py
    assert (tmp_path / contract.ENTRY_POINT).read_bytes() == (ROOT / "training" / "entry.py").read_bytes()
    for name in shipped_code(tmp_path) - {contract.ENTRY_POINT}:
        assert (tmp_path / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_the_models_code_ships_what_the_endpoint_imports(tmp_path: Path) -> None:
    # Given the code/ folder the training job writes into the model directory (its own function)
    code = tmp_path / contract.CODE_DIR
    copy_serving_code(code)
    # When the inference toolkit's way is followed (code/ is the import root; it imports inference, whose
    # model_fn imports the model's task), in the inference image's environment
    loaded = probe(TOOLKIT_PYTHON, code, Path(contract.HANDLER_FILE).stem, f"tasks.{tasks.DEFAULT_TASK}")
    # Then it ships exactly what the endpoint imports
    assert_ships_what_runs(code, loaded)


def test_the_staging_build_ships_what_the_staging_command_imports(dev_app: AcousticShieldApp) -> None:
    # Given the staging build's source (python -m staging runs staging/__main__.py)
    bundle = synthesized_asset(dev_app, "staging/__main__.py")
    # When the command's module is imported with the repository out of reach
    loaded = probe(Path(sys.executable), bundle, "staging.__main__")
    # Then it ships exactly what the command imports, and nothing of training or serving
    assert_ships_what_runs(bundle, loaded)
    assert not (bundle / "training").exists() and not (bundle / "serving").exists()


@pytest.mark.parametrize("package_name", ["launcher", "promoter"])
def test_each_lambda_package_ships_what_its_handler_imports(
    dev_app: AcousticShieldApp, package_name: str
) -> None:
    # Given the function's synthesized package (Powertools beside it)
    bundle = synthesized_asset(dev_app, f"lambdas/{package_name}/handler.py")
    # When its handler module is imported, as the Lambda runtime does, with the repository out of reach
    loaded = probe(Path(sys.executable), bundle, f"lambdas.{package_name}.handler")
    # Then it ships exactly what the handler imports: its own modules, the ground floor, the contracts
    assert_ships_what_runs(bundle, loaded)
    assert not (bundle / "lambdas" / ({"launcher", "promoter"} - {package_name}).pop()).exists()
    # And those are the repository's files, byte for byte
    for name in shipped_code(bundle):
        assert (bundle / name).read_bytes() == (ROOT / name).read_bytes(), name


def test_the_probe_finds_a_file_no_runtime_imports(dev_app: AcousticShieldApp, tmp_path: Path) -> None:
    # Given a Lambda package with a stray module in the function's folder
    bundle = synthesized_asset(dev_app, "lambdas/launcher/handler.py")
    copy = tmp_path / "package"
    subprocess.run(["cp", "-r", str(bundle), str(copy)], check=True)
    (copy / "lambdas" / "launcher" / "stray.py").write_text("VALUE = 1\n")
    # When the handler is imported there / Then the stray file is the one the check names
    loaded = probe(Path(sys.executable), copy, "lambdas.launcher.handler")
    with pytest.raises(AssertionError, match=r"stray\.py"):
        assert_ships_what_runs(copy, loaded)

"""The training source dir as the container sees it: the Training stack's sourcedir.tar.gz, unpacked."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from infra.assets import training_source_dir
from infra.bundling import write_tar_gz


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The asset the Training stack uploads, unpacked where a test runs ``python train.py`` from it, as
    SageMaker's training toolkit does (its working directory and import root)."""
    root = tmp_path_factory.mktemp("sourcedir")
    archive = root / "sourcedir.tar.gz"
    write_tar_gz(training_source_dir(), archive)
    unpacked = root / "code"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked

"""Reading split zip archives (FSD50K's .z01 … .zip) part by part."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from staging import StagingError
from staging.splitzip import MultiPartZip, disk_count, part_paths
from tests.staging.archives import audio_zip, split_zip, wav


def _write_parts(folder: Path, stem: str, parts: list[bytes]) -> Path:
    for index, part in enumerate(parts[:-1], start=1):
        (folder / f"{stem}.z{index:02d}").write_bytes(part)
    last = folder / f"{stem}.zip"
    last.write_bytes(parts[-1])
    return last


def test_members_spanning_part_boundaries_are_read_intact(tmp_path):
    # Given a deflated archive of 12 clips cut into 3000-byte parts
    fnames = [str(i) for i in range(12)]
    last = _write_parts(tmp_path, "sounds", split_zip(audio_zip("sounds", fnames, seed=5), 3000))

    # When the parts are opened as one archive
    count = disk_count(last)
    archive = MultiPartZip(part_paths(last, count))

    # Then the end record gives the number of parts, and every member inflates to the original bytes
    assert count == len(list(tmp_path.iterdir())) > 3
    assert sorted(archive.names()) == sorted(f"sounds/{f}.wav" for f in fnames)
    for i, fname in enumerate(fnames):
        assert archive.read(f"sounds/{fname}.wav") == wav(5 + i)


@pytest.mark.skipif(
    shutil.which("zip") is None, reason="Info-ZIP's zip is not installed (apt-get install zip)"
)
def test_an_archive_split_by_info_zip_is_read_intact(tmp_path):
    # Given an archive that Info-ZIP's own `zip -s 64k` split into parts
    source = tmp_path / "src" / "clips"
    source.mkdir(parents=True)
    originals = {}
    for i in range(60):
        originals[f"clips/{i}.wav"] = wav(i, seconds=0.25)
        (source / f"{i}.wav").write_bytes(originals[f"clips/{i}.wav"])
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["zip", "-q", "-s", "64k", "-r", str(out / "clips.zip"), "clips"], cwd=source.parent, check=True
    )

    # When it is read part by part
    last = out / "clips.zip"
    archive = MultiPartZip(part_paths(last, disk_count(last)))

    # Then there were several parts and every member reads back intact
    assert disk_count(last) > 2
    assert {name: archive.read(name) for name in archive.names() if name.endswith(".wav")} == originals


def test_a_missing_part_is_a_clear_error(tmp_path):
    # Given only the last part of a split archive
    parts = split_zip(audio_zip("sounds", [str(i) for i in range(12)], seed=5), 3000)
    last = tmp_path / "sounds.zip"
    last.write_bytes(parts[-1])

    # When it is opened alone
    with pytest.raises(StagingError) as raised:
        MultiPartZip([last])

    # Then the error says which part the directory is on and what to download
    assert f"says its directory is on part {len(parts)} but only 1 part(s) were given" in str(raised.value)

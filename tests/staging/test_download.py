"""Downloads over HTTP: resumed with Range requests, checksum-verified, cached."""

from __future__ import annotations

import hashlib

from tests.staging.archives import esc50_zip

ARCHIVE = "ESC-50-master.zip"


def test_an_interrupted_download_resumes_where_it_stopped(http_files, run_stage, tmp_path):
    # Given a server whose first response breaks off after 3000 bytes
    data = esc50_zip()
    http_files.files[ARCHIVE] = data
    http_files.cut[ARCHIVE] = 3000

    # When staging downloads the archive
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(tmp_path / "out"))

    # Then the second request asks only for the rest, and the assembled archive is the original
    assert result.code == 0, result.err
    assert http_files.requests == [(ARCHIVE, None), (ARCHIVE, "bytes=3000-")]
    cached = tmp_path / "cache" / "esc50" / ARCHIVE
    assert cached.read_bytes() == data
    sidecar = cached.with_name(ARCHIVE + ".sha256").read_text()
    assert sidecar.split()[0] == hashlib.sha256(data).hexdigest()
    assert "download interrupted" in result.err


def test_a_partial_download_left_by_an_earlier_run_is_resumed(http_files, run_stage, tmp_path):
    # Given the first 5000 bytes of the archive left in the cache by a run that was killed
    data = esc50_zip()
    http_files.files[ARCHIVE] = data
    part = tmp_path / "cache" / "esc50" / f"{ARCHIVE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:5000])

    # When staging runs again
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(tmp_path / "out"))

    # Then only the missing bytes are requested and the staging succeeds
    assert result.code == 0, result.err
    assert http_files.requests == [(ARCHIVE, "bytes=5000-")]
    assert (tmp_path / "cache" / "esc50" / ARCHIVE).read_bytes() == data


def test_a_server_without_ranges_makes_the_download_start_over(http_files, run_stage, tmp_path):
    # Given a partial download and a server that ignores Range headers
    data = esc50_zip()
    http_files.files[ARCHIVE] = data
    http_files.ranges = False
    part = tmp_path / "cache" / "esc50" / f"{ARCHIVE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)

    # When staging runs
    result = run_stage("esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(tmp_path / "out"))

    # Then the whole archive is downloaded again instead of appended to the partial file
    assert result.code == 0, result.err
    assert (tmp_path / "cache" / "esc50" / ARCHIVE).read_bytes() == data


def test_a_cached_archive_is_reused_and_a_damaged_one_downloaded_again(http_files, run_stage, tmp_path):
    # Given an archive downloaded once
    data = esc50_zip()
    http_files.files[ARCHIVE] = data
    url = http_files.url(ARCHIVE)
    run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "out"))

    # When staging runs again, then again after the cached copy was damaged
    run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "out"))
    requests_after_reuse = len(http_files.requests)
    cached = tmp_path / "cache" / "esc50" / ARCHIVE
    cached.write_bytes(data[:-10] + b"0123456789")
    result = run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "out"))

    # Then the intact copy was used without a request, and the damaged one was fetched again
    assert requests_after_reuse == 1
    assert len(http_files.requests) == 2
    assert cached.read_bytes() == data
    assert "does not match its recorded sha256" in result.err


def test_a_pinned_sha256_that_does_not_match_fails_clearly(http_files, run_stage, tmp_path):
    # Given the archive and a pin for different content
    http_files.files[ARCHIVE] = esc50_zip()
    pin = "0" * 64

    # When staging runs with that pin
    result = run_stage(
        "esc50", "--source-url", http_files.url(ARCHIVE), "--to", str(tmp_path / "out"), "--sha256", pin
    )

    # Then it fails in one line before staging anything, and keeps no unverified download
    assert result.code == 2
    assert "does not match the pinned 000000" in result.err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache" / "esc50").iterdir())


def test_a_missing_archive_is_a_one_line_http_error(http_files, run_stage, tmp_path):
    # Given a server without the archive
    url = http_files.url("nothing-here.zip")

    # When staging asks for it
    result = run_stage("esc50", "--source-url", url, "--to", str(tmp_path / "out"))

    # Then the error names the URL and the HTTP status
    assert result.code == 2
    assert result.err.strip().splitlines()[-1] == f"error: {url}: HTTP 404 Not Found"


def test_a_download_that_is_not_a_zip_is_dropped_from_the_cache(http_files, run_stage, tmp_path):
    # Given a server that answers with something other than the archive
    http_files.files["ESC-50-master.zip"] = b"<html>rate limited</html>"

    # When staging downloads it
    result = run_stage(
        "esc50", "--source-url", http_files.url("ESC-50-master.zip"), "--to", str(tmp_path / "o")
    )

    # Then the error says so, and the next run will not reuse the bad copy
    assert result.code == 2
    assert "is not a zip archive" in result.err and "run again to download it afresh" in result.err
    assert not list((tmp_path / "cache" / "esc50").iterdir())

"""The rescan's fingerprints: full scans only when a version directory changed, not every second for every file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ovmsd.source.fingerprints import FingerprintCache, directory_signature
from ovmsd.source.repository import fingerprint


def version_dir(tmp_path: Path, files: int = 50) -> Path:
    folder = tmp_path / "model" / "1"
    (folder / "weights").mkdir(parents=True)
    for index in range(files):
        (folder / "weights" / f"part-{index}.bin").write_bytes(b"x" * index)
    (folder / "model.xml").write_text("<net/>")
    return folder


def test_a_settled_directory_is_answered_from_memory(tmp_path: Path) -> None:
    folder = version_dir(tmp_path, files=2000)
    cache = FingerprintCache(enabled=True)
    first = cache.fingerprint(folder)
    assert first == fingerprint(folder) and len(first) == 2001
    for _ in range(20):
        assert cache.fingerprint(folder) == first
    assert cache.full_scans == 1


def test_added_removed_and_renamed_files_are_seen_without_events(tmp_path: Path) -> None:
    folder = version_dir(tmp_path)
    cache = FingerprintCache(enabled=True)
    cache.fingerprint(folder)
    for change in (
        lambda: (folder / "weights" / "new.bin").write_bytes(b"new"),
        lambda: (folder / "weights" / "part-3.bin").unlink(),
        lambda: (folder / "model.xml").rename(folder / "renamed.xml"),
        lambda: (folder / "weights" / "deeper").mkdir(),
    ):
        time.sleep(0.01)  # mtimes have nanoseconds, but some file systems round them
        change()
        assert cache.fingerprint(folder) == fingerprint(folder)
    assert cache.full_scans == 5


def test_a_file_rewritten_in_place_is_seen_through_the_watchers_event(tmp_path: Path) -> None:
    folder = version_dir(tmp_path)
    cache = FingerprintCache(enabled=True)
    before = cache.fingerprint(folder)
    signature = directory_signature(folder)
    target = folder / "weights" / "part-7.bin"
    target.write_bytes(b"rewritten in place, same name")
    assert directory_signature(folder) == signature, "an in-place rewrite does not touch the directories"
    assert cache.fingerprint(folder) == before, "without an event the cache cannot know"
    cache.changed({target})
    after = cache.fingerprint(folder)
    assert after != before and after == fingerprint(folder)


def test_a_missed_event_is_caught_once_the_entry_is_old(tmp_path: Path) -> None:
    folder = version_dir(tmp_path)
    cache = FingerprintCache(max_age_s=0.05, enabled=True)
    before = cache.fingerprint(folder)
    (folder / "model.xml").write_text("<net version='2'/>")
    os.utime(folder / "model.xml", ns=(1, 1))
    time.sleep(0.1)
    assert cache.fingerprint(folder) != before


def test_a_missing_directory_has_an_empty_fingerprint_and_no_entry(tmp_path: Path) -> None:
    cache = FingerprintCache(enabled=True)
    assert cache.fingerprint(tmp_path / "nope") == ()
    assert cache.fingerprint(tmp_path / "nope") == ()
    assert cache.full_scans == 2


def test_the_config_digest_reads_at_most_the_size_limit(tmp_path: Path) -> None:
    from ovmsd.source.updates import config_digest

    config = tmp_path / "config.json"
    with config.open("wb") as out:  # a sparse 1 TB file: reading it whole would never end
        out.truncate(1 << 40)
    started = time.monotonic()
    assert config_digest(config, max_bytes=1 << 20) is not None
    assert time.monotonic() - started < 5
    small = tmp_path / "small.json"
    small.write_text('{"model_config_list": []}')
    assert config_digest(small, 100) == config_digest(small) != config_digest(config, 100)


def test_a_version_a_mirror_installed_is_settled_at_once(tmp_path: Path) -> None:
    from ovmsd.source.repository import MIRROR_MANIFEST, is_settled

    folder = version_dir(tmp_path, files=3)
    now = time.time()
    assert not is_settled(folder, quiet_s=1.0, now=now), "just written, not renamed: wait for quiet"
    (folder / MIRROR_MANIFEST).write_text("{}")
    assert is_settled(folder, quiet_s=1.0, now=now)


def test_without_watcher_events_every_fingerprint_is_full(tmp_path: Path) -> None:
    """A manager without a watcher (no events) must still see a file rewritten in place."""
    folder = version_dir(tmp_path)
    cache = FingerprintCache()
    before = cache.fingerprint(folder)
    (folder / "weights" / "part-7.bin").write_bytes(b"rewritten in place")
    assert cache.fingerprint(folder) != before
    cache.enable()
    cache.fingerprint(folder)
    cache.clear()  # a config reload: everything is looked at again
    assert cache.fingerprint(folder) == fingerprint(folder) and cache.full_scans == 4

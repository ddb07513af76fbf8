"""The object-store mirror against a real S3 API (moto's server on 127.0.0.1), without a daemon."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ovmsd.config.loader import check_config_text
from ovmsd.config.models import StoreUrl
from ovmsd.source.objectstore import MANIFEST, PARTIAL, Mirror, MirrorSet, s3_repository
from ovmsd.source.s3 import S3Repository, StoredObject, endpoint_override
from tests.support.s3 import Bucket, S3Server, s3

__all__ = ["s3"]  # the fixture

INTERVAL_S = 0.3


def wait_for(condition: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def bucket(s3: S3Server) -> Bucket:
    return Bucket(s3)


@pytest.fixture
def mirrors() -> Iterator[list[Mirror]]:
    """Every mirror a test makes is stopped."""
    made: list[Mirror] = []
    yield made
    for mirror in made:
        mirror.stop()


def make_mirror(mirrors: list[Mirror], url: str, cache: Path, interval_s: float = INTERVAL_S, **kwargs: Any) -> Mirror:
    store = StoreUrl.parse(url)
    mirror = Mirror(store, cache / store.mirror_name(), cache / PARTIAL, interval_s=interval_s, **kwargs)
    mirrors.append(mirror)
    return mirror


def tree(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def test_a_stable_version_is_mirrored_whole_and_reused_after_a_restart(
    bucket: Bucket, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    bucket.put("m/1/model.xml", b"<xml/>")
    bucket.put("m/1/model.bin", b"\0" * 1000)
    bucket.put("m/1/assets/vocab.txt", b"a b c")
    bucket.put("m/README", b"not a version")
    mirror = make_mirror(mirrors, bucket.url("m"), tmp_path)
    mirror.start()
    assert mirror.wait_first_sync(15)
    version = mirror.local_dir / "1"
    assert tree(version) == {"assets/vocab.txt": b"a b c", "model.bin": b"\0" * 1000, "model.xml": b"<xml/>"}
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["url"] == bucket.url("m") and len(manifest["objects"]) == 3
    assert mirror.status()["versions"] == [1] and mirror.status()["error"] is None
    assert list((tmp_path / PARTIAL).iterdir()) == [], "no download left behind"
    mirror.stop()
    inode = version.stat().st_ino

    again = make_mirror(mirrors, bucket.url("m"), tmp_path)
    again.start()
    assert again.wait_first_sync(15)
    assert version.stat().st_ino == inode, "the cached copy matches the store: not downloaded again"


def test_a_version_uploaded_object_by_object_is_downloaded_once_complete(
    bucket: Bucket, tmp_path: Path, mirrors: list[Mirror], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ovmsd.source.objectstore")
    bucket.put("m/1/model.xml", b"v1")
    downloads: list[int] = []
    installed = threading.Event()

    def counting(url: StoreUrl) -> Any:  # the real repository, counting downloads per version
        real = s3_repository(url)

        class Counting:
            def list(self) -> Any:
                return real.list()

            def download(self, version: int, obj: StoredObject, dest: Path, stopped: Callable[[], bool]) -> bool:
                downloads.append(version)
                return real.download(version, obj, dest, stopped)

        return Counting()

    mirror = make_mirror(mirrors, bucket.url("m"), tmp_path, repository=counting, on_change=installed.set)
    mirror.start()
    assert mirror.wait_first_sync(15)
    installed.clear()
    seen_changing = False
    for index in range(8):  # one object every 0.1 s, faster than the listings (every 0.3 s)
        bucket.put(f"m/2/part{index}", bytes([index]) * 100)
        time.sleep(0.1)
        assert not (mirror.local_dir / "2").exists(), f"version 2 installed after {index + 1} of 8 objects"
        seen_changing = seen_changing or 2 in mirror.status()["changing"]
    wait_for(lambda: (mirror.local_dir / "2").exists(), what="version 2 installed once stable")
    assert len(tree(mirror.local_dir / "2")) == 8
    assert downloads.count(2) == 8, "downloaded once, whole"
    assert seen_changing or "version 2: objects still changing" in caplog.text, "seen unstable, and waited"
    assert installed.is_set()


def test_a_changed_version_is_swapped_in_and_a_removed_one_removed(
    bucket: Bucket, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    bucket.put("m/1/model.xml", b"one")
    bucket.put("m/1/old.txt", b"old")
    mirror = make_mirror(mirrors, bucket.url("m"), tmp_path)
    mirror.start()
    assert mirror.wait_first_sync(15)
    version = mirror.local_dir / "1"
    missing: list[float] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:  # the version directory never disappears while it is replaced
        while watching.is_set():
            if not (version / "model.xml").exists():
                missing.append(time.monotonic())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        bucket.put("m/1/model.xml", b"one, again")
        bucket.delete_prefix("m/1/old.txt")
        wait_for(lambda: tree(version) == {"model.xml": b"one, again"}, what="version 1 replaced")
    finally:
        watching.clear()
        watcher.join()
    assert missing == []
    bucket.put("m/2/model.xml", b"two")
    wait_for(lambda: (mirror.local_dir / "2").exists(), what="version 2 mirrored")
    bucket.delete_prefix("m/1/")
    wait_for(lambda: not version.exists(), what="version 1 removed")
    # the status is written just after the directory goes: a moment later under load
    wait_for(lambda: mirror.status()["versions"] == [2], what="status lists version 2 only")


def test_an_unreachable_store_keeps_the_cache_and_recovers_on_the_same_port(
    s3: S3Server, bucket: Bucket, tmp_path: Path, mirrors: list[Mirror], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ovmsd.source.objectstore")
    bucket.put("m/1/model.xml", b"one")
    errors: list[int] = []
    mirror = make_mirror(mirrors, bucket.url("m"), tmp_path, on_error=lambda: errors.append(1), backoff_cap_s=1.0)
    mirror.start()
    assert mirror.wait_first_sync(15)
    s3.stop()
    wait_for(lambda: mirror.status()["error"] is not None, what="the error recorded")
    assert "cannot list" in mirror.status()["error"]
    wait_for(lambda: len(errors) >= 3, what="retried")
    assert (mirror.local_dir / "1" / "model.xml").read_bytes() == b"one", "the cache is kept"
    assert caplog.text.count("the cached copy keeps serving") == 1, "logged once, not on every retry"
    s3.start()
    bucket.put("m/2/model.xml", b"two")
    wait_for(lambda: mirror.status()["error"] is None, what="recovered")
    wait_for(lambda: (mirror.local_dir / "2").exists(), what="syncing again")
    assert "reachable again" in caplog.text
    assert mirror.status()["errors"] == len(errors)


def test_denied_access_is_an_error_not_an_empty_repository(
    bucket: Bucket, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    mirror = make_mirror(mirrors, "s3://no-such-bucket-here/m", tmp_path)
    mirror.start()
    assert mirror.wait_first_sync(15)
    assert "NoSuchBucket" in mirror.status()["error"]


def test_stopping_abandons_a_download_and_removes_its_temporary_directory(
    bucket: Bucket, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    bucket.put("m/1/model.bin", b"\1" * (3 * 1024 * 1024))
    downloading = threading.Event()

    def slow(url: StoreUrl) -> Any:
        real = s3_repository(url)

        class Slow:
            def list(self) -> Any:
                return real.list()

            def download(self, version: int, obj: StoredObject, dest: Path, stopped: Callable[[], bool]) -> bool:
                downloading.set()
                wait_for(stopped, what="the stop")  # the download is under way when the stop comes
                return real.download(version, obj, dest, stopped)

        return Slow()

    mirror = make_mirror(mirrors, bucket.url("m"), tmp_path, repository=slow)
    mirror.start()
    assert downloading.wait(15)
    started = time.monotonic()
    mirror.stop()
    assert time.monotonic() - started < 5
    assert not mirror._thread.is_alive()
    assert list((tmp_path / PARTIAL).iterdir()) == []
    assert not (mirror.local_dir / "1").exists()


def test_the_mirror_set_localizes_starts_and_discards(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("a/1/model.xml", b"a")
    text = json.dumps(
        {
            "model_config_list": [
                {"config": {"name": "a", "base_path": bucket.url("a")}},
                {"config": {"name": "local", "base_path": str(tmp_path / "local")}},
            ]
        }
    )
    result = check_config_text(text)
    assert result.issues == () or list(result.issues) == []
    config = result.config
    assert config is not None
    remote = config.model("a")
    assert remote is not None and remote.source_url == bucket.url("a") and not remote.base_path.is_absolute()
    errors: list[str] = []
    mirror_set = MirrorSet(tmp_path / "cache", interval_s=INTERVAL_S, on_error=errors.append)
    try:
        localized = mirror_set.localize(config)
        a = localized.model("a")
        assert a is not None and a.base_path == tmp_path / "cache" / remote.base_path
        assert localized.model("local") == config.model("local")
        assert mirror_set.configure(localized, timeout=15) == []
        assert (a.base_path / "1" / "model.xml").read_bytes() == b"a", "the first sync is done when it returns"
        assert mirror_set.status_by_model()["a"]["versions"] == [1]
        stale = mirror_set.configure(mirror_set.localize(check_config_text('{"model_config_list": []}').config))
        assert [m.local_dir for m in stale] == [a.base_path]
        mirror_set.discard(stale)
        assert not a.base_path.exists() and mirror_set.status_by_model() == {}
    finally:
        mirror_set.close()


def test_a_temporary_cache_root_is_removed_on_close(bucket: Bucket) -> None:
    config = check_config_text(json.dumps({"model_config_list": [{"config": {"name": "a", "base_path": "s3://b/a"}}]}))
    mirror_set = MirrorSet(None, interval_s=0)
    model = mirror_set.localize(config.config).models[0]  # type: ignore[union-attr]
    root = model.base_path.parent
    assert root.is_dir() and root.name.startswith("ovmsd-object-store-")
    mirror_set.close()
    assert not root.exists()


def test_listing_groups_by_version_and_skips_what_is_no_version(bucket: Bucket) -> None:
    for key in ("m/1/model.xml", "m/1/sub/x.txt", "m/01/model.xml", "m/2/", "m/notes.txt", "m/3/../evil", "other/1/a"):
        bucket.put(key, b"x")
    listing = S3Repository(StoreUrl.parse(bucket.url("m")), s3_repository(StoreUrl.parse("s3://x"))._client).list()
    assert sorted(listing.versions) == [1]
    assert [o.path for o in listing.versions[1]] == ["model.xml", "sub/x.txt"]
    assert listing.skipped == ("01", "3/../evil", "notes.txt")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("gs://bucket/model", "Google Cloud Storage (gs://) base paths are not supported yet"),
        ("azure://container/model", "Azure (azure://) base paths are not supported yet"),
        ("https://example.com/model", "web URLs are not model repositories"),
        ("s3:///model", "names no bucket"),
        ("s3://bucket/a/../b", "'.' or '..' path segments"),
    ],
)
def test_object_store_urls_the_loader_refuses(url: str, fragment: str) -> None:
    [issue] = check_config_text(json.dumps({"model_config_list": [{"config": {"name": "m", "base_path": url}}]})).issues
    assert issue.pointer == "/model_config_list/0/config/base_path"
    assert fragment in issue.message


def test_without_boto3_an_s3_base_path_says_to_install_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "boto3" else real(name, *a))
    text = json.dumps({"model_config_list": [{"config": {"name": "m", "base_path": "s3://bucket/m"}}]})
    [issue] = check_config_text(text).issues
    assert "pip install 'ovmsctl[s3]'" in issue.message


def test_the_endpoint_comes_from_the_standard_variables_or_ovms_spelling() -> None:
    assert endpoint_override({}) is None
    assert endpoint_override({"S3_ENDPOINT": "minio:9000"}) == "https://minio:9000"
    assert endpoint_override({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}) == "http://minio:9000"
    both = {"AWS_ENDPOINT_URL": "http://a", "S3_ENDPOINT": "http://b"}
    assert endpoint_override(both) == "http://a"
    assert endpoint_override({**both, "AWS_ENDPOINT_URL_S3": "http://c"}) == "http://c"


def test_check_models_lists_the_store_and_lets_openvino_read_the_selected_versions(
    bucket: Bucket, tmp_path: Path
) -> None:
    from ovmsd.source.model_check import check_models
    from tests.support.models import save, scale_model

    good = save(scale_model([1, 4]), tmp_path / "good", 1).parent
    bucket.upload_dir(good, "m/1")
    bucket.put("m/2/model.xml", (good / "model.xml").read_bytes())  # no .bin beside it
    entry = {"name": "m", "base_path": bucket.url("m"), "model_version_policy": {"specific": {"versions": [1, 2, 3]}}}
    result = check_config_text(json.dumps({"model_config_list": [{"config": entry}]}))
    assert result.config is not None
    messages = [i.message for i in check_models(result.config)]
    assert len(messages) == 2, messages
    assert "version 3 named by model_version_policy not found (on disk: 1, 2)" in messages[0]
    assert f"model 'm' version 2: {bucket.url('m')}/2 holds no model file" in messages[1]
    empty = check_config_text(json.dumps({"model_config_list": [{"config": {**entry, "base_path": bucket.url("x")}}]}))
    [issue] = check_models(empty.config)  # type: ignore[arg-type]
    assert issue.pointer.endswith("/base_path") and "has no version directories" in issue.message

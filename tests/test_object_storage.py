"""Object storage: the same storage resource on an fsspec root, ``memory://`` and a local S3 server.

The S3 server is moto's, started by the tests on a free loopback port; nothing leaves the machine.
The pipeline runs end to end on both stores, from inbox to release, and the workbench's upload,
image and template paths go through the same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context
from upath import UPath

from assets.automation import inbox_sensor
from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions, edited_templates_dir
from qwen_dataset.release.publish import RELEASE_FILE, ReleaseConflictError, publish_release
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.inbox import READY_MARKER, UPLOADING_MARKER, mark_ready, modified_time, scan_inbox
from qwen_dataset.store.layout import StorageLayout, upload_folder
from qwen_dataset.store.paths import (
    atomic_write_text,
    atomic_writer,
    is_url_root,
    read_parquet,
    storage_options_from_env,
    storage_root,
)
from resources.storage import StorageResource

BATCH = "sample-0"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own blob cache, so a download is really a download."""
    monkeypatch.setenv("QWEN_STORAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port; yields the storage options that reach it."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    finally:
        server.stop()


def new_bucket(options: dict[str, str]) -> str:
    """A fresh bucket on the S3 server (the pipeline never creates buckets itself)."""
    import s3fs

    bucket = f"qwen-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return bucket


@pytest.fixture(params=["memory", "s3"])
def store(request) -> tuple[str, dict[str, str]]:
    """(root URL, storage options) of a fresh, empty root on each object store."""
    if request.param == "memory":
        return f"memory://qwen-{uuid.uuid4().hex[:12]}", {}
    options = request.getfixturevalue("s3_server")
    return f"s3://{new_bucket(options)}/root", options


def remote_names(folder: UPath) -> set[str]:
    base = folder.path.rstrip("/")
    return {name[len(base) + 1 :] for name in folder.fs.find(base)}


# --------------------------------------------------------------------------- the layer itself


def test_url_roots_are_told_apart_from_local_folders(tmp_path):
    assert is_url_root("s3://bucket/prefix") and is_url_root("memory://x") and is_url_root("gs://b")
    assert not is_url_root(str(tmp_path)) and not is_url_root(f"file://{tmp_path}")
    assert storage_root(f"file://{tmp_path}") == tmp_path.resolve()
    assert isinstance(storage_root("memory://x"), UPath)
    layout = StorageLayout(tmp_path)
    assert not layout.remote and isinstance(layout.root, Path)
    assert storage_options_from_env({"QWEN_STORAGE_OPTIONS": '{"endpoint_url": "http://m:9000"}'}) == {
        "endpoint_url": "http://m:9000"
    }
    with pytest.raises(ValueError, match="QWEN_STORAGE_OPTIONS is not valid JSON"):
        storage_options_from_env({"QWEN_STORAGE_OPTIONS": "{endpoint"})


def test_blobs_live_in_the_store_and_decoders_get_a_checked_local_copy(store, tmp_path, private_cache):
    root, options = store
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    sha, uri = layout.blobs.put_bytes(b"hello")
    assert uri == BlobStore.uri_for(sha) and layout.blobs.stored(uri).read_bytes() == b"hello"
    source = tmp_path / "video.bin"
    source.write_bytes(os.urandom(3_000_000))
    big_sha, big_uri = layout.blobs.put_file(source)
    assert layout.blobs.stored(big_uri).read_bytes() == source.read_bytes()

    # Another machine (an empty cache) downloads each blob once into its cache.
    elsewhere = StorageLayout(root, storage_options=options, cache=tmp_path / "other-cache")
    local = elsewhere.blobs.local_path(big_uri)
    assert local.is_relative_to(tmp_path / "other-cache") and local.read_bytes() == source.read_bytes()
    assert elsewhere.blobs.read_bytes(uri) == b"hello"

    # A damaged object is refused, not handed to a decoder; nothing half is left in the cache.
    damaged = elsewhere.blobs.stored(BlobStore.uri_for("ab" * 32))
    damaged.write_bytes(b"not what the name says")
    with pytest.raises(OSError, match="does not hash to its name"):
        elsewhere.blobs.local_path(BlobStore.uri_for("ab" * 32))
    assert not (tmp_path / "other-cache" / BlobStore.uri_for("ab" * 32)).exists()
    with pytest.raises(FileNotFoundError, match="missing from the storage root"):
        elsewhere.blobs.local_path(BlobStore.uri_for("cd" * 32))
    with pytest.raises(ValueError, match="not a blob uri"):
        elsewhere.blobs.local_path("blobs/../../etc/passwd")


def test_a_failed_write_leaves_the_old_object(store):
    root, options = store
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    target = layout.reports / "b1.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert remote_names(layout.reports) == {"b1.json"}


def test_publishing_uploads_markers_last_mirrors_and_uploads_nothing_on_failure(store, monkeypatch):
    root, options = store
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    folder = layout.exports("b1")
    with layout.publishing(folder, mirror=True) as staging:
        (staging / "old.jsonl").write_text("{}")
    uploaded: list[str] = []
    real_put = folder.fs.put_file
    monkeypatch.setattr(
        folder.fs,
        "put_file",
        lambda local, remote, **kw: (uploaded.append(remote.rsplit("/", 1)[-1]), real_put(local, remote, **kw)),
    )
    with layout.publishing(folder, mirror=True, last=["manifest.json"]) as staging:
        (staging / "manifest.json").write_text("{}")
        (staging / "images").mkdir()
        (staging / "images" / "f1.png").write_bytes(b"png")
        (staging / "qwen_ocr.jsonl").write_text("{}\n")
    assert uploaded[-1] == "manifest.json" and len(uploaded) == 3
    assert remote_names(folder) == {"manifest.json", "images/f1.png", "qwen_ocr.jsonl"}  # old.jsonl mirrored away
    uploaded.clear()
    with pytest.raises(RuntimeError):
        with layout.publishing(folder) as staging:
            (staging / "new.jsonl").write_text("{}")
            raise RuntimeError("the exporter failed")
    assert uploaded == [] and "new.jsonl" not in remote_names(folder)


def test_the_inbox_on_an_object_store(store):
    root, options = store
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    (layout.batch_inbox("b1") / "a.png").write_bytes(b"x")
    (layout.batch_inbox("b2") / "a.png").write_bytes(b"x")
    mark_ready(layout.batch_inbox("b2"))
    fresh = scan_inbox(layout.inbox, settle_seconds=3600)
    assert fresh.ready == ["b2"] and fresh.waiting == ["b1"]
    # A folder nobody touched for the settle time is complete too; the time comes from the listing
    # (S3's LastModified, the memory store's creation time), which is now, not 0.
    written = modified_time(layout.batch_inbox("b1") / "a.png")
    assert abs(written - time.time()) < 600
    assert scan_inbox(layout.inbox, settle_seconds=60, now=written + 61).ready == ["b1", "b2"]
    # A folder the upload API is still filling waits, however old its first files are.
    (layout.batch_inbox("b3") / UPLOADING_MARKER).write_bytes(b"")
    (layout.batch_inbox("b3") / "a.png").write_bytes(b"x")
    assert scan_inbox(layout.inbox, settle_seconds=60, now=written + 3600).waiting == ["b3"]
    with layout.local_copy(layout.batch_inbox("b2")) as local:
        assert sorted(p.name for p in local.iterdir()) == [READY_MARKER, "a.png"]
    assert not local.exists()  # the copy is gone after use


def test_blob_uris_cannot_leave_the_store_or_the_cache(store, tmp_path):
    root, options = store
    for layout in (StorageLayout(tmp_path / "local"), StorageLayout(root, storage_options=options)):
        layout.ensure()
        layout.blobs.put_bytes(b"x")
        for uri in ("/etc/passwd", "../../../../etc/passwd", "blobs/sha256/../../../etc/passwd", ""):
            with pytest.raises(ValueError, match="not a blob uri"):
                layout.blobs.local_path(uri)


def test_object_keys_that_are_no_safe_file_path_are_refused(s3_server):
    layout = StorageLayout(f"s3://{new_bucket(s3_server)}/root", storage_options=s3_server)
    layout.ensure()
    inbox = layout.batch_inbox("b1")
    fs, base = inbox.fs, inbox.path
    fs.pipe_file(f"{base}/ok.png", b"x")
    # Empty "folder" keys, as the S3 console's "Create folder" writes them, are no files: skipped.
    fs.pipe_file(f"{base}/", b"")
    fs.pipe_file(f"{base}/sub/", b"")
    with layout.local_copy(inbox) as local:
        assert [p.name for p in local.rglob("*") if p.is_file()] == ["ok.png"]
    fs.pipe_file(f"{base}/../../escaped.txt", b"x")
    with pytest.raises(ValueError, match="no safe file path.*rename or delete"):
        with layout.local_copy(inbox):
            pass
    fs.rm_file(f"{base}/../../escaped.txt")
    fs.pipe_file(f"{base}/a", b"x")
    fs.pipe_file(f"{base}/a/b.png", b"x")
    with pytest.raises(ValueError, match="both as objects and as folders"):
        with layout.local_copy(inbox):
            pass


def test_a_missing_bucket_is_never_created(s3_server):
    import s3fs

    bucket = f"qwen-typo-{uuid.uuid4().hex[:8]}"
    with pytest.raises(OSError, match=f"bucket '{bucket}'.*does not exist.*never created"):
        StorageLayout(f"s3://{bucket}/root", storage_options=s3_server).ensure()
    assert not s3fs.S3FileSystem(**s3_server).exists(bucket)


def test_an_unreachable_store_says_what_to_check():
    options = {
        "endpoint_url": "http://127.0.0.1:9",
        "key": "k",
        "secret": "s",
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    layout = StorageLayout(f"s3://qwen-{uuid.uuid4().hex[:8]}/root", storage_options=options)
    with pytest.raises(OSError, match="cannot be reached.*endpoint"):
        layout.ensure()


def test_a_url_root_needs_a_database_url(monkeypatch):
    monkeypatch.delenv("QWEN_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="set QWEN_DATABASE_URL"):
        build_definitions(storage_root="memory://somewhere")


def test_a_published_release_is_immutable(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Info:  # the fields publish_release reads
        version: str
        digest: str
        path: Path
        created: bool = True

    local = tmp_path / "v1"
    local.mkdir()
    (local / "frames.parquet").write_bytes(b"p")
    (local / RELEASE_FILE).write_text(json.dumps({"digest": "d1"}))
    releases = UPath(f"memory://qwen-{uuid.uuid4().hex[:8]}/releases")
    published = publish_release(Info("v1", "d1", local), releases)
    assert str(published.path).endswith("/releases/v1") and remote_names(releases / "v1") == {
        "frames.parquet",
        RELEASE_FILE,
    }
    assert publish_release(Info("v1", "d1", local), releases).created is False
    with pytest.raises(ReleaseConflictError, match="changed under its version"):
        publish_release(Info("v1", "d2", local), releases)


# --------------------------------------------------------------------------- the pipeline


@pytest.mark.slow  # the whole graph with real OCR, on each store
def test_the_whole_graph_runs_on_an_object_store(store, sample, tmp_path, private_cache, monkeypatch):
    root, options = store
    folder, truth = sample
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    upload_folder(folder, layout.batch_inbox(BATCH))
    mark_ready(layout.batch_inbox(BATCH))
    # Credentials come from the environment, read at run time: never resource config the UI shows.
    monkeypatch.setenv("QWEN_STORAGE_OPTIONS", json.dumps(options))

    instance = DagsterInstance.ephemeral()
    resources = {"storage": StorageResource(root=root)}
    sensed = inbox_sensor(build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in sensed.run_requests] == [BATCH]

    defs = build_definitions(storage_root=root, database_url=sqlite_url(tmp_path / "annotations.db"))
    assert defs.resources["storage"].storage_options == {}
    instance.add_dynamic_partitions("batches", [BATCH])
    result = defs.resolve_job_def("process_batch").execute_in_process(instance=instance, partition_key=BATCH)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())

    uploads = read_parquet(layout.manifest("raw_uploads", BATCH))
    assert len(uploads) == len(truth.files)
    assert sorted(r.split(":")[0] for r in uploads.loc[uploads["status"] == "quarantined", "reason"]) == sorted(
        truth.broken.values()
    )
    frames = read_parquet(layout.manifest("frames", BATCH))
    assert (frames["kind"] == "video_frame").sum() == int(truth.videos[0].duration)
    # Every blob is in the store; the local cache only mirrors what this worker decoded.
    for uri in frames["blob_uri"]:
        stored = layout.blobs.stored(uri)
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == uri.rsplit("/", 1)[-1]
    assert any(private_cache.rglob("blobs/sha256/*/*/*"))

    exported = layout.exports(BATCH)
    names = remote_names(exported)
    lines = (exported / "qwen_ocr.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(frames)
    first = json.loads(lines[0])
    assert first["image"][0] in names  # pictures are copied next to the dataset, not linked
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["images"] == len(frames) and {"annotations.csv", "annotations/instances_ocr.json"} <= names
    assert {f["path"] for f in manifest["files"]} <= names  # relative to the export, not a staging folder
    export_rows = result.output_for_node("exports")
    assert all(path.startswith(str(exported)) for path in export_rows["path"])
    report = json.loads((layout.reports / f"{BATCH}.json").read_text())
    assert report["batch"] == BATCH
    augmented = read_parquet(layout.manifest("augmented_dataset", BATCH).with_suffix("") / "lineage.parquet")
    assert len(augmented)

    release = defs.resolve_job_def("release_dataset").execute_in_process(instance=instance)
    assert release.success
    version = release.output_for_node("release")["version"].iloc[0]
    published = layout.releases / version
    card = json.loads((published / RELEASE_FILE).read_text())
    assert set(card["files"]) | {RELEASE_FILE} == remote_names(published)
    assert len(read_parquet(published / "frames.parquet")) >= len(frames)
    again = defs.resolve_job_def("release_dataset").execute_in_process(instance=instance)
    assert again.output_for_node("release")["version"].iloc[0] == version
    assert bool(again.output_for_node("release")["created"].iloc[0]) is False
    # The sealed local copy is gone: the cache stays deletable; what stays are the batches' release parts.
    assert [path.name for path in (private_cache / "releases").iterdir()] == [".parts"]
    assert (private_cache / "releases" / ".parts" / "index.json").is_file()


# --------------------------------------------------------------------------- the workbench


def test_the_workbench_uploads_serves_pictures_and_keeps_templates_in_the_store(tmp_path, monkeypatch):
    from qwen_dataset.workbench import upload as upload_module
    from tests.test_workbench_api import build_world, item_of, png_bytes, write_batch

    root = f"memory://qwen-{uuid.uuid4().hex[:8]}"
    world = build_world(sqlite_url(tmp_path / "annotations.db"), root)
    try:
        service = world.service()
        response = service.post(
            "/api/upload", files=[("files", ("a.png", png_bytes())), ("files", ("b.png", png_bytes(3)))]
        )
        assert response.status_code == 201, response.text
        batch = response.json()["batch"]
        inbox = world.layout.batch_inbox(batch)
        assert remote_names(inbox) == {"a.png", "b.png", READY_MARKER}
        assert scan_inbox(world.layout.inbox, settle_seconds=3600).ready == [batch]

        def cut_off(local, folder, **kwargs):
            folder.fs.pipe_file(f"{folder.path}/a.png", b"half of the batch")
            raise ConnectionError("the store went away")

        staged_before = set(Path(tempfile.gettempdir()).glob("qwen-upload-*"))
        with monkeypatch.context() as patched:
            patched.setattr(upload_module, "upload_folder", cut_off)
            with pytest.raises(ConnectionError):
                service.post("/api/upload", files=[("files", ("c.png", png_bytes(5)))])
        # The failed upload left nothing: not in the store, not in the local staging area.
        assert [p.name for p in world.layout.inbox.iterdir()] == [batch]
        assert set(Path(tempfile.gettempdir()).glob("qwen-upload-*")) == staged_before

        frame_ids = write_batch(world.layout, "b1")
        assert world.client("admin").post("/api/batches/b1/import").status_code == 200
        annotator = next(c for c in (world.client(n) for n in ("ann1", "ann2", "ann3")) if c.get("/api/tasks").json())
        item_id = item_of(world, annotator.get("/api/tasks").json()[0]["annotation_id"]).item_id
        picture = annotator.get(f"/media/items/{item_id}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content in {png_bytes(i) for i in range(len(frame_ids))}

        admin = world.client("admin")
        files = admin.get("/api/admin/templates/ocr").json()["files"]
        edited = {**files, "prompt.txt": files["prompt.txt"] + "\nRead every line."}
        assert admin.put("/api/admin/templates/ocr", json=edited).status_code == 200
        assert (world.layout.root / "templates" / "ocr" / "prompt.txt").read_text().endswith("Read every line.")
        local = edited_templates_dir(StorageResource(root=root))
        assert (Path(local) / "ocr" / "prompt.txt").read_text().endswith("Read every line.")
    finally:
        for client in world.clients:
            client.close()
        world.engine.dispose()

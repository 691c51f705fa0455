import hashlib

import pytest

from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import atomic_write_text, atomic_writer, sha256_file


def test_blob_store_is_content_addressed_and_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    sha, uri = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert uri == f"blobs/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    assert store.read_bytes(uri) == b"hello"
    assert store.local_path(uri).stat().st_mode & 0o777 == 0o644
    assert store.put_bytes(b"hello") == (sha, uri)
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 3_000_000)
    sha2, uri2 = store.put_file(source)
    assert sha2 == sha256_file(source)
    assert store.local_path(uri2).read_bytes() == source.read_bytes()


def test_atomic_writer_leaves_old_file_and_no_temp_on_error(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_layout_paths(tmp_path):
    layout = StorageLayout(tmp_path)
    layout.ensure()
    assert layout.batch_inbox("b1") == tmp_path.resolve() / "inbox" / "b1"
    assert layout.manifest("frames", "b1").name == "b1.parquet"
    assert layout.manifest("release", None).name == "__all__.parquet"
    assert (tmp_path / "blobs").is_dir()


@pytest.mark.parametrize("batch", ["../../etc", "a/b", "..", "reports", "", "-x"])
def test_batch_names_cannot_leave_the_root_or_hide_the_reports(tmp_path, batch):
    layout = StorageLayout(tmp_path)
    with pytest.raises(ValueError, match="not a valid batch name"):
        layout.exports(batch)
    with pytest.raises(ValueError):
        layout.batch_inbox(batch)

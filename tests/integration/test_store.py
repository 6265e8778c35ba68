"""Object-store conformance: the file and S3 backends must be indistinguishable to callers."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from ftg_common.errors import CorruptObjectError
from ftg_common.settings import Settings
from ftg_common.store import InvalidKeyError, KeyNotFoundError, ObjectStore, open_store
from ftg_common.store import s3 as s3_module
from ftg_common.store.file import FileStore
from ftg_common.store.s3 import S3Store


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


# --------------------------------------------------------------------------- conformance suite


def test_bytes_round_trip_and_overwrite(store: ObjectStore) -> None:
    key = "runs/r1/iter/000001/traj/0000.safetensors"
    payload = bytes(range(256)) * 64
    assert not store.exists(key)
    store.put_bytes(key, payload)
    assert store.exists(key)
    assert store.get_bytes(key) == payload
    # A shorter overwrite must not leave the old object's tail behind.
    store.put_bytes(key, b"short")
    assert store.get_bytes(key) == b"short"
    store.put_bytes(key, b"")
    assert store.get_bytes(key) == b""
    assert store.exists(key)


def test_json_round_trip(store: ObjectStore) -> None:
    record = {
        "run_id": "r1",
        "lr": 3e-4,
        "seeds": [1, 2, 3],
        "nested": {"ok": True, "none": None},
        "name": "été",
    }
    store.put_json("runs/r1/config.json", record)
    assert store.get_json("runs/r1/config.json") == record


def test_tensor_round_trip_keeps_dtype_shape_and_metadata(store: ObjectStore) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "w_t": rng.standard_normal((4, 5)).T,  # non-contiguous float64 view
        "actions": np.arange(7, dtype=np.int64),
        "done": np.array([True, False, True]),
    }
    store.put_tensors("runs/r1/policy/000000.safetensors", tensors, metadata={"version": "0"})
    loaded, metadata = store.get_tensors_with_metadata("runs/r1/policy/000000.safetensors")
    assert metadata == {"version": "0"}
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    again = store.get_tensors("runs/r1/policy/000000.safetensors")
    np.testing.assert_array_equal(again["w"], tensors["w"])


def test_missing_key_raises_key_not_found(store: ObjectStore) -> None:
    store.put_bytes("runs/r1/present", b"x")
    for getter in (store.get_bytes, store.get_json, store.get_tensors):
        with pytest.raises(KeyNotFoundError) as info:
            getter("runs/r1/absent")
        assert info.value.key == "runs/r1/absent"
    # A folder is not an object.
    with pytest.raises(KeyNotFoundError):
        store.get_bytes("runs/r1")
    assert not store.exists("runs/r1")
    # Callers written against dict-like lookups keep working.
    with pytest.raises(KeyError):
        store.get_bytes("nothing/here")


def test_helpers_answer_the_digest_of_the_stored_bytes(store: ObjectStore) -> None:
    json_key, tensor_key = "runs/r1/iter/000000/update.json", "runs/r1/iter/000000/batch.safetensors"
    json_digest = store.put_json(json_key, {"b": [1, 2.5], "a": "x"})
    tensor_digest = store.put_tensors(tensor_key, {"x": np.arange(6, dtype=np.float32)}, {"m": "1"})
    assert json_digest == hashlib.sha256(store.get_bytes(json_key)).hexdigest()
    assert tensor_digest == hashlib.sha256(store.get_bytes(tensor_key)).hexdigest()
    # Equal inputs, equal bytes: a retried step overwrites its object with itself.
    assert store.put_json(json_key, {"a": "x", "b": [1, 2.5]}) == json_digest
    assert store.put_tensors(tensor_key, {"x": np.arange(6, dtype=np.float32)}, {"m": "1"}) == tensor_digest


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "plain"])
def test_damaged_objects_raise_corrupt_object_naming_the_key(store: ObjectStore, damage: str) -> None:
    json_key, tensor_key = "runs/r1/config.json", "runs/r1/policy/000000.safetensors"
    store.put_json(json_key, {"seed": 1, "ppo": {"lr": 0.001}})
    store.put_tensors(tensor_key, {"w": np.ones((4, 4), np.float32)})
    for key, getter in ((json_key, store.get_json), (tensor_key, store.get_tensors)):
        data = bytearray(store.get_bytes(key))
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            del data[len(data) // 2 :]
        elif damage == "empty":
            data.clear()
        else:  # what a writer without digests left: plain JSON, reference safetensors
            data[:] = b'{"seed":1}' if key == json_key else st_save({"w": np.ones((4, 4), np.float32)})
        store.put_bytes(key, bytes(data))
        with pytest.raises(CorruptObjectError) as info:
            getter(key)
        assert info.value.key == key and key in str(info.value)


def test_delete_removes_one_object(store: ObjectStore) -> None:
    _fill(store)
    assert store.delete("runs/a/x") is True
    assert not store.exists("runs/a/x")
    assert store.delete("runs/a/x") is False
    assert store.delete("runs/a") is False  # a folder is not an object
    assert store.list("runs/a") == ["runs/a/A-upper_case.1", "runs/a/sub/y"]
    with pytest.raises(KeyNotFoundError):
        store.get_bytes("runs/a/x")


def _fill(store: ObjectStore) -> list[str]:
    keys = ["top.json", "runs/ab/z", "runs/a/sub/y", "runs/a/x", "runs/a/A-upper_case.1"]
    for key in keys:
        store.put_bytes(key, key.encode())
    return keys


def test_list_is_sorted_and_folder_scoped(store: ObjectStore) -> None:
    keys = _fill(store)
    under_a = ["runs/a/A-upper_case.1", "runs/a/sub/y", "runs/a/x"]
    assert store.list("runs/a") == under_a
    assert store.list("runs/a/") == under_a  # trailing slash means the same folder
    assert store.list("runs") == sorted(under_a + ["runs/ab/z"])  # 'runs/ab' is not under 'runs/a'
    assert store.list("") == sorted(keys)
    assert store.list("runs/a/x") == []  # an object is not a folder
    assert store.list("missing/folder") == []


def test_delete_prefix_removes_only_that_folder(store: ObjectStore) -> None:
    keys = _fill(store)
    assert store.delete_prefix("runs/a") == 3
    assert store.list("") == ["runs/ab/z", "top.json"]
    assert not store.exists("runs/a/x")
    with pytest.raises(KeyNotFoundError):
        store.get_bytes("runs/a/sub/y")
    assert store.delete_prefix("runs/a") == 0
    # The folder can be written again after deletion.
    store.put_bytes("runs/a/x", b"again")
    assert store.get_bytes("runs/a/x") == b"again"
    assert store.delete_prefix("") == len(keys) - 3 + 1
    assert store.list("") == []


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "/abs",
        "a//b",
        "a\\b",
        "",
        "a/./b",
        "a/..",
        "..",
        "a/b/",
        "sp ace",
        "nul\0byte",
        "é",
        "a:b",
        "a*",
    ],
)
def test_unsafe_keys_are_rejected_everywhere(store: ObjectStore, key: str) -> None:
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.exists(key)):
        with pytest.raises(InvalidKeyError):
            call()
    with pytest.raises(InvalidKeyError):
        store.put_json(key, {"a": 1})
    assert store.list("") == [], "a rejected key must not have written anything"


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//b", "/", "a/../b"])
def test_unsafe_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    store.put_bytes("a/b", b"x")
    with pytest.raises(InvalidKeyError):
        store.list(prefix)
    with pytest.raises(InvalidKeyError):
        store.delete_prefix(prefix)
    assert store.get_bytes("a/b") == b"x"


def test_unusual_but_valid_keys_round_trip(store: ObjectStore) -> None:
    keys = ["a/.hidden", "A_b.c-d/e...f", "x" * 200, "/".join(["deep"] * 30)]
    for key in keys:
        store.put_bytes(key, key.encode())
    for key in keys:
        assert store.get_bytes(key) == key.encode()
    assert store.list("") == sorted(keys)


# --------------------------------------------------------------------------- file backend


def test_file_store_readers_never_see_a_torn_object(file_store: FileStore) -> None:
    """Writers overwrite a large object over and over; every read must return one complete version."""
    key = "runs/r1/policy/000001.safetensors"
    size = 4 * 1024 * 1024
    file_store.put_bytes(key, bytes([0]) * size)
    done = threading.Event()
    seen: set[int] = set()
    torn: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            data = file_store.get_bytes(key)
            reads += 1
            fill = data[:1] * size
            if len(data) != size or data != fill:
                torn.append(f"read of {len(data)} bytes starting {data[:4]!r}")
                return
            seen.add(data[0])

    def writer(first: int) -> None:
        # At least 29 versions each, and on until the readers have read a few times and met three
        # versions (a reader thread can start late on a loaded machine).
        give_up = time.monotonic() + 60
        n = 0
        while n < 29 or ((len(seen) < 3 or reads <= 10) and time.monotonic() < give_up):
            file_store.put_bytes(key, bytes([first + 2 * (n % 29)]) * size)
            n += 1

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(first,)) for first in (1, 2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert not torn, torn
    assert reads > 10 and len(seen) >= 3, (
        f"the race was not exercised: {reads} reads, versions {sorted(seen)}"
    )
    # No temp file survives a successful write.
    assert os.listdir(file_store.root / "runs/r1/policy") == ["000001.safetensors"]


def test_file_store_hides_leftover_temp_files(file_store: FileStore) -> None:
    file_store.put_bytes("runs/r1/eval.json", b"{}")
    # What a writer killed between write and rename leaves behind.
    (file_store.root / "runs/r1/.eval.json.0123abcd.tmp~").write_bytes(b"{partial")
    assert file_store.list("runs") == ["runs/r1/eval.json"]
    assert file_store.get_bytes("runs/r1/eval.json") == b"{}"
    assert file_store.delete_prefix("runs") == 1


def test_file_store_keys_cannot_escape_root(file_store: FileStore) -> None:
    outside = file_store.root.parent / "escaped"
    with pytest.raises(InvalidKeyError):
        file_store.put_bytes("../escaped", b"x")
    assert not outside.exists()
    # An object and a folder can't share a name on disk; say so instead of leaking an OSError.
    file_store.put_bytes("runs/r1", b"object")
    with pytest.raises(InvalidKeyError, match="runs/r1/x"):
        file_store.put_bytes("runs/r1/x", b"nested")
    file_store.put_bytes("runs/r2/x", b"nested")
    with pytest.raises(InvalidKeyError, match="folder"):
        file_store.put_bytes("runs/r2", b"object")
    assert file_store.get_bytes("runs/r1") == b"object"


def test_file_store_url_reopens_same_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileStore("relative/store", fsync=True)
    assert store.url == f"file://{(tmp_path / 'relative/store').resolve().as_posix()}"
    store.put_json("runs/r1/config.json", {"seed": 1})
    reopened = open_store(store.url, settings=Settings())
    assert isinstance(reopened, FileStore)
    assert reopened.get_json("runs/r1/config.json") == {"seed": 1}
    # Deleting everything leaves the root itself usable.
    assert reopened.delete_prefix("") == 1
    assert reopened.root.is_dir() and list(reopened.root.iterdir()) == []


# --------------------------------------------------------------------------- S3 backend


def test_s3_prefix_isolates_stores_in_one_bucket(s3_store: S3Store, s3_endpoint: str) -> None:
    one = S3Store(s3_store.bucket, prefix="exp/one", endpoint_url=s3_endpoint)
    two = S3Store(s3_store.bucket, prefix="exp/two/", endpoint_url=s3_endpoint)
    assert one.url == f"s3://{s3_store.bucket}/exp/one"
    assert two.url == f"s3://{s3_store.bucket}/exp/two"
    one.put_bytes("runs/r1/config.json", b"1")
    two.put_bytes("runs/r1/config.json", b"2")
    assert one.get_bytes("runs/r1/config.json") == b"1"
    assert one.list("") == ["runs/r1/config.json"]
    # Keys are stored under the prefix, as other S3 tools will see them.
    assert s3_store.list("") == ["exp/one/runs/r1/config.json", "exp/two/runs/r1/config.json"]
    assert one.delete_prefix("") == 1
    assert two.get_bytes("runs/r1/config.json") == b"2"


def test_s3_delete_prefix_batches(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 3)
    calls = []
    real_delete = s3_store._client.delete_objects

    def counting_delete(**kwargs):
        calls.append(len(kwargs["Delete"]["Objects"]))
        return real_delete(**kwargs)

    monkeypatch.setattr(s3_store._client, "delete_objects", counting_delete)
    for i in range(7):
        s3_store.put_bytes(f"runs/r1/iter/{i:06d}/eval.json", b"{}")
    s3_store.put_bytes("runs/r2/keep", b"k")
    assert s3_store.delete_prefix("runs/r1") == 7
    assert calls == [3, 3, 1]
    assert s3_store.list("") == ["runs/r2/keep"]


def test_s3_list_follows_pagination(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny pages stand in for buckets with more than 1000 keys, where one ListObjectsV2 call isn't enough.
    monkeypatch.setattr(s3_module, "_LIST_PAGE_SIZE", 2)
    calls = []
    real_list = s3_store._client.list_objects_v2

    def counting_list(**kwargs):
        calls.append(kwargs.get("MaxKeys"))
        return real_list(**kwargs)

    monkeypatch.setattr(s3_store._client, "list_objects_v2", counting_list)
    keys = [f"runs/r1/replay/{i:08d}.safetensors" for i in range(5)]
    for key in reversed(keys):
        s3_store.put_bytes(key, b"")
    assert s3_store.list("runs/r1/replay") == keys
    assert calls == [2, 2, 2]
    assert s3_store.delete_prefix("runs") == 5
    assert s3_store.list("") == []


def test_s3_missing_bucket_is_not_a_missing_key(s3_endpoint: str) -> None:
    from botocore.exceptions import ClientError

    store = S3Store("ftg-test-no-such-bucket", endpoint_url=s3_endpoint)
    # A misconfigured bucket must surface, not masquerade as "object not written yet".
    with pytest.raises(ClientError) as info:
        store.get_bytes("runs/r1/config.json")
    assert not isinstance(info.value, KeyNotFoundError)


def test_s3_create_bucket_is_idempotent(s3_store: S3Store, s3_endpoint: str) -> None:
    s3_store.put_bytes("a", b"1")
    again = S3Store(s3_store.bucket, endpoint_url=s3_endpoint, create_bucket=True)
    assert again.get_bytes("a") == b"1"


# --------------------------------------------------------------------------- open_store


def test_open_store_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://data/store", settings=Settings())
    assert isinstance(relative, FileStore)
    assert relative.root == (tmp_path / "data/store").resolve()
    absolute = open_store(f"file://{tmp_path / 'abs'}", settings=Settings(store_fsync=True))
    assert isinstance(absolute, FileStore)
    assert absolute.root == (tmp_path / "abs").resolve() and absolute.fsync
    # Without a URL, the settings decide.
    default = open_store(settings=Settings(store_url="file://from-settings"))
    assert isinstance(default, FileStore) and default.root == (tmp_path / "from-settings").resolve()


def test_open_store_s3_url_uses_settings_endpoint(s3_store: S3Store, s3_endpoint: str) -> None:
    settings = Settings(s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    opened = open_store(f"s3://{s3_store.bucket}/exp/a", settings=settings)
    assert isinstance(opened, S3Store)
    assert opened.url == f"s3://{s3_store.bucket}/exp/a"
    opened.put_bytes("k", b"v")
    assert s3_store.get_bytes("exp/a/k") == b"v"


@pytest.mark.parametrize("url", ["ftp://host/dir", "memory://", "/plain/path", "file://", "s3://"])
def test_open_store_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url, settings=Settings())
    assert repr(url) in str(info.value)

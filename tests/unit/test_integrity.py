"""Content digests: recorded on write, checked on read, and bytes that stay deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ftg_common import checkpoints, layout
from ftg_common.checkpoints import CheckpointState, PolicyVersion
from ftg_common.errors import CorruptObjectError
from ftg_common.meta.sqlite import SqliteMeta
from ftg_common.policy.spec import PolicySpec, tensor_shapes
from ftg_common.schemas import UpdateResult
from ftg_common.store.file import FileStore
from ftg_common.store.integrity import decode_json, encode_json, object_digest
from ftg_common.tensorio import DIGEST_METADATA_KEY, decode, encode, verify
from ftg_common.update import fence

TENSORS = {
    "b": np.arange(5, dtype=np.int64),
    "a": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    "flag": np.array([True, False]),
}


def _header(data: bytes) -> dict[str, object]:
    n = int.from_bytes(data[:8], "little")
    header: dict[str, object] = json.loads(data[8 : 8 + n])
    return header


# --------------------------------------------------------------------------- safetensors


def test_encode_records_the_sha256_of_the_whole_encoding() -> None:
    data = encode(TENSORS, {"version": "3"})
    meta = _header(data)["__metadata__"]
    assert isinstance(meta, dict)
    digest = meta[DIGEST_METADATA_KEY]
    zeroed = data.replace(digest.encode(), b"0" * 64)
    assert hashlib.sha256(zeroed).hexdigest() == digest
    arrays, metadata = decode(data, require_digest=True)
    assert metadata == {"version": "3"}  # the reserved entry is not the caller's metadata
    for name, array in TENSORS.items():
        np.testing.assert_array_equal(arrays[name], array)
    # Other safetensors readers see an ordinary file.
    np.testing.assert_array_equal(st_load(data)["a"], TENSORS["a"])


def test_encoding_is_deterministic() -> None:
    first = encode(TENSORS, {"x": "1", "y": "2"})
    again = encode(dict(reversed(list(TENSORS.items()))), {"y": "2", "x": "1"})
    assert first == again
    assert encode(TENSORS, {"x": "1", "y": "3"}) != first


def test_the_digest_key_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode(TENSORS, {DIGEST_METADATA_KEY: "0" * 64})


def test_every_single_byte_flip_is_detected() -> None:
    data = encode({"w": np.arange(4, dtype=np.float32)}, {"run_id": "r"})
    for position in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= mask
            with pytest.raises(CorruptObjectError) as info:
                decode(bytes(damaged), "runs/r/x.safetensors", require_digest=True)
            assert info.value.key == "runs/r/x.safetensors", (position, mask)


def test_every_truncation_and_extension_is_detected() -> None:
    data = encode({"w": np.arange(4, dtype=np.float32)})
    for length in range(len(data)):
        with pytest.raises(CorruptObjectError):
            decode(data[:length], require_digest=True)
    with pytest.raises(CorruptObjectError, match="digest mismatch"):
        decode(data + b"\0", require_digest=True)


def test_files_without_a_digest_are_refused_only_when_required() -> None:
    reference = st_save({"w": np.ones(3, np.float32)}, metadata={"k": "v"})
    arrays, metadata = decode(reference)
    assert metadata == {"k": "v"} and arrays["w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(CorruptObjectError, match="no content digest") as info:
        decode(reference, "runs/r/ref.safetensors", require_digest=True)
    assert info.value.key == "runs/r/ref.safetensors"
    assert isinstance(info.value, ValueError)  # what the decoder always raised


def test_verify_returns_the_header_without_loading_tensors() -> None:
    header = verify(encode(TENSORS))
    assert set(header) == {"__metadata__", *TENSORS}


# --------------------------------------------------------------------------- JSON envelope


def test_json_envelope_carries_the_sha256_of_the_document() -> None:
    doc = {"b": [1, 2.5, None], "a": "été", "n": {"x": True}}
    data = encode_json(doc)
    wrapped = json.loads(data)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert wrapped == {"data": doc, "sha256": hashlib.sha256(canonical).hexdigest()}
    assert decode_json(data) == doc
    assert encode_json(dict(reversed(list(doc.items())))) == data  # deterministic


def test_every_single_byte_flip_in_json_is_detected() -> None:
    data = encode_json({"version": 1, "spec": {"obs_dim": 4}, "name": "x"})
    for position in range(len(data)):
        for mask in (0x01, 0x20, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= mask
            with pytest.raises(CorruptObjectError) as info:
                decode_json(bytes(damaged), "runs/r/state.json")
            assert info.value.key == "runs/r/state.json", (position, mask)


def test_every_json_truncation_and_plain_json_is_refused() -> None:
    data = encode_json({"version": 1})
    for length in range(len(data)):
        with pytest.raises(CorruptObjectError):
            decode_json(data[:length])
    with pytest.raises(CorruptObjectError, match="content digest"):
        decode_json(b'{"version": 1}')


# --------------------------------------------------------------------------- checkpoints and the fence


def _version(n: int, fill: float = 0.5) -> PolicyVersion:
    spec = PolicySpec(obs_dim=4, action_kind="discrete", n_actions=2, net_arch=[8])
    weights = {k: np.full(s, fill + n, np.float32) for k, s in tensor_shapes(spec).items()}
    optimizer = {f"m.{k}": np.full(v.shape, 0.25, np.float32) for k, v in weights.items()} if n else {}
    state = CheckpointState(version=n, iteration=n - 1, total_steps=64 * n, n_updates=n, spec=spec)
    return PolicyVersion(state=state, weights=weights, optimizer=optimizer)


def test_write_version_answers_the_digests_of_the_stored_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    keys = checkpoints.write_version(store, "r", _version(1))
    assert sorted(keys.digests) == sorted(checkpoints.version_object_keys("r", 1))
    for key, digest in keys.digests.items():
        assert object_digest(store.get_bytes(key)) == digest
    assert checkpoints.stored_digests(store, "r", 1) == keys.digests
    # A retried write stores identical bytes.
    before = {key: store.get_bytes(key) for key in keys.digests}
    assert checkpoints.write_version(store, "r", _version(1)).digests == keys.digests
    assert {key: store.get_bytes(key) for key in keys.digests} == before


@pytest.mark.parametrize("which", ["weights", "optimizer", "state", "policy"])
def test_reading_a_damaged_version_names_the_key(tmp_path: Path, which: str) -> None:
    store = FileStore(tmp_path / "store")
    checkpoints.write_version(store, "r", _version(1))
    key = {
        "weights": layout.ckpt_weights_key("r", 1),
        "optimizer": layout.ckpt_optim_key("r", 1),
        "state": layout.ckpt_state_key("r", 1),
        "policy": layout.policy_key("r", 1),
    }[which]
    data = bytearray(store.get_bytes(key))
    data[-3] ^= 0x04  # in the data section (safetensors) or the digest (JSON)
    store.put_bytes(key, bytes(data))
    with pytest.raises(CorruptObjectError) as info:
        if which == "policy":
            checkpoints.read_policy(store, "r", 1)
        else:
            checkpoints.read_version(store, "r", 1)
    assert info.value.key == key
    with pytest.raises(CorruptObjectError):
        checkpoints.stored_digests(store, "r", 1)


def test_a_policy_file_without_a_spec_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.put_tensors(layout.policy_key("r", 0), {"w": np.ones(2, np.float32)})
    with pytest.raises(CorruptObjectError, match="policy_spec") as info:
        checkpoints.read_policy(store, "r", 0)
    assert info.value.key == layout.policy_key("r", 0)


def _result(iteration: int) -> UpdateResult:
    return UpdateResult(
        key=layout.policy_key("r", iteration + 1),
        ckpt_key=layout.ckpt_prefix("r", iteration + 1),
        version=iteration + 1,
        iteration=iteration,
        total_steps=64 * (iteration + 1),
        seconds=0.0,
    )


@pytest.mark.parametrize("pass_digests", [True, False])
def test_commit_records_what_the_version_wrote(tmp_path: Path, pass_digests: bool) -> None:
    store, meta = FileStore(tmp_path / "store"), SqliteMeta(tmp_path / "meta.db")
    meta.create_run("r")
    initial = checkpoints.write_version(store, "r", _version(0))
    first = checkpoints.write_version(store, "r", _version(1))
    fence.commit(store, meta, "r", _result(0), first.digests if pass_digests else None)
    recorded = meta.version_digests("r", 1)
    update = layout.update_key("r", 0)
    assert recorded == {**first.digests, update: object_digest(store.get_bytes(update))}
    # Version 0, written by init outside the fence, is recorded when version 1 commits.
    assert meta.version_digests("r", 0) == initial.digests
    assert meta.get_run("r")["version"] == 1
    meta.close()


def test_init_records_version_0_and_the_first_record_stays(tmp_path: Path) -> None:
    store, meta = FileStore(tmp_path / "store"), SqliteMeta(tmp_path / "meta.db")
    meta.create_run("r")
    initial = checkpoints.write_version(store, "r", _version(0))
    assert fence.record_initial_version(meta, "r", initial) is True
    assert fence.record_initial_version(meta, "r", initial) is False
    assert meta.version_digests("r", 0) == initial.digests
    meta.close()


def test_a_version_damaged_before_its_commit_is_not_committed(tmp_path: Path) -> None:
    store, meta = FileStore(tmp_path / "store"), SqliteMeta(tmp_path / "meta.db")
    meta.create_run("r")
    checkpoints.write_version(store, "r", _version(0))
    checkpoints.write_version(store, "r", _version(1))
    key = layout.ckpt_weights_key("r", 1)
    store.put_bytes(key, store.get_bytes(key)[:-1])
    with pytest.raises(CorruptObjectError) as info:
        fence.commit(store, meta, "r", _result(0))
    assert info.value.key == key
    assert meta.get_run("r")["version"] == 0 and meta.version_digests("r", 1) is None
    meta.close()

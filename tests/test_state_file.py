"""The node service's persisted Context state (parties.common.state_file): exact round trip of every
ConfigRecord value type and of other record kinds, the older Flower-deflated file still read, a
damaged file refused naming it, and a large state written as raw blobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from parties.common import local_channel as lc
from parties.common.node_service import ContextStore
from parties.common.state_file import decode_state, encode_state


def _state() -> RecordDict:
    return RecordDict(
        {
            "c": ConfigRecord(
                {"t": True, "f": 1.0, "i": 3, "ls": ["x", "y"], "lf": [0.5, 2.0], "lb": [b"a", b""], "e": b"", "s": "é"}
            ),
            "m": MetricRecord({"a": 1.5, "b": [1, 2]}),
            "a": ArrayRecord([np.arange(3.0)]),
        }
    )


def _same(a: RecordDict, b: RecordDict) -> None:
    assert list(a.keys()) == list(b.keys())
    for k in ("c", "m"):
        da, db = dict(a[k].items()), dict(b[k].items())
        assert da == db and {x: type(v) for x, v in da.items()} == {x: type(v) for x, v in db.items()}
    assert a.object_id == b.object_id  # Flower's own content id: nothing changed on the way


def test_round_trip_keeps_values_and_types(tmp_path: Path) -> None:
    state = _state()
    _same(state, decode_state(encode_state(state, 1), "x"))
    store = ContextStore(tmp_path)
    ctx = store.get(7, 1, {}, {})
    ctx.state = _state()
    store.save(7)
    _same(state, ContextStore(tmp_path).get(7, 1, {}, {}).state)


def test_older_flower_deflated_file_is_read(tmp_path: Path) -> None:
    state = _state()
    objects = {oid: obj.deflate() for oid, obj in get_all_nested_objects(state).items()}
    ids = list(objects)
    lc.write_frame_file(
        tmp_path / "run-3.state", lc.Frame({"root": state.object_id, "objects": ids}, [objects[i] for i in ids])
    )
    _same(state, ContextStore(tmp_path).get(3, 1, {}, {}).state)


def test_damaged_file_is_refused_naming_it(tmp_path: Path) -> None:
    frame = encode_state(_state(), 1)
    frame.blobs.pop()  # planted: a blob lost
    lc.write_frame_file(tmp_path / "run-4.state", frame)
    with pytest.raises(lc.ChannelError, match="run-4.state: malformed state file"):
        ContextStore(tmp_path).get(4, 1, {}, {})


def test_large_state_round_trips_as_raw_blobs(tmp_path: Path) -> None:
    big = RecordDict({"fedcredit": ConfigRecord({f"k{i}": bytes(4_000_000) for i in range(5)} | {"n": 1})})
    store = ContextStore(tmp_path)
    store.get(5, 1, {}, {}).state = big
    store.save(5)
    raw = (tmp_path / "run-5.state").read_bytes()
    assert len(raw) < 20_001_000  # the five blobs as they are, plus a small header
    assert dict(ContextStore(tmp_path).get(5, 1, {}, {}).state["fedcredit"].items()) == dict(big["fedcredit"].items())

"""A node's persisted ``Context.state`` as a frame, without Flower's serialisation of large records.

Why: the node service persists its Context after every message (so a restarted service goes on).
Flower's own path (deflate the RecordDict, compute every object id) re-serialises each record as
one protobuf and hashes it several times: ~0.8 s per message for the ~20 MB a 300,000-row
hetero-LR node keeps (aligned ids, masks, its phase state), i.e. most of a relay step. Here every
``ConfigRecord`` value is written as it is -- bytes and strings as raw blobs, numbers, booleans
and lists of them in the JSON header -- which costs a memory copy. Other record kinds
(``ArrayRecord``, ``MetricRecord``) keep Flower's deflated form. Values come back with the same
Python types (``bool`` stays ``bool``, ``1.0`` stays ``float``).
"""

from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from parties.common import local_channel as lc

FORMAT = "fedcredit-state/2"


def encode_state(state: RecordDict, run_id: int) -> lc.Frame:
    records: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, record in state.items():
        if isinstance(record, ConfigRecord):
            keys: list[dict[str, Any]] = []
            for key, value in record.items():
                if isinstance(value, bytes):
                    keys.append({"k": key, "t": "b"})
                    blobs.append(value)
                elif isinstance(value, str):
                    keys.append({"k": key, "t": "s"})
                    blobs.append(value.encode())
                elif isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
                    keys.append({"k": key, "t": "lb", "n": len(value)})
                    blobs.extend(v for v in value if isinstance(v, bytes))
                else:  # int, float, bool, or a list of those / of str
                    keys.append({"k": key, "t": "j", "v": value})
            records.append({"name": name, "kind": "config", "keys": keys})
        else:
            objects = {oid: obj.deflate() for oid, obj in get_all_nested_objects(record).items()}
            ids = list(objects)
            records.append({"name": name, "kind": "flower", "root": record.object_id, "objects": ids})
            blobs.extend(objects[i] for i in ids)
    return lc.Frame({"format": FORMAT, "run_id": run_id, "records": records}, blobs)


def decode_state(frame: lc.Frame, where: str) -> RecordDict:
    """The RecordDict of ``frame``; also reads the older whole-RecordDict Flower frame."""
    head = frame.header
    if head.get("format") != FORMAT:  # the first format: the whole RecordDict deflated by Flower
        state = inflate_object_from_contents(str(head["root"]), dict(zip(head["objects"], frame.blobs)))
        if not isinstance(state, RecordDict):
            raise lc.ChannelError(f"{where}: holds a {type(state).__name__}, not a Flower RecordDict")
        return state
    blobs = iter(frame.blobs)
    out: dict[str, Any] = {}
    try:
        for rec in head["records"]:
            if rec["kind"] == "config":
                values: dict[str, Any] = {}
                for item in rec["keys"]:
                    t = item["t"]
                    if t == "b":
                        values[item["k"]] = next(blobs)
                    elif t == "s":
                        values[item["k"]] = next(blobs).decode()
                    elif t == "lb":
                        values[item["k"]] = [next(blobs) for _ in range(int(item["n"]))]
                    else:
                        values[item["k"]] = item["v"]
                out[rec["name"]] = ConfigRecord(values)
            else:
                contents = {oid: next(blobs) for oid in rec["objects"]}
                out[rec["name"]] = inflate_object_from_contents(str(rec["root"]), contents)
    except (KeyError, StopIteration, TypeError, ValueError) as exc:
        raise lc.ChannelError(f"{where}: malformed state file ({type(exc).__name__}: {exc})") from None
    if next(blobs, None) is not None:
        raise lc.ChannelError(f"{where}: malformed state file (blobs left over)")
    return RecordDict(out)

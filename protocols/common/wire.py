"""Safe, deterministic byte encoding of protocol messages.

Every protocol message is a dataclass; what crosses a node boundary is ``encode(msg)``: these
exact bytes are what the sender's egress log hashes, what Flower carries, and what the
coordinator's ledger hashes, so the two logs can be cross-checked byte for byte.

Why not pickle: a party must never execute what another party sends. Why not plain JSON:
ciphertext vectors and float arrays are large; we keep them as raw buffers.

Format: ``MAGIC | u32 header length | header JSON | buffers``. The header is canonical JSON
(sorted keys) holding the message type name, scalar fields, and for each array/bytes field its
dtype, shape and offset into the buffer section. Python ints of any size are encoded as
decimal strings (Paillier ciphertexts are usually packed into ``bytes`` fields instead).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, TypeVar

import numpy as np

MAGIC = b"FCW1"
_ALLOWED_DTYPES = {"bool", "int8", "uint8", "int16", "int32", "int64", "uint32", "uint64", "float32", "float64"}
MAX_MESSAGE_BYTES = 2**34  # 16 GiB hard stop for a corrupt length field

T = TypeVar("T")


class WireError(ValueError):
    """A message could not be decoded: wrong type, truncated, or malformed."""


def _encode_value(value: Any, buffers: list[bytes], offset: list[int]) -> Any:
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, (int, np.integer)):
        return {"__int__": str(int(value))}
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        buffers.append(b)
        ref = {"__bytes__": [offset[0], len(b)]}
        offset[0] += len(b)
        return ref
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _ALLOWED_DTYPES:
            raise WireError(f"array dtype {value.dtype} cannot go on the wire")
        arr = np.ascontiguousarray(value)
        b = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        buffers.append(b)
        array_ref: dict[str, list[Any]] = {"__array__": [arr.dtype.name, list(arr.shape), offset[0], len(b)]}
        offset[0] += len(b)
        return array_ref
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, buffers, offset) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise WireError("dict keys on the wire must be strings")
        return {"__dict__": {k: _encode_value(v, buffers, offset) for k, v in value.items()}}
    raise WireError(f"type {type(value).__name__} cannot go on the wire")


def _decode_value(value: Any, body: memoryview) -> Any:
    if isinstance(value, list):
        return [_decode_value(v, body) for v in value]
    if not isinstance(value, dict):
        return value
    if "__int__" in value:
        return int(value["__int__"])
    if "__bytes__" in value:
        start, length = value["__bytes__"]
        if start < 0 or start + length > len(body):
            raise WireError("bytes field points outside the message (truncated?)")
        return bytes(body[start : start + length])
    if "__array__" in value:
        dtype, shape, start, length = value["__array__"]
        if dtype not in _ALLOWED_DTYPES:
            raise WireError(f"array dtype {dtype!r} not allowed")
        if start < 0 or start + length > len(body):
            raise WireError("array field points outside the message (truncated?)")
        dt = np.dtype(dtype).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if count * dt.itemsize != length:
            raise WireError("array length does not match its shape")
        return (
            np.frombuffer(body[start : start + length], dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)
        )
    if "__dict__" in value:
        return {k: _decode_value(v, body) for k, v in value["__dict__"].items()}
    raise WireError(f"unknown encoded value {sorted(value)[:3]}")


def encode(msg: Any) -> bytes:
    """Encode a dataclass instance to bytes (deterministic for equal messages)."""
    if not dataclasses.is_dataclass(msg) or isinstance(msg, type):
        raise WireError(f"only dataclass instances go on the wire, got {type(msg).__name__}")
    buffers: list[bytes] = []
    offset = [0]
    fields = {f.name: _encode_value(getattr(msg, f.name), buffers, offset) for f in dataclasses.fields(msg)}
    header = json.dumps({"type": type(msg).__name__, "fields": fields}, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(buffers)


def message_type(data: bytes) -> str:
    """The type name of an encoded message, without decoding its buffers."""
    return _header(data)[0]["type"]


def _header(data: bytes) -> tuple[dict, memoryview]:
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireError("not a fedcredit wire message (bad magic)")
    (hlen,) = struct.unpack("<I", data[4:8])
    if 8 + hlen > len(data):
        raise WireError("message header is truncated")
    try:
        header = json.loads(data[8 : 8 + hlen])
    except ValueError as exc:
        raise WireError(f"message header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or "type" not in header or "fields" not in header:
        raise WireError("message header lacks type/fields")
    return header, memoryview(data)[8 + hlen :]


def decode(data: bytes, cls: type[T]) -> T:
    """Decode bytes into an instance of ``cls``; raises :class:`WireError` on any mismatch.

    The expected class is given by the receiver (never taken from the message), so a message
    of the wrong kind or from the wrong protocol step is refused with a clear error.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("message too large")
    header, body = _header(data)
    if header["type"] != cls.__name__:
        raise WireError(f"expected a {cls.__name__} message, got {header['type']}")
    if not dataclasses.is_dataclass(cls):
        raise WireError(f"{cls.__name__} is not a message dataclass")
    names = {f.name for f in dataclasses.fields(cls)}
    got = set(header["fields"])
    if got != names:
        raise WireError(
            f"{cls.__name__} fields mismatch: missing {sorted(names - got)}, unexpected {sorted(got - names)}"
        )
    values = {k: _decode_value(v, body) for k, v in header["fields"].items()}
    return cls(**values)

"""The local channel between a SuperNode's ClientApp (the forwarder) and the party's node service.

Why a local channel: in deployment Flower runs every message in a fresh ``flwr-clientapp``
process that imports whatever app bundle the SuperLink serves. The party's data, keys and
protocol state therefore live in a separate, long-lived process (:mod:`parties.common.node_service`)
started by the party's operator; the ClientApp only hands it each message and returns the reply.

The channel is a Unix stream socket, reachable only by the operator's accounts:

* the socket's directory is 0700 (0750 when a group is named, e.g. the SuperNode's account is
  in that group) and owned by the service's user; the socket itself is 0600 (0660 with a group);
* the service also reads the connecting process's uid with ``SO_PEERCRED`` and refuses any uid
  it was not told to accept (defence in depth against a loosened directory).

Framing: one request and one reply per connection. A frame is an 8-byte big-endian length of a
JSON header, the header, then the binary blobs the header lists in order. A Flower ``Message``
crosses as its deflated object tree (the bytes Flower's own transport ships), so neither side
shares Python objects with the other and content ids are those of a real run.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

MAX_HEADER = 16 * 1024 * 1024  # a header is metadata only; anything larger is not ours
MAX_BLOBS = 8 * 1024 * 1024 * 1024  # 8 GiB: large relays (Paillier ciphertexts of 300k rows) fit


class ChannelError(RuntimeError):
    """The local channel is unusable: wrong permissions, refused peer, malformed frame, no service."""


class ServiceDown(ChannelError):
    """Nothing listens on the socket (yet): the request was not delivered, so it may be sent again."""


@dataclass
class Frame:
    """One header (JSON-able dict) and the blobs it carries."""

    header: dict[str, Any]
    blobs: list[bytes]


# -- messages <-> blobs --------------------------------------------------------------------------
def message_to_frame(header: dict[str, Any], message: Message) -> Frame:
    """``header`` plus ``message`` as its deflated Flower object tree."""
    objects = {oid: obj.deflate() for oid, obj in get_all_nested_objects(message).items()}
    ids = list(objects)
    head = {**header, "root": message.object_id, "objects": ids, "message_id": message.metadata.message_id}
    return Frame(head, [objects[i] for i in ids])


def frame_to_message(frame: Frame) -> Message:
    ids = frame.header.get("objects")
    root = frame.header.get("root")
    if not isinstance(ids, list) or len(ids) != len(frame.blobs) or not isinstance(root, str):
        raise ChannelError("malformed frame: object list and blobs do not match")
    msg = inflate_object_from_contents(root, dict(zip(ids, frame.blobs)))
    if not isinstance(msg, Message):
        raise ChannelError(f"malformed frame: the root object is a {type(msg).__name__}, not a Message")
    # the message id is not part of the object tree (the SuperLink assigns it): carried alongside
    msg.metadata.__dict__["_message_id"] = str(frame.header.get("message_id") or "")
    return msg


# -- framing -------------------------------------------------------------------------------------
def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ChannelError(f"the peer closed the channel after {got} of {n} bytes")
        got += k
    return bytes(buf)


def frame_head(frame: Frame) -> bytes:
    """The length prefix and JSON header of ``frame`` (its blobs follow as they are)."""
    header = dict(frame.header)
    header["blob_sizes"] = [len(b) for b in frame.blobs]
    raw = json.dumps(header, sort_keys=True).encode()
    return struct.pack(">Q", len(raw)) + raw


def send_frame(sock: socket.socket, frame: Frame) -> None:
    sock.sendall(frame_head(frame))
    for blob in frame.blobs:
        sock.sendall(blob)


def write_frame_file(path: Path, frame: Frame) -> None:
    """``frame`` to ``path`` (mode 0600) atomically: temp file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(frame_head(frame))
        for blob in frame.blobs:
            fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_frame_file(path: Path) -> Frame:
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ChannelError(f"{path}: truncated frame file ({len(raw)} bytes)")
    (n,) = struct.unpack(">Q", raw[:8])
    try:
        header = json.loads(raw[8 : 8 + n])
    except json.JSONDecodeError as exc:
        raise ChannelError(f"{path}: malformed frame header: {exc}") from None
    sizes = header.pop("blob_sizes", [])
    blobs, pos = [], 8 + n
    for size in sizes:
        blobs.append(raw[pos : pos + size])
        pos += size
    if pos != len(raw):
        raise ChannelError(f"{path}: truncated or padded frame file ({len(raw)} bytes, expected {pos})")
    return Frame(header, blobs)


def recv_frame(sock: socket.socket) -> Frame:
    (n,) = struct.unpack(">Q", _recv_exact(sock, 8))
    if n > MAX_HEADER:
        raise ChannelError(f"frame header of {n} bytes exceeds {MAX_HEADER}")
    try:
        header = json.loads(_recv_exact(sock, n))
    except json.JSONDecodeError as exc:
        raise ChannelError(f"malformed frame header: {exc}") from None
    sizes = header.pop("blob_sizes", [])
    if not isinstance(header, dict) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise ChannelError("malformed frame header: bad blob sizes")
    if sum(sizes) > MAX_BLOBS:
        raise ChannelError(f"frame of {sum(sizes)} bytes exceeds {MAX_BLOBS}")
    return Frame(header, [_recv_exact(sock, s) for s in sizes])


# -- who may connect -----------------------------------------------------------------------------
def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux ``SO_PEERCRED``)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def check_private_dir(directory: Path, *, group: bool) -> None:
    """Refuse a socket directory others could enter (or that belongs to someone else)."""
    st = directory.stat()
    if st.st_uid != os.getuid():
        raise ChannelError(f"{directory}: owned by uid {st.st_uid}, not by this service's uid {os.getuid()}")
    allowed = 0o750 if group else 0o700
    extra = stat.S_IMODE(st.st_mode) & ~allowed
    if extra:
        raise ChannelError(
            f"{directory}: mode {stat.S_IMODE(st.st_mode):o} lets other accounts reach the node socket "
            f"(allowed at most {allowed:o}); chmod it or choose another directory"
        )


def bind_private_socket(path: Path, *, group: str | None = None) -> socket.socket:
    """A listening Unix socket at ``path``, reachable only by this user (and ``group`` if named)."""
    import grp

    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o750 if group else 0o700)
    gid = grp.getgrnam(group).gr_gid if group else -1
    if group:
        os.chown(directory, -1, gid)
        os.chmod(directory, 0o750)
    check_private_dir(directory, group=bool(group))
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ChannelError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()  # a stale socket of an earlier run of this service
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117 if group else 0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if group:
        os.chown(path, -1, gid)
    os.chmod(path, 0o660 if group else 0o600)
    sock.listen(8)
    return sock


def call(path: Path, frame: Frame, timeout: float | None = None) -> Frame:
    """Send one request frame to the service at ``path``; return its reply frame."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ServiceDown(
                f"cannot reach the node service at {path} ({exc.strerror or exc}); is `fedcredit node serve` running?"
            ) from None
        except OSError as exc:
            raise ChannelError(
                f"cannot reach the node service at {path} ({exc.strerror or exc}); "
                "is `fedcredit node serve` running, and may this account use its socket?"
            ) from None
        try:
            send_frame(sock, frame)
        except (BrokenPipeError, ConnectionResetError):
            # the service refused us (e.g. a uid it does not allow) and closed while we were still
            # sending: its answer saying why is already in our receive buffer, so read it
            return recv_frame(sock)
        return recv_frame(sock)
    finally:
        sock.close()

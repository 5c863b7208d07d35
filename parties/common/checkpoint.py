"""Resuming a run after its coordinator was lost: the node's and the coordinator's checkpoints.

Why two: the coordinator only knows *where* a run was (which phases completed, which epoch
boundary both parties reached); the state needed to continue (aligned rows, split masks,
preprocessing, the training party with its Paillier key) is node-local and never leaves the node.

* Node side (:func:`save_node_checkpoint` / :func:`restore_node_checkpoint`): at every phase end
  and every resumable protocol boundary the node writes its protocol state to its own directory
  (``checkpoints/<run id>/<label>.json``, mode 0600, atomic replace), signed with the node's
  own egress key. A resumed run is a new Flower run with a fresh ``Context``; its ``hello``
  names the label and the node loads it back, after checking the signature (a file edited
  between the interruption and the resumption is refused, naming the file) and that it was
  written for this run id and this exact scenario. Of a training phase's ``<phase>@<n>``
  checkpoints only the two latest are kept (the coordinator's label is never more than one
  boundary behind a node's; a SecureBoost host's state holds a tree's ciphertexts).
* Coordinator side (:class:`CoordinatorCheckpoint`): ``checkpoint.json`` in the run directory,
  replaced atomically whenever both parties report the same new label.

Session material (hello nonce, session id, stream sequence numbers) is never checkpointed: a
resumed segment runs under a fresh session the ledger links to the interrupted one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from parties.common.node import STATE, NodeRuntime

# per-run session material, never carried into a resumed segment
SESSION_KEYS = frozenset({"hello_nonce", "session", "streams", "run_id"})
LABEL_RE = re.compile(r"[A-Za-z0-9_:@.-]{1,80}")
CHECKPOINT = "checkpoint.json"
REPORTED = "checkpoint"  # the summary key a node reports a written checkpoint's label under
SIGNED_AS = b"fedcredit-node-checkpoint/1\0"  # domain separation: no envelope or log record verifies as one
KEEP_BOUNDARIES = 2  # <phase>@<n> checkpoints kept per phase (the coordinator may be one behind)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, foreign (another run or scenario) or unreadable; says which file."""


def _atomic_write(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise CheckpointError(f"malformed checkpoint label {label!r}")
    return label


# -- node side ----------------------------------------------------------------------------------
def node_checkpoint_path(node: NodeRuntime, run_id: str, label: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{8,64}", str(run_id)):
        raise CheckpointError(f"node {node.name}: malformed run id {run_id!r}")
    return node.dir / "checkpoints" / str(run_id) / f"{_check_label(label).replace(':', '_')}.json"


def _encode(value: object) -> dict:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, (str, int, float, bool)):
        return {"v": value}
    raise CheckpointError(f"cannot checkpoint a {type(value).__name__} state value")


def save_node_checkpoint(node: NodeRuntime, label: str) -> Path:
    """This node's protocol state (everything but session material) under ``label``."""
    run_id = str(node.get("run_id"))
    rec = node.context.state.config_records[STATE]
    state = {k: _encode(rec[k]) for k in sorted(rec.keys()) if k not in SESSION_KEYS}
    doc = {"run_id": run_id, "party": node.name, "scenario_hash": node.scenario.config_hash, "label": label}
    path = node_checkpoint_path(node, run_id, label)
    body = json.dumps({**doc, "state": state}, sort_keys=True).encode()
    signature = node.signing_key().sign(_signed_bytes(body))
    # one header line, then the signed bytes as they are (no second JSON encoding of a state
    # that holds a SecureBoost tree's ciphertexts: hundreds of MB at 300,000 rows)
    _atomic_write(path, json.dumps({"signature": signature.hex()}).encode() + b"\n" + body)
    _prune(path.parent, label)
    return path


def _signed_bytes(body: bytes) -> bytes:
    return SIGNED_AS + hashlib.sha256(body).digest()


_BOUNDARY = re.compile(r"(?P<phase>[A-Za-z0-9_.-]+)@(?P<n>[0-9]+)")


def _prune(directory: Path, label: str) -> None:
    """Remove this phase's boundary checkpoints older than the :data:`KEEP_BOUNDARIES` latest."""
    m = _BOUNDARY.fullmatch(label)
    if m is None:
        return
    for old in directory.glob(f"{m['phase']}@*.json"):
        o = _BOUNDARY.fullmatch(old.stem)
        if o is not None and o["phase"] == m["phase"] and int(o["n"]) <= int(m["n"]) - KEEP_BOUNDARIES:
            old.unlink(missing_ok=True)


def restore_node_checkpoint(node: NodeRuntime, run_id: str, label: str) -> None:
    """Load ``label`` of run ``run_id`` back into this node's (fresh) state; refuses a foreign one."""
    path = node_checkpoint_path(node, run_id, label)
    try:
        head, _, body = path.read_bytes().partition(b"\n")
        signature = bytes.fromhex(json.loads(head)["signature"])
    except FileNotFoundError:
        raise CheckpointError(f"node {node.name}: no checkpoint {label!r} of run {run_id} at {path}") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"node {node.name}: checkpoint {path} is unreadable: {exc!r}") from None
    try:  # before anything of it is believed: the node's own key signed exactly these bytes
        node.signing_key().public_key().verify(signature, _signed_bytes(body))
    except InvalidSignature:
        raise CheckpointError(
            f"node {node.name}: checkpoint {path} does not verify under this node's key "
            "(edited after it was written, or written by another node): refusing to resume from it"
        ) from None
    doc = json.loads(body)
    expected = {"run_id": run_id, "party": node.name, "scenario_hash": node.scenario.config_hash, "label": label}
    for key, want in expected.items():
        if doc.get(key) != want:
            raise CheckpointError(f"node {node.name}: checkpoint {path} has {key} {doc.get(key)!r}, expected {want!r}")
    rec = node.context.state.config_records.get(STATE)
    for key in ("session", "streams"):  # a resumed segment starts a new session with fresh streams
        if rec is not None and key in rec:
            del rec[key]
    for key, enc in doc["state"].items():
        if key in SESSION_KEYS:
            raise CheckpointError(f"node {node.name}: checkpoint {path} carries session material {key!r}")
        node.put(key, base64.b64decode(enc["b64"]) if "b64" in enc else enc["v"])


# -- coordinator side ---------------------------------------------------------------------------
@dataclass
class CoordinatorCheckpoint:
    """Where a run stood at its last boundary both parties reached (``checkpoint.json``).

    ``phases`` holds the finish summaries of completed phases (aggregate numbers the final
    metrics are built from); ``label`` is the node checkpoint both parties wrote there;
    ``training`` is the training phase in progress (``None`` between phases), ``epochs`` how
    many of its epochs (trees) completed.
    """

    run_id: str
    scenario_hash: str
    label: str
    phases: dict[str, dict] = field(default_factory=dict)
    training: str | None = None
    epochs: int = 0
    segment: int = 0  # 0 = the original run, n = its n-th resumption

    def save(self, out_dir: Path) -> None:
        _atomic_write(Path(out_dir) / CHECKPOINT, json.dumps(asdict(self), indent=1, sort_keys=True, default=float))

    @classmethod
    def load(cls, out_dir: Path) -> CoordinatorCheckpoint:
        path = Path(out_dir) / CHECKPOINT
        try:
            doc = json.loads(path.read_text())
            ck = cls(**doc)
        except FileNotFoundError:
            raise CheckpointError(
                f"{path}: no checkpoint (the run stopped before its first phase completed; start it again)"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from None
        _check_label(ck.label)
        return ck

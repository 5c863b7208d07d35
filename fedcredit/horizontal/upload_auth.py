"""Signed CKKS uploads, so a releasing bank decrypts only a genuine aggregate of >= min_banks banks.

Why: under CKKS one bank decrypts the released model. If it decrypted whatever the coordinator
sent, the coordinator could send it one bank's upload and read that bank's update. So every bank
signs its upload with its node key (:func:`upload_digest`: scenario, run, task, round, party and
the SHA-256 of every ciphertext), the coordinator forwards the signed uploads of the round with
the release request, and the releasing bank (:func:`check_uploads`) verifies each signature
against the peer keys its own operator configured, requires at least ``min_banks`` distinct banks
of its scenario and one task and round, then sums the ciphertexts itself and decrypts only that
sum. Otherwise it refuses, naming the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RECIPE = "fedcredit/ckks-upload/v1"


class ReleaseRefused(RuntimeError):
    """The releasing bank will not decrypt: the aggregate is not proven to be >= min_banks uploads."""


def upload_digest(
    *, scenario_sha256: str, run_id: str, task: str, round: int, party: str, chunks: Sequence[bytes]
) -> bytes:
    """What a bank signs for one CKKS upload (canonical JSON, hashed)."""
    body = {
        "recipe": RECIPE,
        "scenario": scenario_sha256,
        "run": run_id,
        "task": task,
        "round": int(round),
        "party": party,
        "chunks": [hashlib.sha256(bytes(c)).hexdigest() for c in chunks],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def signed_upload(party: str, task: str, round: int, chunks: Sequence[bytes], signature: bytes) -> dict:
    """One signed upload as it travels in a release request (wire-encodable dict)."""
    return {"party": party, "task": task, "round": int(round), "chunks": list(chunks), "sig": bytes(signature)}


def check_uploads(
    uploads: Sequence[Mapping[str, Any]],
    *,
    me: str,
    task: str,
    scenario_sha256: str,
    run_id: str,
    peers: Mapping[str, Ed25519PublicKey],
    banks: Sequence[str],
    min_banks: int,
) -> list[tuple[str, list[bytes]]]:
    """(party, chunks) of each upload once all checks hold; :class:`ReleaseRefused` otherwise."""
    where = f"bank {me!r} refuses to decrypt the {task} aggregate"
    if len(uploads) < min_banks:
        raise ReleaseRefused(f"{where}: it is proven to sum {len(uploads)} signed upload(s), fewer than {min_banks}")
    seen: set[str] = set()
    rounds: set[int] = set()
    out = []
    for i, u in enumerate(uploads):
        try:
            party, utask, rnd = str(u["party"]), str(u["task"]), int(u["round"])
            chunks, sig = [bytes(c) for c in u["chunks"]], bytes(u["sig"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ReleaseRefused(f"{where}: upload {i} is malformed ({exc})") from None
        if party not in banks:
            raise ReleaseRefused(f"{where}: upload {i} is from {party!r}, not a bank of this scenario")
        if party in seen:
            raise ReleaseRefused(f"{where}: two uploads from {party!r} (the aggregate must be of distinct banks)")
        if utask != task:
            raise ReleaseRefused(f"{where}: upload of {party!r} is for task {utask!r}")
        pub = peers.get(party)
        if pub is None:
            raise ReleaseRefused(f"{where}: no configured public key for {party!r}")
        digest = upload_digest(
            scenario_sha256=scenario_sha256, run_id=run_id, task=task, round=rnd, party=party, chunks=chunks
        )
        try:
            pub.verify(sig, digest)
        except InvalidSignature:
            raise ReleaseRefused(
                f"{where}: the upload attributed to {party!r} (round {rnd}) is not signed by its node key"
            ) from None
        seen.add(party)
        rounds.add(rnd)
        out.append((party, chunks))
    if len(rounds) != 1:
        raise ReleaseRefused(f"{where}: uploads from different rounds {sorted(rounds)}")
    return out


def statement_digest(*, kind: str, scenario_sha256: str, run_id: str, party: str, data: bytes) -> bytes:
    """What a bank signs to vouch for one key-handover value (its X25519 key, a sealed CKKS key
    envelope): bound to the scenario, the Flower run and the signing party."""
    body = {"recipe": RECIPE, "kind": kind, "scenario": scenario_sha256, "run": run_id, "party": party}
    body["data"] = hashlib.sha256(bytes(data)).hexdigest()
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def check_statement(
    *,
    kind: str,
    scenario_sha256: str,
    run_id: str,
    party: str,
    data: bytes,
    signature: bytes,
    peers: Mapping[str, Ed25519PublicKey],
    me: str,
) -> None:
    """:class:`KeyHandoverRefused` unless ``party``'s configured node key signed ``data``."""
    pub = peers.get(party)
    if pub is None:
        raise KeyHandoverRefused(f"bank {me!r}: no configured public key for {party!r}; refusing its {kind}")
    digest = statement_digest(kind=kind, scenario_sha256=scenario_sha256, run_id=run_id, party=party, data=data)
    try:
        pub.verify(bytes(signature), digest)
    except (InvalidSignature, ValueError):
        raise KeyHandoverRefused(
            f"bank {me!r}: the {kind} attributed to {party!r} is not signed by its node key (substituted?)"
        ) from None


class KeyHandoverRefused(RuntimeError):
    """A CKKS key hand-over value is not vouched for by its owner's node key."""

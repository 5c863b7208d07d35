"""The per-run consent check: a store of verified tokens, then vectorised claim checks.

Why a store: one Ed25519 verification costs ~60-160 us, so 1M tokens take one to three minutes
per run. A token's *signature* never changes, though; only the run-dependent checks (audience,
purpose, categories, validity window, revocation) do. So a party verifies each token's
signature once, the first time it sees it, and files its claims under the SHA-256 of the exact
token bytes in a :class:`VerifiedStore`. A later run hashes each presented token and looks it up:

* a token whose bytes differ in any way (forged, altered claims, another signature) has another
  digest (SHA-256 collision resistance), is not found, and is verified afresh, so the store never
  vouches for bytes it did not verify;
* the store on disk is bound by an HMAC-SHA256 under a node-local secret key, so nobody without
  that key (the bank, the coordinator, another tenant of the disk) can plant entries; a store
  whose MAC fails is refused, naming the file;
* revocation, validity and scope are re-evaluated every run on the stored claims, as numpy
  column operations, so they cost microseconds per thousand tokens.

Ids of refused enterprises stay on the node (:attr:`CheckResult.reasons`); only counts by reason
and issuer go to the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.consent.tokens import Grant, IssuerKey, RevocationList, TokenRejected, verify_token

# Refusal reasons, in the order they are decided (the first that applies is recorded).
REASONS = (
    "no_token",
    "malformed",
    "unknown_issuer",
    "forged",
    "wrong_subject",
    "wrong_audience",
    "wrong_purpose",
    "out_of_scope",
    "not_yet_valid",
    "expired",
    "revoked",
)
_STORE_VERSION = "fedcredit-consent-store/1"


class StoreError(ValueError):
    """A verified-token store that cannot be trusted (bad MAC, wrong format); names the file."""


class VerifiedStore:
    """Token SHA-256 -> verified claims, kept as columns so per-run checks are vectorised."""

    def __init__(self) -> None:
        self._row: dict[bytes, int] = {}
        self._grants: list[Grant] = []
        self._cols: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._grants)

    @staticmethod
    def digest(token: str | bytes) -> bytes:
        return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()

    def add(self, token: str | bytes, grant: Grant) -> int:
        """File ``grant`` (which the caller verified from ``token``) under the token's digest."""
        d = self.digest(token)
        if d in self._row:
            return self._row[d]
        self._row[d] = len(self._grants)
        self._grants.append(grant)
        self._cols = None
        return self._row[d]

    def verify_and_add(
        self, tokens: Sequence[str | bytes], issuers: Mapping[str, IssuerKey]
    ) -> tuple[int, Counter[str]]:
        """Verify tokens not yet in the store and add the good ones: (added, failures by reason)."""
        added, failed = 0, Counter[str]()
        for t in tokens:
            if self.digest(t) in self._row:
                continue
            try:
                self.add(t, verify_token(t, issuers))
                added += 1
            except TokenRejected as exc:
                failed[exc.reason] += 1
        return added, failed

    def rows(self, digests: Sequence[bytes]) -> np.ndarray:
        """Store row per digest, -1 where the token was never verified here."""
        get = self._row.get
        return np.fromiter((get(d, -1) for d in digests), dtype=np.int64, count=len(digests))

    def grant(self, row: int) -> Grant:
        return self._grants[row]

    def columns(self) -> dict[str, np.ndarray]:
        """The claims as numpy columns; aud and cats as '|a|b|' strings for substring tests."""
        if self._cols is None:
            g = self._grants
            self._cols = {
                "iss": np.array([x.iss for x in g], dtype=str),
                "sub": np.array([x.sub for x in g], dtype=str),
                "aud": np.array(["|" + "|".join(x.aud) + "|" for x in g], dtype=str),
                "purpose": np.array([x.purpose for x in g], dtype=str),
                "cats": np.array(["|" + "|".join(x.cats) + "|" for x in g], dtype=str),
                "nbf": np.array([x.nbf for x in g], dtype=np.int64),
                "exp": np.array([x.exp for x in g], dtype=np.int64),
                "jti": np.array([x.jti for x in g], dtype=str),
            }
        return self._cols

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], key: bytes) -> Path:
        """Write the store and its HMAC (``path`` + ``.mac``); the key never leaves the node."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "version": _STORE_VERSION,
            "digests": [d.hex() for d in self._row],
            "grants": [
                [g.iss, g.sub, list(g.aud), g.purpose, list(g.cats), g.nbf, g.exp, g.jti, g.iat] for g in self._grants
            ],
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, p)
        p.with_suffix(p.suffix + ".mac").write_text(hmac.new(key, raw, hashlib.sha256).hexdigest())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes) -> VerifiedStore:
        """The store at ``path``, or an empty one if there is none; a bad MAC is refused."""
        p = Path(path)
        store = cls()
        if not p.exists():
            return store
        raw = p.read_bytes()
        mac_path = p.with_suffix(p.suffix + ".mac")
        mac = mac_path.read_text().strip() if mac_path.exists() else ""
        if not hmac.compare_digest(mac, hmac.new(key, raw, hashlib.sha256).hexdigest()):
            raise StoreError(
                f"{p}: verified-token store fails its HMAC (altered, or another node's key); delete it to re-verify"
            )
        body = json.load(io.BytesIO(raw))
        if body.get("version") != _STORE_VERSION:
            raise StoreError(f"{p}: not a {_STORE_VERSION} store")
        for d, g in zip(body["digests"], body["grants"], strict=True):
            store._row[bytes.fromhex(d)] = len(store._grants)
            store._grants.append(
                Grant(g[0], g[1], tuple(g[2]), g[3], tuple(g[4]), int(g[5]), int(g[6]), g[7], int(g[8]))
            )
        return store


def store_key(path: str | os.PathLike[str]) -> bytes:
    """The node-local HMAC key of the store, created (owner-only) on first use."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    key = p.read_bytes()
    if len(key) != 32:
        raise StoreError(f"{p}: store key must be 32 bytes")
    return key


@dataclass(frozen=True)
class ConsentPolicy:
    """What a run needs a token to say: issuers, audience, purpose, categories, day, revocations."""

    issuers: Mapping[str, IssuerKey]
    audience: tuple[str, ...]
    purpose: str
    categories: frozenset[str]
    at: int  # seconds since the epoch
    revocations: Mapping[str, RevocationList] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "issuers": {n: k.fingerprint for n, k in sorted(self.issuers.items())},
            "audience": list(self.audience),
            "purpose": self.purpose,
            "categories": sorted(self.categories),
            "at": self.at,
            "revocation_lists": {n: r.version for n, r in sorted(self.revocations.items())},
        }


@dataclass
class CheckResult:
    """Per position: accepted or the refusal reason. ``reasons`` stays on the node."""

    accepted: np.ndarray  # bool
    reasons: np.ndarray = field(repr=False)  # str, '' where accepted
    issuers: np.ndarray = field(repr=False)  # str, the token's issuer ('' if unknown)
    policy: ConsentPolicy
    verified_now: int = 0  # tokens whose signature was checked in this run (not yet in the store)

    def counts(self) -> dict[str, int]:
        r = self.reasons[~self.accepted]
        return {k: int(v) for k, v in sorted(Counter(r.tolist()).items())}

    def by_issuer(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for iss in sorted(set(self.issuers.tolist())):
            m = self.issuers == iss
            out[iss or "(unknown)"] = {
                "accepted": int((m & self.accepted).sum()),
                "refused": int((m & ~self.accepted).sum()),
            }
        return out

    def ledger_payload(self) -> dict[str, Any]:
        """Counts only: never an id or a token."""
        return {
            "checked": int(self.accepted.size),
            "accepted": int(self.accepted.sum()),
            "refused": self.counts(),
            "by_issuer": self.by_issuer(),
            "verified_now": self.verified_now,
            **self.policy.describe(),
        }


def check_tokens(
    ids: Sequence[str], tokens: Sequence[str | bytes], policy: ConsentPolicy, store: VerifiedStore
) -> CheckResult:
    """Decide, for each position, whether ``tokens[i]`` authorises using ``ids[i]``'s data.

    An empty token means the bank holds none for that enterprise (``no_token``). Signatures are
    verified only for tokens not yet in ``store`` (and added to it); every other check runs on
    the store's columns.
    """
    n = len(ids)
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for {n} ids")
    reasons = np.full(n, "", dtype=object)
    empty = np.fromiter((len(t) == 0 for t in tokens), dtype=bool, count=n)
    reasons[empty] = "no_token"
    digests = [VerifiedStore.digest(t) for t in tokens]
    rows = store.rows(digests)
    fresh = np.flatnonzero((rows < 0) & ~empty)
    verified_now = 0
    for i in fresh:
        try:
            token = tokens[int(i)]
            rows[i] = store.add(token, verify_token(token, policy.issuers))
            verified_now += 1
        except TokenRejected as exc:
            reasons[i] = exc.reason
    have = rows >= 0
    issuers = np.full(n, "", dtype=object)
    if have.any():
        cols = store.columns()
        r = rows[have]
        iss = cols["iss"][r]
        issuers[have] = iss
        sub = cols["sub"][r]
        aud, cats = cols["aud"][r], cols["cats"][r]
        aud_ok = np.ones(r.size, dtype=bool)
        for a in policy.audience:
            aud_ok &= np.char.find(aud, f"|{a}|") >= 0
        cats_ok = np.ones(r.size, dtype=bool)
        for c in policy.categories:
            cats_ok &= np.char.find(cats, f"|{c}|") >= 0
        nbf, exp, jti = cols["nbf"][r], cols["exp"][r], cols["jti"][r]
        revoked = np.zeros(r.size, dtype=bool)
        for name, rl in policy.revocations.items():
            revoked |= (iss == name) & np.isin(jti, list(rl.revoked))
        checks = [
            ("unknown_issuer", ~np.isin(iss, list(policy.issuers))),
            ("wrong_subject", sub != np.asarray(ids, dtype=str)[have]),
            ("wrong_audience", ~aud_ok),
            ("wrong_purpose", cols["purpose"][r] != policy.purpose),
            ("out_of_scope", ~cats_ok),
            ("not_yet_valid", nbf > policy.at),
            ("expired", exp <= policy.at),
            ("revoked", revoked),
        ]
        sub_reasons = np.full(r.size, "", dtype=object)
        for reason, bad in reversed(checks):  # the earliest check wins
            sub_reasons[bad] = reason
        reasons[have] = sub_reasons
    accepted = reasons == ""
    return CheckResult(np.asarray(accepted, dtype=bool), reasons, issuers, policy, verified_now)

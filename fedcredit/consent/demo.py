"""Demo consent material for bundled and synthetic data, which have no real authorisations.

A *demo issuer* (its key derived from the scenario seed, so anyone can recompute it: never a
real trust anchor; runs using it are marked ``mode = "demo"`` in the ledger) issues one token
per enterprise, and a seeded share of them is deliberately bad so every refusal path runs:
revoked (named in the demo revocation list), expired, for another purpose, without a category
the centre's columns need, or forged (signed with another key under the demo issuer's name).

Signing 30k tokens takes seconds, so :func:`demo_material` caches the tokens in a directory
(keyed by everything they depend on) and later runs reuse them byte for byte.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.consent.tokens import Issuer, IssuerKey, RevocationList
from protocols.common import parallel

DEMO_ISSUER = "fedcredit-demo-issuer"
DAY = 86_400
# Categories a demo token covers: every centre category of fedcredit.data.schema (a token may
# cover more than a run uses). "out of scope" tokens cover only OUT_OF_SCOPE_CATEGORIES.
OUT_OF_SCOPE_CATEGORIES = ("utilities",)


def epoch(day: dt.date) -> int:
    """Noon UTC of ``day``, in seconds: the instant a run checks consents at."""
    return calendar.timegm(day.timetuple()) + DAY // 2


@functools.lru_cache(maxsize=8)
def demo_issuer(seed: int) -> Issuer:
    """The demo issuer of ``seed`` (one per process: every step asks for it)."""
    return Issuer.from_seed(DEMO_ISSUER, str(seed).encode())


def _jti(seed: int, uscc: str) -> str:
    return f"demo-{seed}-{uscc}"


def demo_revocation_list(ids: list[str], *, seed: int, shares: DemoShares, day: dt.date) -> str:
    """The demo issuer's signed revocation list (version 1) naming the revoked demo tokens of ``ids``.

    Memoised per process by everything it depends on (the centre asks at every step of a run and
    at every inference query; drawing the kinds hashes every id)."""
    memo_key = hashlib.sha256(
        json.dumps([seed, shares.__dict__, day.isoformat()]).encode() + b"\n" + "\n".join(ids).encode()
    ).digest()
    hit = _RL_MEMO.get(memo_key)
    if hit is None:
        kinds = shares.kinds(ids, seed)
        revoked = [_jti(seed, u) for u, k in zip(ids, kinds, strict=True) if k == "revoked"]
        hit = demo_issuer(seed).revocation_list(1, revoked, epoch(day) - DAY)
        if len(_RL_MEMO) >= 8:
            _RL_MEMO.clear()
        _RL_MEMO[memo_key] = hit
    return hit


_RL_MEMO: dict[bytes, str] = {}  # public demo data: nothing secret


@dataclass(frozen=True)
class DemoShares:
    """Share of enterprises whose demo token is bad, per kind (the rest are good)."""

    revoked: float = 0.0
    expired: float = 0.0
    wrong_purpose: float = 0.0
    out_of_scope: float = 0.0
    forged: float = 0.0

    def kinds(self, ids: list[str], seed: int) -> np.ndarray:
        """Per enterprise: '' (good) or the kind of bad token, drawn from a hash of (seed, id), so
        any party can redraw it for the ids it holds (the centre, for the revocation list)."""
        n = len(ids)
        draw = np.fromiter(
            (int.from_bytes(hashlib.sha256(f"{seed}:{u}".encode()).digest()[:8], "big") for u in ids),
            dtype=np.float64,
            count=n,
        ) / float(2**64)
        out = np.full(n, "", dtype=object)
        lo = 0.0
        for kind in ("revoked", "expired", "wrong_purpose", "out_of_scope", "forged"):
            hi = lo + getattr(self, kind)
            out[(draw >= lo) & (draw < hi)] = kind
            lo = hi
        return out


@dataclass
class DemoMaterial:
    """Tokens (aligned with the ids given), the demo issuer's public key and revocation list."""

    tokens: list[str]
    issuer: IssuerKey
    revocation_list: str

    def revocations(self) -> RevocationList:
        return RevocationList.verify(self.revocation_list, {self.issuer.name: self.issuer}, "demo revocation list")


PARALLEL_MIN = 4096  # tokens to sign before worker processes pay off


def _issue_chunk(
    ids: list[str], kinds: list[str], audience: tuple[str, ...], purpose: str, categories: tuple[str, ...],
    day: dt.date, seed: int,
) -> list[str]:  # fmt: skip
    """Sign the demo tokens of ``ids`` (``kinds[i]``: '' or how token i is spoiled); a worker
    derives the demo keys from ``seed`` itself (demo keys are public anyway)."""
    issuer, forger = demo_issuer(seed), Issuer.from_seed(DEMO_ISSUER, f"forger-{seed}".encode())
    at = epoch(day)
    other_purpose = "loan_decision" if purpose != "loan_decision" else "credit_risk_modelling"
    tokens: list[str] = []
    for u, kind in zip(ids, kinds, strict=True):
        nbf, exp = at - 365 * DAY, at + 365 * DAY
        if kind == "expired":
            nbf, exp = at - 400 * DAY, at - DAY
        signer = forger if kind == "forged" else issuer
        tokens.append(
            signer.issue(
                u,
                audience,
                other_purpose if kind == "wrong_purpose" else purpose,
                OUT_OF_SCOPE_CATEGORIES if kind == "out_of_scope" else categories,
                nbf,
                exp,
                token_id=_jti(seed, u),
            )
        )
    return tokens


def demo_material(
    ids: list[str],
    *,
    audience: tuple[str, ...],
    purpose: str,
    categories: tuple[str, ...],
    day: dt.date,
    seed: int,
    shares: DemoShares,
    cache_dir: Path | None = None,
) -> DemoMaterial:
    """Demo tokens for ``ids`` (cached in ``cache_dir`` when given)."""
    issuer = demo_issuer(seed)
    key = hashlib.sha256(
        json.dumps(
            [
                sorted(audience),
                purpose,
                sorted(categories),
                day.isoformat(),
                seed,
                shares.__dict__,
                issuer.public.fingerprint,
            ]
        ).encode()
        + "\n".join(ids).encode()
    ).hexdigest()[:24]
    cache = cache_dir / f"demo-tokens-{key}.json" if cache_dir is not None else None
    hit = _MEMO.get(str(cache)) if cache is not None else None
    if hit is not None and cache is not None and cache.exists():  # same process (a run asks at every step)
        return hit
    if cache is not None and cache.exists():
        body = json.loads(cache.read_text())
        if len(body["tokens"]) == len(ids):
            return _remember(cache, DemoMaterial(body["tokens"], issuer.public, body["revocation_list"]))
    kinds = shares.kinds(ids, seed).tolist()
    args = (tuple(audience), purpose, tuple(categories), day, seed)
    workers = parallel.default_workers()
    tokens: list[str] | None = None
    if workers > 1 and len(ids) >= PARALLEL_MIN:
        tasks = [(ids[a:b], kinds[a:b], *args) for a, b in parallel.split(len(ids), workers)]
        parts = parallel.map_processes(_issue_chunk, tasks, workers)
        tokens = None if parts is None else [t for part in parts for t in part]
    if tokens is None:
        tokens = _issue_chunk(ids, kinds, *args)
    rl = demo_revocation_list(ids, seed=seed, shares=shares, day=day)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tokens": tokens, "revocation_list": rl}))
        tmp.replace(cache)
    return (
        DemoMaterial(tokens, issuer.public, rl)
        if cache is None
        else _remember(cache, DemoMaterial(tokens, issuer.public, rl))
    )


_MEMO: dict[str, DemoMaterial] = {}  # by cache file, while it exists (public demo data: nothing secret)


def _remember(cache: Path, m: DemoMaterial) -> DemoMaterial:
    if len(_MEMO) >= 4:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[str(cache)] = m
    return m

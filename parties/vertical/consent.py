"""Consent on the nodes: which enterprises enter PSI (bank), and the centre's token check after it.

Flow (docs/consent.md):

1. ``align`` — the bank inputs to PSI only enterprises it holds a consent token for (and, if it
   keeps a consent CSV, that the CSV allows): :func:`psi_input`.
2. ``consent`` — :class:`ConsentPhase`: the bank sends the intersection's token keys, sealed, to
   the centre (:mod:`protocols.consent`); the centre checks signature, issuer, audience, purpose,
   the categories of every column it will use, validity and revocation
   (:func:`fedcredit.consent.check.check_keys`; it asks for whole tokens only for keys it never
   verified) and answers accepted/refused per position; both drop the refused rows from ``common_rows`` before ``split`` touches any centre value. The
   centre reports counts by reason and issuer for the ledger; ids never leave the nodes.

Fail closed: outside ``[consent] mode = "demo"`` a bank without tokens or a centre without issuer
keys and revocation lists stops the run with an error saying what is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.config import Scenario
from fedcredit.config.sections import ConsentSettings
from fedcredit.consent import ConsentRegistry
from fedcredit.consent.check import (
    ConsentPolicy,
    VerifiedStore,
    check_bundle,
    check_keys,
    check_tokens,
    same_keys,
    store_key,
)
from fedcredit.consent.demo import DemoShares, demo_issuer, demo_material, demo_revocation_list, epoch
from fedcredit.consent.tokens import (
    IssuerKey,
    RevocationList,
    TokenError,
    load_issuer_keys,
    read_tokens,
    unverified_subject,
)
from fedcredit.data.loaders import load_party_data
from fedcredit.data.readers import ReadOptions
from fedcredit.data.schema import CENTRE_CATEGORIES, column_categories
from parties.common.node import NodeRuntime
from parties.vertical.phase import COMMON_ROWS, Phase, get_array, put_array
from protocols.consent import Judge, TokenJudge, TokenSender

_TOKENS_KEY, _RESULT_KEY = "consent_tokens_path", "consent_result"


class ConsentSetupError(RuntimeError):
    """Consent material is missing or unusable; the message names the party and what to configure."""


def settings(node: NodeRuntime) -> ConsentSettings:
    return node.scenario.settings(ConsentSettings)


def _node_setting(node: NodeRuntime, key: str, value: object) -> object:
    return node.context.node_config.get(key) or value


def _demo_shares(s: ConsentSettings) -> DemoShares:
    return DemoShares(s.demo_revoked, s.demo_expired, s.demo_wrong_purpose, s.demo_out_of_scope, s.demo_forged)


def bank_tokens(node: NodeRuntime, peer: str, ids: list[str] | None = None) -> dict[str, str]:
    """The bank's token per enterprise it holds one for (demo mode: generated for ``ids``,
    default all ids of its table)."""
    s = settings(node)
    ids = node.data().ids if ids is None else ids
    path = _node_setting(node, "consent-tokens", s.tokens)
    if not path:
        if s.mode != "demo":
            raise ConsentSetupError(
                f"bank {node.name!r}: no consent tokens ([consent] tokens or node_config consent-tokens) "
                'and [consent] mode is not "demo": refusing to use the centre\'s data without authorisations'
            )
        material = demo_material(
            ids,
            audience=(node.name, peer),
            purpose=node.scenario.purpose,
            categories=CENTRE_CATEGORIES,
            day=s.day,
            seed=node.scenario.seed,
            shares=_demo_shares(s),
            cache_dir=Path(s.demo_dir),
        )
        return dict(zip(ids, material.tokens, strict=True))
    try:
        return _token_file(Path(node.scenario.resolve(str(path))))
    except TokenError as exc:
        raise ConsentSetupError(f"bank {node.name!r}: {exc}") from None


_TOKEN_FILES: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}


def _token_file(path: Path) -> dict[str, str]:
    """The bank's tokens by claimed subject, read once per version of the file in this process
    (a run asks at every step; 1M tokens take seconds to parse). A changed file (inode, size or
    mtime) is read again. Callers must not change the dict (it is shared)."""
    try:
        st = path.stat()
    except OSError:
        st = None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
    hit = _TOKEN_FILES.get(str(path))
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1]
    by_id: dict[str, str] = {}
    for t in read_tokens(path):  # filed by their claimed subject; the centre verifies every claim
        sub = unverified_subject(t)
        if sub is not None:
            by_id[sub] = t
    if stamp is not None:
        if len(_TOKEN_FILES) >= 4:
            _TOKEN_FILES.clear()
        _TOKEN_FILES[str(path)] = (stamp, by_id)
    return by_id


def psi_input(node: NodeRuntime, ids: list[str]) -> tuple[list[str], dict]:
    """The bank's PSI input: ids it holds a token for (and its consent CSV allows, if any)."""
    s = settings(node)
    summary: dict = {"mode": s.mode, "bank_ids": len(ids)}
    if s.mode != "demo":
        held = set(bank_tokens(node, ""))
        ids = [u for u in ids if u in held]
        summary["with_token"] = len(ids)
    registry = _node_setting(node, "consent", s.registry)
    if registry:
        result = ConsentRegistry.from_csv(node.scenario.resolve(str(registry))).filter(
            ids, node.name, node.scenario.purpose, s.day
        )
        ids = result.allowed
        summary["bank_registry"] = result.ledger_payload()
    return ids, summary


def _paths(value: object) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _newest(rls: list[RevocationList]) -> dict[str, RevocationList]:
    """Each issuer's highest-version revocation list."""
    out: dict[str, RevocationList] = {}
    for rl in rls:
        if rl.iss not in out or rl.version > out[rl.iss].version:
            out[rl.iss] = rl
    return out


def trust_anchors(node: NodeRuntime, ids: list[str]) -> tuple[dict[str, IssuerKey], dict[str, RevocationList]]:
    """The issuers this node trusts and their newest revocation lists (demo: the demo issuer's,
    naming the revoked demo tokens among ``ids``). Fail closed if any is missing."""
    s = settings(node)
    who = f"{'bank' if node.role == 'bank' else 'credit centre'} {node.name!r}"
    try:
        if s.mode == "demo":
            issuer = demo_issuer(node.scenario.seed)
            issuers = {issuer.name: issuer.public}
            rl = demo_revocation_list(ids, seed=node.scenario.seed, shares=_demo_shares(s), day=s.day)
            return issuers, {issuer.name: RevocationList.verify(rl, issuers, "demo revocation list")}
        keys = _paths(_node_setting(node, "consent-issuers", s.issuer_keys))
        rl_paths = _paths(_node_setting(node, "consent-revocations", s.revocations))
        if not keys or not rl_paths:
            raise ConsentSetupError(
                f"{who}: no trusted issuer keys or revocation lists ([consent] issuer_keys / revocations) "
                'and [consent] mode is not "demo"'
            )
        issuers = load_issuer_keys(node.scenario.resolve(k) for k in keys)
        revocations = _newest([RevocationList.load(node.scenario.resolve(p), issuers) for p in rl_paths])
    except TokenError as exc:
        raise ConsentSetupError(f"{who}: {exc}") from None
    unlisted = sorted(set(issuers) - set(revocations))
    if unlisted:
        raise ConsentSetupError(f"{who}: no revocation list from issuer(s) {unlisted}")
    return issuers, revocations


def centre_policy(node: NodeRuntime, bank: str) -> ConsentPolicy:
    """What the centre requires of a token in this run (its trust anchors, its columns' categories)."""
    s = settings(node)
    issuers, revocations = trust_anchors(node, node.data().ids)
    cats = set(column_categories(node.data().feature_names, s.extra_categories).values())
    return ConsentPolicy(issuers, (bank, node.name), node.scenario.purpose, frozenset(cats), epoch(s.day), revocations)


def store_paths(s: ConsentSettings, centre: str, configured: object = None) -> tuple[Path, Path]:
    """The verified-token store of node ``centre`` and its HMAC key: ``configured`` (the node's
    ``consent-store``), else ``[consent] store``, else one per node beside the demo tokens (demo
    mode) or in ``runs/consent-store``. Kept across runs (not in a run's node dir): each token's
    signature is verified once."""
    default = Path(s.demo_dir if s.mode == "demo" else "runs/consent-store") / f"store-{centre}.bin"
    path = Path(str(configured or s.store or default))
    return path, path.with_name(path.name + ".key")


def _store_paths(node: NodeRuntime) -> tuple[Path, Path]:
    return store_paths(settings(node), node.name, node.context.node_config.get("consent-store"))


class _StoreJudge(Judge):
    """The centre's judge: its verified-token store (loaded per step, saved when it grew) and
    this run's policy; the counts go to the node for the ledger."""

    def __init__(self, node: NodeRuntime, bank: str):
        self.node, self.bank = node, bank
        self._loaded: tuple[VerifiedStore, Path, bytes] | None = None
        self._rows: tuple[np.ndarray, np.ndarray] | None = None

    def _store(self) -> tuple[VerifiedStore, Path, bytes]:
        if self._loaded is None:  # once per step (unknown() and decide() may share a step)
            store_path, key_path = _store_paths(self.node)
            key = store_key(key_path)
            self._loaded = (VerifiedStore.load(store_path, key), store_path, key)
        return self._loaded

    def unknown(self, keys: np.ndarray) -> np.ndarray:
        rows = self._store()[0].rows(keys)
        self._rows = (keys, rows)  # decide() in the same step reuses the lookup
        return np.flatnonzero((keys != b"") & (rows < 0)).astype(np.int64)

    def decide(self, keys: np.ndarray, positions: np.ndarray, tokens: bytes) -> np.ndarray:
        rows = get_array(self.node, COMMON_ROWS)
        all_ids = self.node.data().ids
        ids = [all_ids[i] for i in rows]
        store, store_path, key = self._store()
        known = self._rows[1] if self._rows is not None and same_keys(self._rows[0], keys) else None
        result = check_keys(ids, keys, positions, tokens, centre_policy(self.node, self.bank), store, known)
        if result.verified_now:
            store.save(store_path, key)
        self.node.put(_RESULT_KEY, json.dumps(result.ledger_payload()))
        return result.accepted


class ConsentPhase(Phase[TokenSender | TokenJudge]):
    """The centre's check of the intersection's tokens; both keep only accepted rows."""

    def _bank_tokens(self, node: NodeRuntime, peer: str) -> list[bytes]:
        rows = get_array(node, COMMON_ROWS)
        ids = node.data().ids
        tokens = bank_tokens(node, peer)
        return [tokens.get(ids[i], "").encode() for i in rows]

    def _judge(self, node: NodeRuntime, bank: str) -> Judge:
        return _StoreJudge(node, bank)

    def create(self, node: NodeRuntime, params: dict) -> TokenSender | TokenJudge:
        session = str(node.get("run_id"))
        peer = params["peer"]
        node.put("consent_peer", peer)
        if node.role == "bank":
            return TokenSender(node.name, peer, session, self._bank_tokens(node, peer))
        centre_policy(node, peer)  # fail before any message if the centre's material is missing
        return TokenJudge(node.name, peer, session, len(get_array(node, COMMON_ROWS)), self._judge(node, peer))

    def dump(self, party: TokenSender | TokenJudge) -> bytes:
        return party.to_state()

    def restore(self, node: NodeRuntime, state: bytes) -> TokenSender | TokenJudge:
        peer = str(node.get("consent_peer"))
        if node.role == "bank":
            return TokenSender.from_state(state, self._bank_tokens(node, peer))
        return TokenJudge.from_state(state, self._judge(node, peer))

    def finish(self, node: NodeRuntime, party: TokenSender | TokenJudge) -> dict:
        accepted = np.asarray(party.s.accepted, dtype=bool)
        rows = get_array(node, COMMON_ROWS)
        put_array(node, COMMON_ROWS, rows[accepted])
        summary: dict = {"checked": int(accepted.size), "accepted": int(accepted.sum())}
        if node.role != "bank":
            summary["check"] = json.loads(str(node.get(_RESULT_KEY)))
            summary["mode"] = settings(node).mode
        return summary


# -- inference: the bank re-checks tokens at query time -------------------------------------


def query_refusals(node: NodeRuntime, ids: list[str], centre: str) -> tuple[list[str | None], dict]:
    """Per applicant: None if its token authorises this query now, else the reason.

    The bank checks with the same trust anchors the centre uses (the issuers' keys and
    revocation lists) at query time, so a token revoked or expired since training stops
    the query before the applicant's id is sent.
    """
    s = settings(node)
    tokens = bank_tokens(node, centre, ids)
    issuers, rls = trust_anchors(node, ids)
    policy = ConsentPolicy(issuers, (node.name, centre), node.scenario.purpose, frozenset(), epoch(s.day), rls)
    store_path, key_path = _store_paths(node)
    key = store_key(key_path)
    store = VerifiedStore.load(store_path, key)
    result = check_tokens(ids, [tokens.get(u, "") for u in ids], policy, store)
    if result.verified_now:
        store.save(store_path, key)
    reasons: list[str | None] = [r or None for r in result.reasons.tolist()]
    registry = _node_setting(node, "consent", s.registry)
    if registry:  # the bank's own consent CSV, checked after the token
        extra = ConsentRegistry.from_csv(node.scenario.resolve(str(registry))).filter(
            ids, node.name, node.scenario.purpose, s.day
        )
        reasons = [r or extra.refused_ids.get(u) for r, u in zip(reasons, ids, strict=True)]
    return reasons, {"purpose": node.scenario.purpose, "mode": s.mode, **result.ledger_payload()}


# -- inference: the centre re-checks the tokens too, against its verified token store ---------


def centre_query_check(node: NodeRuntime, bank: str) -> Callable[[list[str], bytes], list[str]]:
    """The centre's consent re-check at query time (:data:`protocols.inference.centre.ConsentCheck`):
    the same policy and verified store as at training (:func:`centre_policy`), evaluated on the
    day of the query, so a token revoked, expired or out of scope since stops the answer at the
    centre whatever the bank decided. Reasons stay on the node; only counts leave it."""

    def check(usccs: list[str], bundle: bytes) -> list[str]:
        policy = centre_policy(node, bank)
        store_path, key_path = _store_paths(node)
        key = store_key(key_path)
        store = VerifiedStore.load(store_path, key)
        result = check_bundle(usccs, bundle, policy, store)
        if result.verified_now:
            store.save(store_path, key)
        return [str(r) for r in result.reasons.tolist()]

    return check


# -- demo: the enterprise-identity service delivers the tokens to the centre ahead of runs --------


@dataclass
class DemoDelivery:
    """What :func:`deliver_demo_tokens` did for one (bank, centre) pair."""

    bank: str
    centre: str
    store: str
    tokens: int
    added: int
    refused: dict[str, int]
    issue_s: float
    verify_s: float


def deliver_demo_tokens(scenario: Scenario) -> list[DemoDelivery]:
    """Issue (or reuse) each bank's demo tokens and verify them into each centre's store.

    In production the platform's enterprise-identity service hands the centre every token an
    enterprise signs, and the centre verifies it on arrival (``fedcredit consent import``); runs
    then find the intersection's tokens already verified and only re-check claims, revocation and
    dates. This does the same for a demo scenario, before any run: the tokens are exactly those
    the bank will present (same cache), and the store is the one the centre's node opens
    (:func:`store_paths`; a node-level ``consent-store`` override is not visible here). Forged
    tokens are refused here and again in the run. Nothing is delivered outside demo mode."""
    s = scenario.settings(ConsentSettings)
    if s.mode != "demo":
        raise ConsentSetupError(
            'demo token delivery needs [consent] mode = "demo" (real tokens: fedcredit consent import)'
        )
    out: list[DemoDelivery] = []
    for bank in scenario.parties_with_role("bank"):
        ids = load_party_data(
            scenario.resolve(bank.data), "bank", party=bank.name, part="all", seed=scenario.seed, scaled=False,
            opts=ReadOptions.from_mapping(bank.options, where=f"[parties.{bank.name}]"),
        ).ids  # fmt: skip
        for centre in scenario.parties_with_role("credit_centre"):
            t0 = time.perf_counter()
            material = demo_material(
                ids,
                audience=(bank.name, centre.name),  # the order the bank's node uses (bank_tokens)
                purpose=scenario.purpose,
                categories=CENTRE_CATEGORIES,
                day=s.day,
                seed=scenario.seed,
                shares=_demo_shares(s),
                cache_dir=Path(s.demo_dir),
            )
            t1 = time.perf_counter()
            store_path, key_path = store_paths(s, centre.name)
            key = store_key(key_path)
            store = VerifiedStore.load(store_path, key)
            added, refused = store.verify_and_add(material.tokens, {material.issuer.name: material.issuer})
            if added:
                store.save(store_path, key)
            out.append(
                DemoDelivery(
                    bank.name,
                    centre.name,
                    str(store_path),
                    len(material.tokens),
                    added,
                    dict(sorted(refused.items())),
                    round(t1 - t0, 3),
                    round(time.perf_counter() - t1, 3),
                )  # fmt: skip
            )
    return out

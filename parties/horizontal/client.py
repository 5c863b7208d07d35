"""Bank side of horizontal training: the Flower handlers a bank's node answers with.

``register(app, scenario_of, out_dir, tap=...)`` adds:

* ``@app.train()`` -- every training/statistics round (:mod:`parties.horizontal.bank_round`);
  messages carrying SecAgg+ stage configs first go through Flower's own SecAgg+ client mod.
* ``@app.query("horizontal_setup" | "horizontal_keygen" | "horizontal_install" | "horizontal_release")``
  -- introduction (sizes, schema hash, X25519 key), CKKS key generation and hand-over, and the
  final model release under CKKS.

A bank refuses a coordinator that runs a different scenario (config hash), and checks its update
(NaN/Inf, shape, range) before masking or encrypting it -- the coordinator cannot check then.
Each reply is also signed into the node's egress log when the run has a ledger.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from fedcredit.config import Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import keyshare, local
from fedcredit.horizontal.messages import (
    InstallReply,
    InstallRequest,
    KeygenReply,
    KeygenRequest,
    ReleaseReply,
    ReleaseRequest,
    SetupReply,
    SetupRequest,
)
from fedcredit.horizontal.settings import from_scenario
from fedcredit.horizontal.upload_auth import KeyHandoverRefused, ReleaseRefused, check_statement, statement_digest
from parties.common.node import NodeRuntime
from parties.common.roles import RoleError
from parties.horizontal import flower_legacy as legacy
from parties.horizontal import transport as ht
from parties.horizontal.audit import COORDINATOR, classify, digest
from parties.horizontal.bank_node import (
    BankEnv,
    ProtocolRefused,
    ScenarioProvider,
    Tap,
    bank_name,
    keep_secret,
    party_of,
    secret,
    state,
    state_bytes,
)
from parties.horizontal.bank_round import local_round
from parties.horizontal.policy import RoundPolicy
from protocols.common import wire

log = logging.getLogger(__name__)
ERROR_CODE = 1007


# -- egress log ------------------------------------------------------------------------------
def _egress(env: BankEnv, context: Context, scenario: Scenario, step: str, kind: str, reply: Message) -> None:
    """Sign what this node sends into its egress log (only in runs that keep a ledger)."""
    if reply.has_error():
        return
    if env.out_dir is None and "node-dir" not in context.node_config:
        return
    node = NodeRuntime(context, scenario, env.out_dir)
    run_id = node.get("run_id")
    if run_id is None:  # no hello from a ledger-keeping coordinator in this run
        return
    from fedcredit.ledger import EgressLog

    size, sha = digest(reply.content)
    elog = EgressLog.create(node.egress_path, node.signing_key(), run_id=str(run_id), node=node.name)
    try:
        elog.record_sent_digest(kind=kind, recipient=COORDINATOR, step=step, sha256=sha, size=size)
    finally:
        elog.close()


# -- training --------------------------------------------------------------------------------
def _train(msg: Message, ctx: Context, env: BankEnv) -> Message:
    step, _, reply_kind = classify(msg.metadata.message_type, msg.content)
    stage = legacy.secagg_stage(msg.metadata.message_type, msg.content)
    if stage == "setup":
        _check_secagg_policy(msg, ctx, env)
    elif stage == "unmask":
        _check_unmask_request(msg, ctx, env)
    if legacy.is_secagg_round(msg):
        reply = legacy.through_secagg(msg, ctx, lambda m, c: local_round(m, c, env))
    else:
        reply = local_round(msg, ctx, env)
    wanted = str(state(ctx).get("scenario_sha256", ""))
    if wanted:
        _egress(env, ctx, env.scenario(ctx, wanted), step, reply_kind, reply)
    return reply


def _check_secagg_policy(msg: Message, ctx: Context, env: BankEnv) -> None:
    """Before Flower's SecAgg+ mod sees the setup stage: this bank's own round minimums."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    wanted = str(state(ctx).get("scenario_sha256", ""))
    if not wanted:
        raise ProtocolRefused("SecAgg+ setup before the horizontal setup step: no scenario to check it against")
    scenario = env.scenario(ctx, wanted)
    policy = RoundPolicy.of(scenario, bank_name(ctx, scenario))
    policy.check_secagg_setup(dict(msg.content.config_records[RECORD_KEY_CONFIGS]))


def _check_unmask_request(msg: Message, ctx: Context, env: BankEnv) -> None:
    """Before Flower's SecAgg+ mod reveals shares: no node both active and dead (see policy)."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

    wanted = str(state(ctx).get("scenario_sha256", ""))
    if not wanted:
        raise ProtocolRefused("SecAgg+ unmask before the horizontal setup step: no scenario to check it against")
    scenario = env.scenario(ctx, wanted)
    cfg = msg.content.config_records[RECORD_KEY_CONFIGS]
    active, dead = cfg.get(Key.ACTIVE_NODE_ID_LIST, []), cfg.get(Key.DEAD_NODE_ID_LIST, [])
    if not isinstance(active, list) or not isinstance(dead, list):
        raise ProtocolRefused("SecAgg+ unmask: malformed active/dead node lists")
    RoundPolicy.of(scenario, bank_name(ctx, scenario)).check_secagg_unmask(
        [int(n) for n in active],
        [int(n) for n in dead],
    )


# -- queries ---------------------------------------------------------------------------------
def _node_peers(ctx: Context, out_dir: Path | None, party: str):  # noqa: ANN202 - peer public keys
    """The peer keys this bank's operator configured (never the coordinator's word)."""
    from parties.common import peers as peer_config

    try:
        return peer_config.load_peers(peer_config.peers_path(dict(ctx.node_config), out_dir))
    except peer_config.PeerKeysMissing as exc:
        raise KeyHandoverRefused(f"bank {party!r}: {exc}") from None


def _sign_statement(
    ctx: Context, scenario: Scenario, out_dir: Path | None, msg: Message, kind: str, data: bytes
) -> bytes:
    node = NodeRuntime(ctx, scenario, out_dir)
    digest = statement_digest(
        kind=kind, scenario_sha256=scenario.config_hash, run_id=str(msg.metadata.run_id), party=node.name, data=data
    )
    return node.signing_key().sign(digest)


def _setup(
    msg: Message, ctx: Context, scenario: Scenario, req: SetupRequest, *, out_dir: Path | None = None
) -> SetupReply:
    name, role = party_of(ctx, scenario)
    state(ctx)["scenario_sha256"] = scenario.config_hash
    if role != "bank":
        return SetupReply(
            party=name,
            role=role,
            scenario_sha256=scenario.config_hash,
            n_train=0,
            n_features=0,
            schema_sha256="",
            x25519_public=b"",
        )
    RoundPolicy.of(scenario, name).check_federation()  # >= 3 banks unless allow_two_banks (logged)
    d = local.bank_data(scenario, name)
    pub = sig = b""
    if req.want_x25519:
        st = state(ctx)
        if "x25519_private" not in st:
            st["x25519_private"] = keyshare.generate_private()
        pub = keyshare.public_of(state_bytes(ctx, "x25519_private"))
        sig = _sign_statement(ctx, scenario, out_dir, msg, "x25519", pub)  # binds the key to this bank
    return SetupReply(
        party=name,
        role=role,
        scenario_sha256=scenario.config_hash,
        n_train=len(d),
        n_features=d.n_features,
        schema_sha256=hdata.schema_digest(d.feature_names),
        x25519_public=pub,
        x25519_sig=sig,
    )


def _keygen(
    msg: Message, ctx: Context, scenario: Scenario, req: KeygenRequest, *, out_dir: Path | None = None
) -> KeygenReply:
    party = bank_name(ctx, scenario)
    settings = from_scenario(scenario)
    if settings.aggregation != "ckks":
        raise ProtocolRefused(f"{party}: CKKS key generation requested, scenario says {settings.aggregation!r}")
    # the secret key goes only to X25519 keys their banks signed: no substituted recipient key
    banks = {p.name for p in scenario.parties_with_role("bank")} - {party}
    if set(req.recipients) != banks or len(req.recipient_sigs) != len(req.recipients):
        raise KeyHandoverRefused(
            f"bank {party!r}: key hand-over to {sorted(req.recipients)}, this scenario's other banks are {sorted(banks)}"
        )
    peers = _node_peers(ctx, out_dir, party)
    for r, pk, sig in zip(req.recipients, req.recipient_publics, req.recipient_sigs, strict=True):
        check_statement(
            kind="x25519",
            scenario_sha256=scenario.config_hash,
            run_id=str(msg.metadata.run_id),
            party=r,
            data=bytes(pk),
            signature=bytes(sig),
            peers=peers,
            me=party,
        )
    key = hckks.SecretCkks.generate(settings.ckks)
    keep_secret(ctx, key)
    run_id = str(msg.metadata.run_id)
    envelopes = [
        wire.encode(
            keyshare.seal(key.secret_bytes, run_id=run_id, sender=party, recipient=r, recipient_public=bytes(pk))
        )
        for r, pk in zip(req.recipients, req.recipient_publics, strict=True)
    ]
    sigs = [
        _sign_statement(ctx, scenario, out_dir, msg, "ckks-key-envelope", r.encode() + b"\0" + e)
        for r, e in zip(req.recipients, envelopes, strict=True)
    ]
    return KeygenReply(
        party=party,
        params_context=key.params_bytes,
        params_fp=key.params_fp,
        key_fp=key.key_fp,
        envelopes=envelopes,
        envelope_sigs=sigs,
    )


def _install(
    msg: Message, ctx: Context, scenario: Scenario, req: InstallRequest, *, out_dir: Path | None = None
) -> InstallReply:
    party = bank_name(ctx, scenario)
    if "x25519_private" not in state(ctx):
        raise ProtocolRefused(f"{party}: no X25519 key on this node; the setup step did not ask for one")
    # only a key another bank of this scenario generated and vouched for (not the coordinator's)
    banks = {p.name for p in scenario.parties_with_role("bank")} - {party}
    if req.sender not in banks:
        raise KeyHandoverRefused(f"bank {party!r}: CKKS key envelope from {req.sender!r}, not another bank")
    check_statement(
        kind="ckks-key-envelope",
        scenario_sha256=scenario.config_hash,
        run_id=str(msg.metadata.run_id),
        party=req.sender,
        data=party.encode() + b"\0" + bytes(req.envelope),
        signature=bytes(req.envelope_sig),
        peers=_node_peers(ctx, out_dir, party),
        me=party,
    )
    env = wire.decode(req.envelope, keyshare.Envelope)
    secret_bytes = keyshare.open_envelope(
        env, private_raw=state_bytes(ctx, "x25519_private"), me=party, run_id=str(msg.metadata.run_id)
    )
    key = hckks.SecretCkks.load(secret_bytes, expect_key_fp=req.key_fp, expect_params_fp=req.params_fp)
    keep_secret(ctx, key)
    return InstallReply(party=party, key_fp=key.key_fp, params_fp=key.params_fp)


def _release(
    msg: Message, ctx: Context, scenario: Scenario, req: ReleaseRequest, *, out_dir: Path | None = None
) -> ReleaseReply:
    """Decrypt the model release -- but only sums this bank has checked and computed itself.

    The coordinator's ``chunks`` are never decrypted: the bank verifies the signed uploads it is
    sent (:mod:`fedcredit.horizontal.upload_auth`: node keys its operator configured, >= its
    policy's minimum of distinct banks, one round), sums them under its own context and decrypts
    that sum; the standardisation moments likewise. Otherwise it refuses, naming why."""
    from fedcredit.horizontal.upload_auth import check_uploads
    from parties.common import peers as peer_config

    party = bank_name(ctx, scenario)
    key = secret(ctx, party, req.key_fp)
    policy = RoundPolicy.of(scenario, party)
    try:
        peers = peer_config.load_peers(peer_config.peers_path(dict(ctx.node_config), out_dir))
    except peer_config.PeerKeysMissing as exc:
        raise ReleaseRefused(f"bank {party!r} refuses to decrypt: {exc}") from None
    banks = [p.name for p in scenario.parties_with_role("bank")]
    agg = hckks.CkksAggregator(key.params_bytes, expect_params_fp=key.params_fp)

    def own_sum(uploads: list, task: str, length: int) -> list[bytes]:
        checked = check_uploads(
            uploads,
            me=party,
            task=task,
            scenario_sha256=scenario.config_hash,
            run_id=str(msg.metadata.run_id),
            peers=peers,
            banks=banks,
            min_banks=policy.min_banks,
        )
        expected = hckks.n_chunks(length, key.slots)
        return agg.sum([agg.load(p, chunks, expected) for p, chunks in checked])

    weights = hckks.unweight(key.decrypt(own_sum(req.uploads, "train", req.length), req.length))
    moments = np.zeros(0)
    if req.stats_length:
        stats = own_sum(req.stats_uploads, "stats", req.stats_length)
        moments = hckks.unweight(key.decrypt(stats, req.stats_length))
    log.info("bank %s released the checked aggregate of %d signed uploads", party, len(req.uploads))
    return ReleaseReply(party=party, weights=weights, moments=moments)


QueryHandler = Callable[..., object]  # (message, context, scenario, request, *, out_dir) -> reply
QUERIES: dict[str, tuple[type, QueryHandler]] = {
    "horizontal_setup": (SetupRequest, _setup),
    "horizontal_keygen": (KeygenRequest, _keygen),
    "horizontal_install": (InstallRequest, _install),
    "horizontal_release": (ReleaseRequest, _release),
}


def _query(action: str, msg: Message, ctx: Context, env: BankEnv) -> Message:
    cls, handler = QUERIES[action]
    fn = partial(handler, out_dir=env.out_dir)  # handlers need the node's own configuration (keys)
    who = "?"
    try:
        req: Any = ht.read_payload(msg, cls)
        scenario = env.scenario(ctx, req.scenario_sha256)
        try:
            who = party_of(ctx, scenario)[0]
        except Exception:  # noqa: BLE001 - the error below names what it can
            who = f"node-{ctx.node_id}"
        reply = ht.reply_message(msg, fn(msg, ctx, scenario, req))
        step, _, kind = classify(msg.metadata.message_type, msg.content)
        _egress(env, ctx, scenario, step, kind, reply)
        return reply
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the coordinator, named
        if isinstance(exc, RoleError):  # a node that is no party of this scenario (e.g. a spare one)
            log.info("%s: not part of this scenario: %s", who, exc)
        else:
            log.error("%s failed at %s:\n%s", who, action, traceback.format_exc())
        return Message(Error(code=ERROR_CODE, reason=f"{who}: {type(exc).__name__}: {exc}"), reply_to=msg)


def register(
    app: ClientApp, scenario_of: ScenarioProvider, out_dir: Path | None = None, *, tap: Tap | None = None
) -> None:
    """Add the horizontal handlers to ``app``.

    ``scenario_of(context, config_hash)`` returns the node's scenario; a driver that runs several
    scenarios in one Flower run (sweeps, tests) picks it by the hash the coordinator sends.
    ``tap``, if given, is called with each plaintext update right before it is masked/encrypted
    (audits and the privacy tests compare it with what the coordinator received).
    """
    env = BankEnv(scenario_of, out_dir, tap)

    @app.train()
    def horizontal_train(msg: Message, ctx: Context) -> Message:
        return _train(msg, ctx, env)

    for action in QUERIES:

        def handler(msg: Message, ctx: Context, _action: str = action) -> Message:
            return _query(_action, msg, ctx, env)

        app.query(action)(handler)

"""Dishonest data holders: a bank or a centre that deviates inside the vertical protocols and inference.

Each case builds a dishonest party as a subclass of the honest role class that overrides only
the step it deviates in, runs it against the honest peer with the real protocol code
(``protocols/`` level, no Flower), and measures ``leaked`` by comparing what the attacker
extracted with the true protected values. What each case is expected to achieve is stated in
``docs/protocols/threat-model.md``; the functions take ``legacy=True`` where a control run
against the pre-#14 masking shows that the attack and its measurement do work when the defence
is absent (so a ``leaked: no`` cannot come from a broken attack).

Keys are 1024-bit test keys (``insecure_test_key``) to keep the suite fast; no step of any
attack or defence depends on the key size beyond the bit budgets printed in ``bound``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.data import uscc
from protocols.binning.bank import BinningBank
from protocols.binning.centre import BinningCentre
from protocols.binning.config import BinningConfig
from protocols.binning.messages import EncryptedBinSums, EncryptedLabels
from protocols.binning.messages import window_bits as bin_window_bits
from protocols.common.channel import new_private_key
from protocols.common.party import Envelope, ProtocolError, run_local
from protocols.hetero_lr import BankLR, CentreLR, HeteroLRConfig
from protocols.hetero_lr import kernels as lr_kernels
from protocols.hetero_lr.scales import STAT_SEC_BITS, loss_window_bits, shared_gradient_bits, window_bits
from protocols.inference import BankModelPart, CentreModelPart, InferenceBank, InferenceCentre
from protocols.inference.bodies import PartialsBody, RequestBody, pack_usccs
from protocols.inference.messages import PROTOCOL, InferenceKey, InferencePartials, InferenceRequest
from protocols.inference.quota import QueryBook, QueryPolicy
from protocols.paillier import EncryptedVector, PublicKey, generate_keypair
from protocols.secureboost import SecureBoostConfig, SecureBoostGuest, SecureBoostHost
from protocols.secureboost.kernels import GHLayout
from protocols.secureboost.messages import SbLevelReply
from simulations.attack_cases import AttackResult, attack

KEY_BITS = 1024
TAG_STRIDE = 32  # bits per smuggled centre feature value (|x_int| < 2^23 with frac_bits_x = 12)


# -- shared data and settings -----------------------------------------------------------------
def _lr_data(n: int, p_b: int = 4, p_c: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Xb = rng.normal(size=(n, p_b))
    Xc = rng.normal(size=(n, p_c))
    logit = Xb @ np.linspace(1.0, -0.5, p_b) + Xc @ np.linspace(0.8, -0.5, p_c) - 1.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return Xb, y, Xc


def _lr_cfg(**kw: object) -> HeteroLRConfig:
    base: dict = dict(epochs=1, batch_size=64, key_bits=KEY_BITS, insecure_test_key=True, seed=3)
    base.update(kw)
    return HeteroLRConfig(**base)


def _caught(exc: ProtocolError) -> tuple[str, str]:
    """(who, where) from an honest party's error message ``"<role> '<name>' at step ...: what"``."""
    text = str(exc)
    head, _, _ = text.partition(":")
    who = head.split(" at ")[0]
    return who, head[len(who) :].strip().removeprefix("at ") or text


def _result(name: str, attacker: str, caught: ProtocolError | None, **fields: Any) -> AttackResult:
    """An :class:`AttackResult` whose refused/by/step come from the honest party's error, if any."""
    who, where = _caught(caught) if caught else ("", "")
    return AttackResult(
        name=name, attacker=attacker, refused_or_detected=caught is not None, by=who, step=where, **fields
    )  # type: ignore[arg-type]


# -- dishonest bank, hetero-LR: high-bit residuals ----------------------------------------------
class LegacyMaskCentreLR(CentreLR):
    """CONTROL ONLY: the centre's gradient masking before #14 (``value_bound + 80``-bit masks, full decryption back).

    Used to show that the high-bit attack recovers centre features when the mask is bounded,
    i.e. that the attack and the ``leaked`` measurement are real.
    """

    def _mask_gradient(self, enc: EncryptedVector, n_rows: int) -> EncryptedVector:
        masks = [secrets.randbits(self._gradient_value_bits(n_rows) + STAT_SEC_BITS) for _ in range(len(enc))]
        self.s.masks = masks
        return enc + lr_kernels.encrypt_fresh(self._peer_key, masks)

    def _unmask(self, values: list, n_rows: int) -> np.ndarray:
        bound = 1 << self._gradient_value_bits(n_rows)
        grads = [int(v) - m for v, m in zip(values, self.s.masks)]
        if any(abs(g) >= bound for g in grads):
            raise self._fail("gradient decrypted out of range (legacy check)")
        self.s.masks = []
        return np.array(grads, dtype=np.float64) / 2.0 ** (self.config.frac_bits_x + self.config.frac_bits_d) / n_rows


class HighBitBankLR(BankLR):
    """Adds ``2^(shift + t * 32)`` to the residual of the t-th chosen row of the first batch.

    The centre's encrypted gradient then carries ``sum_t 2^(shift + 32 t) X_c[row_t]``; the bank
    decrypts it (it holds the key), reads the smuggled feature values, subtracts them and
    returns what an honest bank would, so that the centre does not notice.
    """

    shift = 0
    n_tags = 6
    legacy = False  # the peer expects the full decryption back (pre-#14), not the window

    def _encrypt_residuals(self, d: np.ndarray, s: np.ndarray | None) -> tuple[bytes, bytes]:
        if self.s.round != 0 or s is not None:
            return super()._encrypt_residuals(d, s)
        inflated = d.astype(object)
        for t in range(self.n_tags):
            inflated[t] += 1 << (self.shift + TAG_STRIDE * t)
        self.tag_rows = self._batch(0)[: self.n_tags]
        return self._own_key.encrypt(inflated).to_bytes(), b""

    def _decrypt_window(self, masked: EncryptedVector, n_rows: int) -> list[int]:
        if self.s.round != 0:
            if self.legacy:
                return [int(v) for v in self._own_key.decrypt(masked)]
            return super()._decrypt_window(masked, n_rows)
        sk = self._own_key
        n = int(sk.public_key.n)
        full = [int(v) for v in sk.decrypt(masked)]  # the attacker reads the whole (signed) decryption
        est = np.zeros((self.n_tags, len(full)), dtype=np.int64)
        clean = []
        for j, v in enumerate(full):
            rest = v >> self.shift
            smuggled = 0
            for t in range(self.n_tags):
                word = rest & ((1 << TAG_STRIDE) - 1)
                word = word - (1 << TAG_STRIDE) if word >> (TAG_STRIDE - 1) else word
                est[t, j] = word
                smuggled += word << (self.shift + TAG_STRIDE * t)
                rest = (rest - word) >> TAG_STRIDE
            clean.append(v - smuggled)
        self.extracted = est
        if self.legacy:
            return clean
        bits = window_bits(n_rows, self.config)
        return [(c % n) & ((1 << bits) - 1) for c in clean]


@dataclass
class _HighBitOutcome:
    caught: ProtocolError | None
    recovered_rows: int
    tags: int
    centre_weights: np.ndarray | None


def _run_high_bit(shift_of: str, *, legacy: bool = False) -> _HighBitOutcome:
    Xb, y, Xc = _lr_data(320)
    cfg = _lr_cfg()
    centre_cls = LegacyMaskCentreLR if legacy else CentreLR
    centre = centre_cls("centre", "bank", Xc, cfg)
    rows0 = int(len(np.asarray(centre._batch(0))))
    gbs = shared_gradient_bits(rows0, cfg)
    own = centre._gradient_value_bits(rows0)
    shifts = {
        "in-window": gbs + 1,  # the lowest position an honest gradient never reaches
        "above-mask": own + STAT_SEC_BITS + 1,  # the attack as first found: just above the old statistical mask
    }

    class Attacker(HighBitBankLR):
        pass

    Attacker.shift = shifts[shift_of]
    Attacker.legacy = legacy
    bank = Attacker("bank", "centre", Xb, y, cfg)
    parties: dict = {"bank": bank, "centre": centre}
    caught = None
    try:
        run_local(parties)
    except ProtocolError as exc:
        caught = exc
    est = getattr(bank, "extracted", None)
    truth = centre.X_int[bank.tag_rows]
    recovered = 0 if est is None else int(np.all(est == truth, axis=1).sum())
    return _HighBitOutcome(caught, recovered, Attacker.n_tags, None if caught else centre.weights)


def _honest_centre_weights() -> np.ndarray:
    Xb, y, Xc = _lr_data(320)
    cfg = _lr_cfg()
    parties: dict = {"bank": BankLR("bank", "centre", Xb, y, cfg), "centre": CentreLR("centre", "bank", Xc, cfg)}
    run_local(parties)
    return np.asarray(parties["centre"].weights)


@attack("bank/high-bit-residuals/hetero-lr")
def bank_high_bit_residuals(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """Inflated residuals whose smuggled features land inside the returned window: caught by the centre."""
    out = _run_high_bit("in-window", legacy=legacy)
    who, where = _caught(out.caught) if out.caught else ("", "")
    return AttackResult(
        name="bank/high-bit-residuals/hetero-lr",
        attacker="bank",
        refused_or_detected=out.caught is not None,
        by=who,
        step=where,
        leaked=out.recovered_rows > 0,
        detail=(
            f"bank added 2^k tags to {out.tags} residuals of batch 0 and decrypted the centre's gradient: "
            f"{out.recovered_rows}/{out.tags} centre rows recovered; "
            + (f"centre stopped: {out.caught}" if out.caught else "centre did not notice")
        ),
    )


@attack("bank/high-bit-residuals-above-window/hetero-lr")
def bank_high_bit_above_window(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """The attack as first found (tags just above the old 80-bit mask): learns nothing and changes nothing.

    Tags above the returned window never reach the centre, so the centre cannot see them;
    the case checks what matters instead: nothing recovered, and the centre's model is
    bit-identical to an honest run's (the deviation had no effect).
    """
    out = _run_high_bit("above-mask", legacy=legacy)
    same = out.centre_weights is not None and np.array_equal(out.centre_weights, _honest_centre_weights())
    who, where = _caught(out.caught) if out.caught else ("", "")
    return AttackResult(
        name="bank/high-bit-residuals-above-window/hetero-lr",
        attacker="bank",
        refused_or_detected=out.caught is not None,
        by=who,
        step=where,
        leaked=out.recovered_rows > 0,
        detail=(
            f"tags above the window: {out.recovered_rows}/{out.tags} centre rows recovered; centre model "
            f"{'identical to the honest run' if same else 'DIFFERENT from the honest run'}"
        ),
        bound="0 centre values and no effect on the centre's update (documented); measured "
        f"{out.recovered_rows} values, model identical: {same}",
        within_bound=out.recovered_rows == 0 and same,
    )


# -- dishonest centre, hetero-LR: scaled residuals -> labels -----------------------------------
class LegacyFullDecryptBankLR(BankLR):
    """CONTROL ONLY: the bank before #14, returning the whole decryption of the centre's masked gradient."""

    def _decrypt_window(self, masked: EncryptedVector, n_rows: int) -> list[int]:
        return [int(v) for v in self._own_key.decrypt(masked)]


class ScaledResidualCentreLR(CentreLR):
    """Evaluates ``sum_t 2^t d_t`` over groups of rows instead of ``X_c^T d`` in the first batch.

    At round 0 the bank's weights are zero, so its residual is exactly ``-y 2^(fd-1)``: each
    decrypted value the centre unmasks carries one label per bit it can read. The centre then
    pretends its gradient was zero and trains on; the bank cannot tell (the value it decrypts
    is uniform).
    """

    legacy = False

    def _gradient_and_loss(
        self, enc_d: EncryptedVector, enc_s: EncryptedVector | None, rows: np.ndarray
    ) -> tuple[EncryptedVector, EncryptedVector]:
        grad, loss = super()._gradient_and_loss(enc_d, enc_s, rows)
        if self.s.round != 0:
            return grad, loss
        p, fd = self.n_weights, self.config.frac_bits_d
        per = len(rows) // p if self.legacy else min(len(rows) // p, window_bits(len(rows), self.config) - fd)
        self.groups = [np.arange(j * per, (j + 1) * per) for j in range(p)]
        parts = [enc_d[g].mul_plain(np.array([1 << t for t in range(per)], dtype=object)).sum() for g in self.groups]
        out = parts[0]
        for part in parts[1:]:
            out = out.concat(part)
        self.probe_rows = rows
        return out, loss

    def _unmask(self, values: list, n_rows: int) -> np.ndarray:
        n = int(self._peer_key.n)
        if self.s.round != 0:
            if self.legacy:  # the control's bank returns whole decryptions: keep the window the code expects
                values = [(int(v) % n) & ((1 << window_bits(n_rows, self.config)) - 1) for v in values]
            return super()._unmask(values, n_rows)
        fd = self.config.frac_bits_d
        # what the centre can read: the whole value mod n (legacy) or its returned window
        modulus = n if self.legacy else 1 << window_bits(n_rows, self.config)
        labels: dict[int, int] = {}
        for j, (v, m) in enumerate(zip(values, self.s.masks)):
            per = len(self.groups[j])
            # value = -2^(fd-1) sum_t 2^t y_t = 2^fd sum_t 2^t b_t - 2^(fd-1) (2^per - 1), b_t = (y_t == 0)
            s_bits = ((int(v) - m + (((1 << per) - 1) << (fd - 1))) % modulus) >> fd
            readable = min(per, modulus.bit_length() - 1 - fd)
            for t in range(readable):
                labels[int(self.probe_rows[self.groups[j][t]])] = 0 if (s_bits >> t) & 1 else 1
        self.recovered_labels = labels
        self.s.masks = []
        return np.zeros(self.n_weights)


def _run_scaled(
    *, legacy: bool, n: int = 1024, batch_size: int = 512, p_c: int = 3, key_bits: int = KEY_BITS
) -> tuple[int, int, int, int, ProtocolError | None]:
    """(correct labels, labels claimed, batch rows, documented bound in bits, honest party's error)."""
    Xb, y, Xc = _lr_data(n, p_c=p_c)
    cfg = _lr_cfg(batch_size=batch_size, key_bits=key_bits, insecure_test_key=key_bits < 2048)

    class Centre(ScaledResidualCentreLR):
        pass

    Centre.legacy = legacy
    bank_cls = LegacyFullDecryptBankLR if legacy else BankLR
    centre = Centre("centre", "bank", Xc, cfg)
    parties: dict = {"bank": bank_cls("bank", "centre", Xb, y, cfg), "centre": centre}
    caught = None
    try:
        run_local(parties)
    except ProtocolError as exc:
        caught = exc
    got = getattr(centre, "recovered_labels", {})
    correct = sum(int(y[r]) == lab for r, lab in got.items())
    rows0 = len(np.asarray(centre._batch(0)))
    bound = centre.n_weights * window_bits(rows0, cfg)
    return correct, len(got), rows0, bound, caught


@attack("centre/scaled-residuals/hetero-lr")
def centre_scaled_residuals(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """A bounded channel: the centre reads at most ``p_c * window_bits`` bits of labels per batch."""
    correct, claimed, rows0, bound, caught = _run_scaled(legacy=legacy)
    return _result(
        "centre/scaled-residuals/hetero-lr",
        "centre",
        caught,
        leaked=correct > 0,
        detail=(
            f"centre packed the first batch's residuals into its gradient entries: "
            f"{correct} of {rows0} batch labels recovered ({claimed} claimed)"
        ),
        bound=f"<= p_c * window_bits = {bound} label bits per batch (documented); measured {correct}",
        within_bound=correct <= bound,
    )


# -- dishonest bank, inference: repeat and sweeping queries -------------------------------------
class RepeatQueryBank(InferenceBank):
    """Sends its own list of USCCs (duplicates and non-applicants included) and keeps the raw answers."""

    queries: list[str] = []

    def _on_key(self, msg: InferenceKey) -> list[Envelope]:
        mine = new_private_key()
        link = self._channel(mine, msg.public_key)
        body = RequestBody(
            self.s.purpose, "hetero_lr", len(self.queries), pack_usccs(self.queries), np.zeros(0, np.uint64)
        )
        self.s.secret, self.s.peer_public = mine, msg.public_key
        self.s.phase = "requested"
        sealed = self._seal(link, "InferenceRequest", body)
        return [
            self.send(self.s.peer, InferenceRequest(PROTOCOL, self.s.session, self.s.batch, link.public_key, sealed))
        ]

    def _on_partials(self, msg: InferencePartials) -> list[Envelope]:
        body = self._open(
            self._channel(self.s.secret, self.s.peer_public), msg.sealed, "InferencePartials", PartialsBody
        )
        refused = np.zeros(body.count, bool) if body.refused is None else np.asarray(body.refused, bool)
        self.answers = (np.asarray(body.found, bool), np.asarray(body.scores, float), refused)
        self.s.phase = "done"
        return []


def _inference_campaign(book: QueryBook | None) -> dict:
    """60 days, one query run every 6 days: the target firm 5 times per run, its record updated daily;
    in the first run also a sweep of 80 other firms. Returns what the bank obtained."""
    rng = np.random.default_rng(5)
    ids = uscc.generate(100, rng)
    target, others = ids[0], ids[1:81]
    features = rng.normal(size=(len(ids), 4))
    wc = np.array([0.7, -0.4, 0.2, 0.1])
    start = dt.date(2026, 1, 1)
    target_answers: list[tuple[str, float]] = []
    sweep_answered = sweep_refused = 0
    centre_refusals = 0
    for run in range(10):
        day = (start + dt.timedelta(days=6 * run)).isoformat()
        features[0] += rng.normal(scale=0.05, size=4)  # the target's public record changes between runs
        queries = [target] * 5 + (others if run == 0 else [])

        class Bank(RepeatQueryBank):
            pass

        Bank.queries = queries
        session = f"run-{run}"
        bank = Bank(
            "b",
            "c",
            session=session,
            batch=0,
            purpose="loan_decision",
            model=BankModelPart.from_dict({"type": "hetero_lr", "weights": [0.0, 0.0]}),
            ids=[target],
            X=np.zeros((1, 1)),
            refusals=[None],
        )
        centre = InferenceCentre(
            "c",
            "b",
            session=session,
            batch=0,
            model=CentreModelPart.from_dict({"type": "hetero_lr", "weights": wc.tolist()}),
            ids=ids,
            features=features.copy(),
            book=book,
            model_digest="model-1",
            day=day,
        )
        run_local({"b": bank, "c": centre})
        if book is not None:
            book.add(centre.book_entries())
            centre_refusals += centre.counts()["refused_quota"]
        found, scores, refused = bank.answers
        target_answers += [(day, float(scores[i])) for i in range(5) if found[i]]
        if run == 0:
            sweep_answered = int(found[5:].sum())
            sweep_refused = int(refused[5:].sum())
    return {
        "target_answers": target_answers,
        "distinct": len({v for _, v in target_answers}),
        "sweep_answered": sweep_answered,
        "sweep_refused": sweep_refused,
        "centre_refusals": centre_refusals,
    }


INFERENCE_POLICY = QueryPolicy(per_firm_per_period=2, period_days=30, per_run=50, repeat_window_days=14)


@attack("bank/repeat-queries/inference")
def bank_repeat_queries(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """Bounded: fresh answers per firm <= per_firm_per_period per period, same answer within the window."""
    p = INFERENCE_POLICY
    out = _inference_campaign(None if legacy else QueryBook(p))
    # 60 days = 2 periods of 30 days: at most 2 fresh answers in each, the rest repeats or refusals
    bound_distinct = p.per_firm_per_period * 2
    # every answer inside a repeat window equals the first fresh answer of that window
    firsts: list[tuple[dt.date, float]] = []
    same_in_window = True
    for day, v in out["target_answers"]:
        d = dt.date.fromisoformat(day)
        recent = [fv for fd, fv in firsts if (d - fd).days <= p.repeat_window_days]
        if recent and v not in recent:
            same_in_window = False
        if v not in [fv for _, fv in firsts]:
            firsts.append((d, v))
    ok = out["distinct"] <= bound_distinct and same_in_window and out["sweep_answered"] <= p.per_run - 1
    return AttackResult(
        name="bank/repeat-queries/inference",
        attacker="bank",
        refused_or_detected=out["centre_refusals"] > 0,
        by="credit centre 'c'" if out["centre_refusals"] else "",
        step="inference request (quota)" if out["centre_refusals"] else "",
        leaked=out["distinct"] > 0,
        detail=(
            f"bank asked one firm 5x per run in 10 runs over 60 days (record changing) and swept 80 firms: "
            f"{out['distinct']} distinct answers for the firm out of {len(out['target_answers'])}, sweep "
            f"{out['sweep_answered']} answered / {out['sweep_refused']} refused; centre logged "
            f"{out['centre_refusals']} refusals"
        ),
        bound=(
            f"<= {bound_distinct} distinct answers per firm in 60 days, identical within {p.repeat_window_days} days, "
            f"<= {p.per_run} fresh answers per run (documented); measured {out['distinct']} distinct, "
            f"same within window: {same_in_window}, sweep answered {out['sweep_answered']}"
        ),
        within_bound=ok,
    )


# -- dishonest guest, SecureBoost: power-of-two gradients -> host bin membership ----------------
@dataclass(frozen=True)
class TaggingLayout(GHLayout):
    """Encodes ``h = 2^t`` for the t-th tagged row and ``g = h = 0`` elsewhere (the guest's deviation)."""

    tag_rows: tuple = ()

    def encode(self, g: np.ndarray, h: np.ndarray) -> list[int]:
        out = [0] * len(g)
        for t, row in enumerate(self.tag_rows):
            out[row] = 1 << t
        return out


class PowerOfTwoGuest(SecureBoostGuest):
    """Tags the first ``h_bits - 1`` rows with distinct powers of two in tree 0 and keeps the root's
    decrypted candidate sums: each one is the set of tagged rows left of a host threshold."""

    def _layout(self) -> GHLayout:
        base = super()._layout()
        n_tags = base.h_bits - 1  # the tags' sum stays within the honest H bound: the decoder accepts it
        return TaggingLayout(base.precision_bits, base.max_rows, base.key_bits, tuple(range(n_tags)))

    def _decrypt_candidates(self, msg: SbLevelReply, nodes: list[int]) -> dict:
        out = super()._decrypt_candidates(msg, nodes)
        if msg.tree == 0 and msg.level == 0:
            ids, _, HL = out[0][:3]  # (ids, G_L, H_L, group, level count)
            self.membership = {int(i): int(v) for i, v in zip(ids, HL)}
            raise _AttackDone  # the guest has what it came for; it walks away (the host sees a dropped run)
        return out


class _AttackDone(Exception):
    """Raised by an attacker that stops once it has extracted what it wanted."""


class RecordingHost(SecureBoostHost):
    """The honest host, instrumented for the measurement only: what each root candidate id meant."""

    def _reply(self, level: int, *args: object, **kw: object) -> Envelope:
        env = super()._reply(level, *args, **kw)  # type: ignore[arg-type]
        if self.s.tree == 0 and level == 0:
            self.meaning = {
                int(i): (int(f), int(b)) for i, f, b in zip(self.s.cand_id, self.s.cand_feature, self.s.cand_bin)
            }
        return env


@attack("bank/power-of-two-gradients/secureboost")
def bank_power_of_two_gradients(workdir: Path) -> AttackResult:
    """Bounded (as in FATE): per tree, the guest reads the host bins of at most ``slot_bits - 1`` rows."""
    rng = np.random.default_rng(1)
    n = 400
    Xg = rng.normal(size=(n, 2))
    Xh = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(Xg[:, 0] + Xh[:, 1])))).astype(int)
    cfg = SecureBoostConfig(n_trees=1, max_depth=2, max_bins=8, key_bits=KEY_BITS, insecure_test_key=True, n_workers=1)
    guest = PowerOfTwoGuest("bank", "centre", Xg, y, cfg)
    host = RecordingHost("centre", "bank", Xh, cfg)
    caught = None
    try:
        run_local({"bank": guest, "centre": host})
    except ProtocolError as exc:  # only the honest host can raise one here
        caught = exc
    except _AttackDone:
        pass
    layout = GHLayout(cfg.precision_bits, n, KEY_BITS)
    tags = layout.h_bits - 1
    got = getattr(guest, "membership", {})
    meaning = getattr(host, "meaning", {})
    correct_bits = 0
    rows_ok = np.ones(tags, dtype=bool)
    for cid, mask in got.items():
        f, b = meaning[cid]
        truth = sum(1 << t for t in range(tags) if host.Xb[t, f] <= b)
        same = ~(np.array([(mask >> t) & 1 for t in range(tags)]) ^ np.array([(truth >> t) & 1 for t in range(tags)]))
        rows_ok &= same.astype(bool)
        correct_bits += int(same.astype(bool).sum())
    rows = int(rows_ok.sum()) if got else 0
    bound = layout.slot_bits - 1
    return _result(
        "bank/power-of-two-gradients/secureboost",
        "bank",
        caught,
        leaked=rows > 0,
        detail=(
            f"guest encrypted distinct powers of two for {tags} rows in tree 0: {len(got)} root candidate sums "
            f"gave {correct_bits} correct row-vs-threshold bits; {rows} rows with every host threshold placed"
        ),
        bound=f"<= slot_bits - 1 = {bound} rows per tree (documented; FATE/SecretFlow same); measured {rows}",
        within_bound=rows <= bound,
    )


# -- dishonest bank, hetero-LR: inflated validation residuals -> centre partial scores ----------
VAL_TAG_STRIDE = 26  # bits per smuggled partial score (|u_c| < 2^12 at 2^fx, fx = 12, signed)
VAL_TAG_BASE = 50  # above any honest validation cross term of the case (|T_val| < 2^49)


class ValidationTagBankLR(BankLR):
    """Adds ``2^(50 + 26 t)`` to the validation residual of row t (t = 0..35): the validation loss
    aggregate ``T_val = sum u_c d + ...`` then carries those rows' centre partial scores; the
    validation residuals feed no gradient, so no gradient range check sees them."""

    legacy = False

    def _encrypt_residuals(self, d: np.ndarray, s: np.ndarray | None) -> tuple[bytes, bytes]:
        if s is not None or len(d) != self.n_val or not self._is_record_round(self.s.round):
            return super()._encrypt_residuals(d, s)
        self.n_tags = (self._own_key.public_key.bits - 2 - VAL_TAG_BASE) // VAL_TAG_STRIDE - 1
        inflated = d.astype(object)
        for t in range(self.n_tags):
            inflated[t] += 1 << (VAL_TAG_BASE + VAL_TAG_STRIDE * t)
        return self._own_key.encrypt(inflated).to_bytes(), b""

    def _decrypt_aggregate(self, vec: EncryptedVector, n_rows: int) -> float:
        if n_rows == self.n_val and hasattr(self, "n_tags"):
            (v,) = self._own_key.decrypt(vec)  # the attacker reads the whole decryption
            # high-masked aggregates sit in [0, n) (no wrap); before #14 the plain signed value
            v = int(v) if self.legacy else int(v) % int(self._own_key.public_key.n)
            rest = (v + (1 << (VAL_TAG_BASE - 1))) >> VAL_TAG_BASE
            est = []
            for _ in range(self.n_tags):
                word = rest & ((1 << VAL_TAG_STRIDE) - 1)
                word = word - (1 << VAL_TAG_STRIDE) if word >> (VAL_TAG_STRIDE - 1) else word
                est.append(word)
                rest = (rest - word) >> VAL_TAG_STRIDE
            self.extracted = est
        return super()._decrypt_aggregate(vec, n_rows)


class RecordingCentreLR(CentreLR):
    """The honest centre, instrumented for the measurement only: its validation partial scores."""

    def _cross_loss(self, enc_sd: EncryptedVector, enc_s: EncryptedVector | None, u: np.ndarray) -> EncryptedVector:
        if len(u) == self.n_val:
            self.val_scores = self.codecs.centre_scores.encode(u)
        return super()._cross_loss(enc_sd, enc_s, u)


@attack("bank/inflated-validation-residuals/hetero-lr")
def bank_inflated_validation_residuals(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """Bounded: the bank reads ``T_val mod 2^L`` only, at most ``L`` bits of partial scores per epoch."""
    Xb, y, Xc = _lr_data(384)
    cfg = _lr_cfg()
    tr, va = slice(0, 320), slice(320, 384)
    bank = ValidationTagBankLR("bank", "centre", Xb[tr], y[tr], cfg, X_val=Xb[va], y_val=y[va])
    bank.legacy = legacy
    centre = RecordingCentreLR("centre", "bank", Xc[tr], cfg, X_val=Xc[va])
    saved = lr_kernels.high_mask
    if legacy:  # CONTROL: the loss aggregate leaves re-randomised only, as before #14
        lr_kernels.high_mask = lambda vec, low_bits: lr_kernels.fresh_copy(vec)  # type: ignore[assignment]
    caught = None
    try:
        run_local({"bank": bank, "centre": centre})
    except ProtocolError as exc:
        caught = exc
    finally:
        lr_kernels.high_mask = saved
    est = getattr(bank, "extracted", [])
    truth = getattr(centre, "val_scores", np.zeros(0))
    recovered = sum(int(e) == int(t) for e, t in zip(est, truth[: len(est)]))
    L = loss_window_bits(64, cfg)
    bound_scores = (L - VAL_TAG_BASE) // VAL_TAG_STRIDE + 1  # a tag straddling the window edge may survive
    return _result(
        "bank/inflated-validation-residuals/hetero-lr",
        "bank",
        caught,
        leaked=recovered > 0,
        detail=(
            f"bank tagged {len(est)} validation residuals with 2^(50+26t) and read the validation-loss "
            f"aggregate: {recovered} centre partial scores recovered exactly"
        ),
        bound=f"<= L = {L} bits per validation aggregate, i.e. <= {bound_scores} partial scores (documented); "
        f"measured {recovered}",
        within_bound=recovered <= bound_scores,
    )


# -- dishonest bank, federated binning: power-of-two "labels" -> the centre's row-to-bin map -------
BIN_TAGS = 200  # rows the bank tags with 2^t instead of its label (well past any honest window)


class _BinningDone(Exception):
    """Raised by the attacker once it has read the decrypted bin sums (it never finishes the run)."""


class PowerOfTwoLabelsBank(BinningBank):
    """Encrypts ``2^t`` for row ``t < BIN_TAGS`` and 0 elsewhere instead of its 0/1 labels, then
    reads every decrypted bin sum: bit ``t`` set in bin ``b`` of column ``j`` says row ``t`` lies in
    the centre's fine bin ``b`` of column ``j``."""

    def start(self) -> list[Envelope]:
        assert self._sk is not None
        tags = np.array([1 << t if t < BIN_TAGS else 0 for t in range(len(self.y))], dtype=object)
        enc = self._sk.encrypt(tags)
        msg = EncryptedLabels(public_key=self._sk.public_key.to_bytes(), n_rows=len(self.y), labels=enc.to_bytes())
        return [self.send(self.peer, msg)]

    def decrypt_counts(self, msg: EncryptedBinSums) -> list:
        assert self._sk is not None
        raw = [
            int(d) for d in self._sk.decrypt_raw(EncryptedVector.from_bytes(self._sk.public_key, msg.sums).ciphertexts)
        ]
        # everything the bank can read: the decryption minus the low mask bits it is given (with a
        # windowed centre the bits above each window are covered by the rest of the mask)
        n = int(self._sk.public_key.n)
        self.readable = [(d - int(m)) % n for d, m in zip(raw, msg.mask_low.tolist())]
        self.n_bins = msg.n_bins.copy()
        raise _BinningDone


class LegacyUnmaskedCentre(BinningCentre):
    """CONTROL ONLY: the centre before the window -- every bin sum decrypts in full at the bank."""

    def _bin_sums(self, msg: EncryptedLabels) -> EncryptedBinSums:
        out = super()._bin_sums(msg)
        pk = PublicKey.from_bytes(msg.public_key, insecure_test_key=True)
        enc = EncryptedVector.from_bytes(pk, msg.labels)
        parts = []
        for j, cb in enumerate(self.bins):
            for b in range(cb.n_bins):
                rows = np.flatnonzero(self.codes[:, j] == b)
                parts.append(enc[rows].sum() if rows.size else pk.encrypt_zero(1))
        sums = parts[0]
        for p in parts[1:]:
            sums = sums.concat(p)
        out.sums, out.mask_low = sums.to_bytes(), np.zeros_like(out.mask_low)
        return out


def _run_binning_tags(legacy: bool) -> tuple[int, int, int, int]:
    """(rows placed in every centre column, rows tagged, bound in rows, aligned rows)."""
    rng = np.random.default_rng(5)
    n = 2000
    Xc = rng.normal(size=(n, 3))
    y = (rng.random(n) < 0.2).astype(np.int8)
    cfg = BinningConfig(key_bits=KEY_BITS, insecure_test_key=True, min_bin_rows=50)
    _, sk = generate_keypair(KEY_BITS, insecure_test_key=True)

    bank = PowerOfTwoLabelsBank("bank", "centre", np.zeros((n, 0)), [], y, cfg, private_key=sk)
    centre = (LegacyUnmaskedCentre if legacy else BinningCentre)("centre", "bank", Xc, ["c0", "c1", "c2"], cfg)
    try:
        run_local({"bank": bank, "centre": centre})
    except _BinningDone:
        pass
    placed = np.ones(BIN_TAGS, dtype=bool)
    offs = np.concatenate([[0], np.cumsum(bank.n_bins)])
    for j in range(len(bank.n_bins)):
        vals = bank.readable[offs[j] : offs[j + 1]]
        truth = centre.codes[:BIN_TAGS, j]
        for t in range(BIN_TAGS):
            hits = [b for b, v in enumerate(vals) if (v >> t) & 1]
            placed[t] &= hits == [int(truth[t])]
    bound = int(bin_window_bits(np.array([n]))[0])  # no bin holds more than n rows
    return int(placed.sum()), BIN_TAGS, bound, n


@attack("bank/power-of-two-labels/binning")
def bank_power_of_two_labels_binning(workdir: Path, *, legacy: bool = False) -> AttackResult:
    """Bounded: the bank reads only the low ``bit_length(count)`` bits of each bin sum, so at most
    ``bit_length(rows)`` tagged rows are placed in the centre's bins per run (control: all 200)."""
    placed, tagged, bound, n = _run_binning_tags(legacy)
    return _result(
        "bank/power-of-two-labels/binning",
        "bank",
        None,
        leaked=placed > 0,
        detail=(
            f"bank encrypted 2^t as the 'label' of {tagged} of {n} rows: {placed} rows placed in their fine bin "
            "of every centre column"
        ),
        bound=f"<= bit_length(rows) = {bound} rows per run (documented window); measured {placed}",
        within_bound=placed <= bound,
    )

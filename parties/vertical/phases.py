"""Node-side adapters: build, persist and finish each protocol phase from a node's own data.

An adapter knows how to turn a node's data plus what earlier phases left in ``context.state``
(intersection rows, split masks, fitted preprocessing, model) into the protocol's party object,
and how to persist and finish it. The protocol logic itself lives in :mod:`protocols`.

State keys a node keeps (node-local, never sent): ``common_rows`` (own row index of each aligned
position), ``test_mask`` / ``val_mask`` (over aligned positions), ``preprocessor`` (JSON),
``model`` (JSON of this party's model part).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fedcredit.features import LocalPreprocessor
from parties.common.node import NodeRuntime
from protocols.alignment import SplitPlan, SplitReceiver, SplitSender, make_plan
from protocols.common import wire
from protocols.common.party import Party


class Phase(ABC):
    @abstractmethod
    def create(self, node: NodeRuntime, params: dict) -> Party: ...

    @abstractmethod
    def restore(self, node: NodeRuntime, state: bytes) -> Party: ...

    @abstractmethod
    def dump(self, party: Party) -> bytes: ...

    def progress(self, party: Party) -> dict:
        """Aggregate numbers to report after a step (never per-sample values)."""
        return {}

    @abstractmethod
    def finish(self, node: NodeRuntime, party: Party) -> dict: ...


# -- helpers over persisted node state ---------------------------------------------------


@dataclass
class _Arr:
    a: np.ndarray


def put_array(node: NodeRuntime, key: str, arr: np.ndarray) -> None:
    node.put(key, wire.encode(_Arr(np.ascontiguousarray(arr))))


def get_array(node: NodeRuntime, key: str) -> np.ndarray:
    raw = node.get(key)
    if raw is None:
        raise RuntimeError(f"node {node.name} has no {key!r}: an earlier phase did not run")
    return wire.decode(bytes(raw), _Arr).a  # type: ignore[arg-type]


def aligned_features(node: NodeRuntime) -> dict[str, np.ndarray]:
    """This party's preprocessed features (and labels for the bank) in common order, per split."""
    data = node.data()
    rows = get_array(node, "common_rows")
    test, val = get_array(node, "test_mask"), get_array(node, "val_mask")
    pre = LocalPreprocessor.from_dict(json.loads(str(node.get("preprocessor"))))
    X = pre.transform(data.features[rows])
    train = ~test & ~val
    out = {"X_train": X[train], "X_val": X[val], "X_test": X[test]}
    if data.labels is not None:
        y = data.labels[rows].astype(np.int8)
        out.update(y_train=y[train], y_val=y[val], y_test=y[test])
    return out


# -- split ------------------------------------------------------------------------------


def bank_test_mask(node: NodeRuntime, ids: list[str]) -> np.ndarray:
    """The bank's held-out rows: the documented stratified split for bundled data, else a keyed hash."""
    source = node.scenario.resolve(node.spec.data)
    seed = node.scenario.seed
    if source == "default_credit":
        from fedcredit.data.default_credit import train_test_ids, uscc_for_uci_id

        test_ids = {uscc_for_uci_id(int(i)) for i in train_test_ids(seed)[1]}
        return np.fromiter((u in test_ids for u in ids), dtype=bool, count=len(ids))
    from fedcredit.data.loaders import hash_split_mask

    return hash_split_mask(ids, seed)


class SplitPhase(Phase):
    def create(self, node: NodeRuntime, params: dict) -> Party:
        rows = get_array(node, "common_rows")
        if node.role == "bank":
            ids = [node.data().ids[i] for i in rows]
            section = node.scenario.section("evaluation")
            plan = make_plan(
                bank_test_mask(node, ids),
                validation_fraction=float(section.get("validation_fraction", 0.1)),
                seed=node.scenario.seed,
            )
            self._store(node, plan)
            return SplitSender(node.name, params["peer"], plan)
        return SplitReceiver(node.name, params["peer"], n_rows=len(rows))

    @staticmethod
    def _store(node: NodeRuntime, plan: SplitPlan) -> None:
        put_array(node, "test_mask", plan.test)
        put_array(node, "val_mask", plan.validation)

    def dump(self, party: Party) -> bytes:
        plan = party.plan if isinstance(party, (SplitSender, SplitReceiver)) else None
        return json.dumps(
            {
                "type": type(party).__name__,
                "name": party.name,
                "peer": party.peer,  # type: ignore[attr-defined]
                "n_rows": getattr(party, "n_rows", 0),
                "plan": wire.encode(plan).hex() if plan is not None else None,
            }
        ).encode()

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        s = json.loads(state)
        plan = wire.decode(bytes.fromhex(s["plan"]), SplitPlan) if s["plan"] else None
        if s["type"] == "SplitSender":
            p: Party = SplitSender(s["name"], s["peer"], plan)  # type: ignore[arg-type]
            p._done = True  # type: ignore[attr-defined]
            return p
        r = SplitReceiver(s["name"], s["peer"], s["n_rows"])
        r.plan = plan
        return r

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        if isinstance(party, SplitReceiver):
            assert party.plan is not None
            self._store(node, party.plan)
        test, val = get_array(node, "test_mask"), get_array(node, "val_mask")
        data = node.data()
        rows = get_array(node, "common_rows")
        train_rows = rows[~test & ~val]
        pre = LocalPreprocessor().fit(data.features[train_rows], data.feature_names)
        node.put("preprocessor", json.dumps(pre.to_dict()))
        return {"train": int((~test & ~val).sum()), "validation": int(val.sum()), "test": int(test.sum())}


# -- release ----------------------------------------------------------------------------


class _Done(Party):
    """Phases without messages (release) still go through the relay for a signed record."""

    def __init__(self, name: str):
        self.name = name

    def start(self) -> list:
        return []

    def receive(self, inbox: list) -> list:
        return []

    @property
    def finished(self) -> bool:
        return True


class ReleasePhase(Phase):
    """Each party writes ITS OWN model part (and preprocessing) to its own storage."""

    def create(self, node: NodeRuntime, params: dict) -> Party:
        return _Done(node.name)

    def dump(self, party: Party) -> bytes:
        return party.name.encode()

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        return _Done(state.decode())

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        model = node.get("model")
        if model is None:
            raise RuntimeError(f"node {node.name} has no trained model to release")
        part = {
            "party": node.name,
            "role": node.role,
            "feature_names": node.data().feature_names,
            "preprocessor": json.loads(str(node.get("preprocessor"))),
            "model": json.loads(str(model)),
        }
        body = json.dumps(part, indent=1, sort_keys=True).encode()
        path = node.dir / "model.json"
        path.write_bytes(body)
        return {"model_sha256": hashlib.sha256(body).hexdigest(), "model_path": str(path)}


# -- align: consent-filtered PSI -----------------------------------------------------------


def consent_filter(node: NodeRuntime, ids: list[str]):
    """The bank's consent registry for this run's purpose (counts go to the ledger, ids stay here).

    ``[consent] registry = "consents.csv"`` (or node_config ``consent``) loads real authorisations.
    Bundled and synthetic data have none, so by default every enterprise is granted; the
    ``demo_revoked`` / ``demo_expired`` fractions then withdraw a seeded share, to exercise the
    refusal path end to end.
    """
    import datetime as dt

    from fedcredit.consent import ConsentRecord, ConsentRegistry

    section = node.scenario.section("consent")
    purpose = node.scenario.purpose
    at = dt.date.fromisoformat(str(section["at"])) if "at" in section else dt.date.today()
    path = node.context.node_config.get("consent") or section.get("registry")
    if path:
        registry = ConsentRegistry.from_csv(node.scenario.resolve(str(path)))
    else:
        rng = np.random.default_rng(node.scenario.seed + 1)
        n = len(ids)
        draw = rng.random(n)
        revoked_share, expired_share = float(section.get("demo_revoked", 0.0)), float(section.get("demo_expired", 0.0))
        revoked = draw < revoked_share
        expired = (draw >= revoked_share) & (draw < revoked_share + expired_share)
        registry = ConsentRegistry.grant_all([u for u, e in zip(ids, expired) if not e], node.name, purpose)
        for u in (u for u, r in zip(ids, revoked) if r):
            registry.revoke(u, node.name, at - dt.timedelta(days=30), purpose)
        for u in (u for u, e in zip(ids, expired) if e):
            registry.add(
                ConsentRecord(u, node.name, purpose, frozenset({"*"}), dt.date(2020, 1, 1), at - dt.timedelta(days=1))
            )
    return registry.filter(ids, node.name, purpose, at)


class AlignPhase(Phase):
    """ECDH-PSI; the bank (role A) inputs only enterprises whose consent covers the purpose."""

    def _kwargs(self, node: NodeRuntime) -> dict:
        section = node.scenario.section("psi")
        return {
            "session": str(node.get("run_id")),
            "truncate": int(section.get("truncate", 12)),
            "workers": int(section.get("workers", 1)),
        }

    def _ids(self, node: NodeRuntime) -> list[str]:
        ids = node.data().ids
        if node.role != "bank":
            return ids
        cached = node.get("consented_ids")
        if cached is not None:
            return json.loads(str(cached))
        result = consent_filter(node, ids)
        node.put("consented_ids", json.dumps(result.allowed))
        node.put("consent_summary", json.dumps(result.ledger_payload()))
        return result.allowed

    def create(self, node: NodeRuntime, params: dict) -> Party:
        from protocols.psi.party import PsiRelayParty

        role = "A" if node.role == "bank" else "B"
        return PsiRelayParty(node.name, params["peer"], role, self._ids(node), **self._kwargs(node))

    def dump(self, party: Party) -> bytes:
        return party.to_state()  # type: ignore[attr-defined]

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        from protocols.psi.party import PsiRelayParty

        return PsiRelayParty.from_state(state, self._ids(node), **self._kwargs(node))

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        result = party.result()  # type: ignore[attr-defined]
        ids_used = self._ids(node)
        if node.role == "bank":
            # PSI rows index the consented list; map back to the bank's own table rows.
            pos = {u: i for i, u in enumerate(node.data().ids)}
            rows = np.array([pos[ids_used[i]] for i in result.rows], dtype=np.int64)
        else:
            rows = np.asarray(result.rows, dtype=np.int64)
        # PSI's common order is random per run (it follows the ECDH keys). Both parties know the
        # intersection's ids, so both re-sort it by USCC: the same order on both sides, and the
        # same batches and validation rows in every run with the same seed.
        own_ids = node.data().ids
        rows = rows[np.argsort(np.array([own_ids[i] for i in rows]), kind="stable")]
        put_array(node, "common_rows", rows)
        summary = {"intersection": int(result.size), **{k: int(v) for k, v in result.stats.items()}}
        if node.role == "bank":
            summary["consent"] = json.loads(str(node.get("consent_summary")))
        return summary


# -- train: two-party Paillier logistic regression ---------------------------------------


class HeteroLRPhase(Phase):
    def _config(self, node: NodeRuntime):
        from protocols.hetero_lr import HeteroLRConfig

        section = node.scenario.section("lr")
        section.setdefault("seed", node.scenario.seed)
        return HeteroLRConfig.from_section(section)

    def create(self, node: NodeRuntime, params: dict) -> Party:
        from protocols.hetero_lr import BankLR, CentreLR

        d = aligned_features(node)
        cfg = self._config(node)
        if node.role == "bank":
            return BankLR(
                node.name, params["peer"], d["X_train"], d["y_train"], cfg, X_val=d["X_val"], y_val=d["y_val"]
            )
        return CentreLR(node.name, params["peer"], d["X_train"], cfg, X_val=d["X_val"])

    def dump(self, party: Party) -> bytes:
        return party.to_state()  # type: ignore[attr-defined]

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        from protocols.hetero_lr import BankLR, CentreLR

        d = aligned_features(node)
        if node.role == "bank":
            return BankLR.from_state(state, d["X_train"], d["y_train"], X_val=d["X_val"], y_val=d["y_val"])
        return CentreLR.from_state(state, d["X_train"], X_val=d["X_val"])

    def progress(self, party: Party) -> dict:
        hist = party.history  # type: ignore[attr-defined]
        if not hist:
            return {}
        last = {k: v for k, v in hist[-1].items() if isinstance(v, (int, float)) and v == v}
        return {"metrics": last}

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        model = party.model()  # type: ignore[attr-defined]
        node.put("model", json.dumps({"type": "hetero_lr", **model}))
        hist = party.history  # type: ignore[attr-defined]
        return {"epochs": len(hist), "history": hist if node.role == "bank" else []}


# -- train: SecureBoost ----------------------------------------------------------------------


class SecureBoostPhase(Phase):
    """Bank = guest (labels, Paillier key), centre = host; each keeps only its own splits."""

    def _config(self, node: NodeRuntime):
        from protocols.secureboost import SecureBoostConfig

        section = node.scenario.section("secureboost")
        section.setdefault("seed", node.scenario.seed)
        return SecureBoostConfig.from_section(section)

    def create(self, node: NodeRuntime, params: dict) -> Party:
        from protocols.secureboost import SecureBoostGuest, SecureBoostHost

        d = aligned_features(node)
        cfg = self._config(node)
        if node.role == "bank":
            return SecureBoostGuest(
                node.name, params["peer"], d["X_train"], d["y_train"], cfg, X_val=d["X_val"], y_val=d["y_val"]
            )
        return SecureBoostHost(node.name, params["peer"], d["X_train"], cfg, X_val=d["X_val"])

    def dump(self, party: Party) -> bytes:
        return party.to_state()  # type: ignore[attr-defined]

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        from protocols.secureboost import SecureBoostGuest, SecureBoostHost

        d = aligned_features(node)
        if node.role == "bank":
            return SecureBoostGuest.from_state(state, d["X_train"], d["y_train"], d["X_val"], d["y_val"])
        return SecureBoostHost.from_state(state, d["X_train"], d["X_val"])

    def progress(self, party: Party) -> dict:
        hist = party.history  # type: ignore[attr-defined]
        if not hist:
            return {}
        return {"metrics": {k: v for k, v in hist[-1].items() if isinstance(v, (int, float)) and v == v}}

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        model = party.model()  # type: ignore[attr-defined]
        node.put(
            "model",
            json.dumps(
                {
                    "type": "secureboost",
                    "role": node.role,
                    "n_trees": len(getattr(model, "trees", [])) if node.role == "bank" else None,
                    "model_hex": model.to_bytes().hex(),
                }
            ),
        )
        hist = party.history  # type: ignore[attr-defined]
        return {
            "trees": len(hist),
            "history": hist if node.role == "bank" else [],
            "feature_importance": _named_importance(party.feature_importance(), node),
        }  # type: ignore[attr-defined]


def _named_importance(imp: dict, node: NodeRuntime) -> dict:
    """Attach this party's own feature names to per-feature lists (never the other side's)."""
    names = node.data().feature_names

    def name(v):
        if isinstance(v, dict):
            return {k: name(x) for k, x in v.items()}
        if isinstance(v, list) and len(v) == len(names):
            return dict(zip(names, v))
        return v

    return name(imp)


def _secureboost_scorer(
    node: NodeRuntime, peer: str, model: dict, X: np.ndarray, *, state: bytes | None = None
) -> Party:
    from protocols.secureboost import (
        SecureBoostGuestModel,
        SecureBoostHostModel,
        SecureBoostScoringGuest,
        SecureBoostScoringHost,
    )

    raw = bytes.fromhex(model["model_hex"])
    mode = str(node.scenario.section("secureboost").get("scoring_mode", "cross"))
    if node.role == "bank":
        gm = SecureBoostGuestModel.from_bytes(raw)
        if state is not None:
            return SecureBoostScoringGuest.from_state(state, gm, X)
        return SecureBoostScoringGuest(node.name, peer, gm, X, mode=mode)
    hm = SecureBoostHostModel.from_bytes(raw)
    if state is not None:
        return SecureBoostScoringHost.from_state(state, hm, X)
    return SecureBoostScoringHost(node.name, peer, hm, X)


# -- score: joint scoring of the held-out rows ---------------------------------------------


class ScorePhase(Phase):
    """The bank learns the joint scores of the test rows and computes metrics (documented leak:
    the centre's partial scores of scored rows, as in any joint inference)."""

    def create(self, node: NodeRuntime, params: dict) -> Party:
        from protocols.hetero_lr import BankScorer, CentreScorer

        model = json.loads(str(node.get("model")))
        X = aligned_features(node)["X_test"]
        if model["type"] == "hetero_lr":
            cls = BankScorer if node.role == "bank" else CentreScorer
            return cls(node.name, params["peer"], np.asarray(model["weights"]), X)
        return _secureboost_scorer(node, params["peer"], model, X)

    def dump(self, party: Party) -> bytes:
        return party.to_state()  # type: ignore[attr-defined]

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        from protocols.hetero_lr import BankScorer, CentreScorer

        model = json.loads(str(node.get("model")))
        X = aligned_features(node)["X_test"]
        if model["type"] == "hetero_lr":
            cls = BankScorer if node.role == "bank" else CentreScorer
            return cls.from_state(state, X)
        return _secureboost_scorer(node, "", model, X, state=state)

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        if node.role != "bank":
            return {}
        from fedcredit import metrics

        y = aligned_features(node)["y_test"]
        scores = party.scores  # type: ignore[attr-defined]
        m = metrics.summary(y, scores)
        return {"metrics": {k: round(float(v), 6) for k, v in m.items()}, "rows": int(len(y))}


PHASES: dict[str, Phase] = {
    "align": AlignPhase(),
    "split": SplitPhase(),
    "hetero_lr": HeteroLRPhase(),
    "secureboost": SecureBoostPhase(),
    "score": ScorePhase(),
    "release": ReleasePhase(),
}

# joint inference builds on the helpers above and adds PHASES["inference"] itself
import parties.vertical.inference_phase  # noqa: E402,F401

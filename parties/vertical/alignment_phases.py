"""Phases that align the two parties' rows: consent-filtered PSI (``align``), then ``split``.

After ``align`` both parties hold the intersection as rows of their own tables, in the same
order (``common_rows``); after ``split`` both know which aligned positions are test and
validation rows (``test_mask``, ``val_mask``) and each has fitted its own preprocessing on its
training rows (``preprocessor``). See :mod:`parties.vertical.phase` for the state keys.
"""

from __future__ import annotations

import json

import numpy as np

from fedcredit.config.sections import EvaluationSettings, PsiSettings
from fedcredit.features import LocalPreprocessor
from parties.common.node import NodeRuntime
from parties.vertical import unbalanced_align
from parties.vertical.consent import psi_input
from parties.vertical.phase import (
    COMMON_ROWS,
    PREPROCESSOR,
    TEST_MASK,
    VAL_MASK,
    Phase,
    RestartablePhase,
    get_array,
    put_array,
)
from protocols.alignment import SplitPlan, SplitReceiver, SplitSender, make_plan
from protocols.common import wire
from protocols.psi import PsiRelayParty

# -- align: consent-filtered PSI -----------------------------------------------------------


class AlignPhase(RestartablePhase[PsiRelayParty | unbalanced_align.UbParty]):
    """ECDH-PSI; the bank (role A) inputs only enterprises it holds a consent token for (the
    centre checks the tokens in the next phase, :class:`parties.vertical.consent.ConsentPhase`).
    ``[psi] mode = "unbalanced"`` runs unbalanced PSI instead (:mod:`parties.vertical.unbalanced_align`)."""

    def _kwargs(self, node: NodeRuntime) -> dict:
        psi = node.scenario.settings(PsiSettings)
        return {"session": str(node.get("run_id")), "truncate": psi.truncate, "workers": psi.workers}

    def _ids(self, node: NodeRuntime) -> list[str]:
        ids = node.data().ids
        if node.role != "bank":
            return ids
        cached = node.get("consented_ids")
        if cached is not None:
            return json.loads(str(cached))
        allowed, summary = psi_input(node, ids)
        node.put("consented_ids", json.dumps(allowed))
        node.put("consent_summary", json.dumps(summary))
        return allowed

    def create(self, node: NodeRuntime, params: dict) -> PsiRelayParty | unbalanced_align.UbParty:
        if unbalanced_align.is_unbalanced(node):
            return unbalanced_align.create_party(node, params["peer"], self._ids(node))
        role = "A" if node.role == "bank" else "B"
        return PsiRelayParty(node.name, params["peer"], role, self._ids(node), **self._kwargs(node))

    def restore(self, node: NodeRuntime, state: bytes) -> PsiRelayParty | unbalanced_align.UbParty:
        if unbalanced_align.is_unbalanced(node):
            return unbalanced_align.restore_party(node, state, self._ids(node))
        return PsiRelayParty.from_state(state, self._ids(node), **self._kwargs(node))

    def finish(self, node: NodeRuntime, party: PsiRelayParty | unbalanced_align.UbParty) -> dict:
        result = party.result()
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
        put_array(node, COMMON_ROWS, rows)
        summary = {"intersection": int(result.size), **{k: int(v) for k, v in result.stats.items()}}
        if node.role == "bank":
            summary["consent"] = json.loads(str(node.get("consent_summary")))
        return summary


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


class SplitPhase(Phase[SplitSender | SplitReceiver]):
    """The bank (which owns the labels) tells the centre which aligned rows are test and
    validation rows; each party then fits its preprocessing on its own training rows."""

    def create(self, node: NodeRuntime, params: dict) -> SplitSender | SplitReceiver:
        rows = get_array(node, COMMON_ROWS)
        if node.role == "bank":
            ids = [node.data().ids[i] for i in rows]
            # a scorecard holds no rows back for early stopping: its held-out rows are the test split
            scorecard = node.scenario.mode == "scorecard"
            plan = make_plan(
                bank_test_mask(node, ids),
                validation_fraction=0.0
                if scorecard
                else node.scenario.settings(EvaluationSettings).validation_fraction,
                seed=node.scenario.seed,
            )
            self._store(node, plan)
            return SplitSender(node.name, params["peer"], plan)
        return SplitReceiver(node.name, params["peer"], n_rows=len(rows))

    @staticmethod
    def _store(node: NodeRuntime, plan: SplitPlan) -> None:
        put_array(node, TEST_MASK, plan.test)
        put_array(node, VAL_MASK, plan.validation)

    def dump(self, party: SplitSender | SplitReceiver) -> bytes:
        return json.dumps(
            {
                "type": type(party).__name__,
                "name": party.name,
                "peer": party.peer,
                "n_rows": getattr(party, "n_rows", 0),
                "plan": wire.encode(party.plan).hex() if party.plan is not None else None,
            }
        ).encode()

    def restore(self, node: NodeRuntime, state: bytes) -> SplitSender | SplitReceiver:
        s = json.loads(state)
        plan = wire.decode(bytes.fromhex(s["plan"]), SplitPlan) if s["plan"] else None
        if s["type"] == "SplitSender":
            if plan is None:
                raise RuntimeError(f"node {node.name}: split state of the sender has no plan")
            sender = SplitSender(s["name"], s["peer"], plan)
            sender._done = True  # persisted only after start(), which sent the plan
            return sender
        receiver = SplitReceiver(s["name"], s["peer"], s["n_rows"])
        receiver.plan = plan
        return receiver

    def finish(self, node: NodeRuntime, party: SplitSender | SplitReceiver) -> dict:
        if isinstance(party, SplitReceiver):
            if party.plan is None:
                raise RuntimeError(f"node {node.name}: the split finished without a plan")
            self._store(node, party.plan)
        test, val = get_array(node, TEST_MASK), get_array(node, VAL_MASK)
        data = node.data()
        rows = get_array(node, COMMON_ROWS)
        train_rows = rows[~test & ~val]
        if node.scenario.mode != "scorecard":  # a scorecard encodes by WOE (scorecard_phases), missing values allowed
            # trees take missing values as they are (a learned direction per split) and declared
            # categorical columns as level codes; LR refuses missing values, naming row and column
            trees = node.scenario.mode == "secureboost"
            pre = LocalPreprocessor(keep_missing=trees).fit(
                data.features[train_rows],
                data.feature_names,
                passthrough=[trees and n in data.categorical for n in data.feature_names],
            )
            node.put(PREPROCESSOR, json.dumps(pre.to_dict()))
        return {"train": int((~test & ~val).sum()), "validation": int(val.sum()), "test": int(test.sum())}

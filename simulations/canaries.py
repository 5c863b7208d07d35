"""Canaries: plant a known defect into a copy of the code and require the test named after it to fail.

    .venv/bin/python simulations/canaries.py [--only SUBSTRING] [--control] [--list]

A privacy or tamper test that passes on broken code protects nothing. Each canary here is one
such defect (a leak, a dropped binding, a missing check), written as an exact text replacement in
one source file, and the pytest node ids of the tests that must catch it. The runner copies the
repository to a temporary directory, applies the replacement there (the working tree is never
touched), runs only those tests with the copy first on ``sys.path``, and counts the canary as
caught when every named test fails (a named test that stays green means it does not guard what
it is named after). A replacement whose ``old`` text no
longer occurs exactly once is a stale canary and counts as missed, so refactoring cannot silently
retire one.

One line per canary, and last a JSON line ``{"canaries": N, "caught": N, "missed": [...]}``.
Exit status 1 if any canary was missed. ``--control`` also runs each canary's tests on the
unmodified copy first and requires them to pass (a canary is only meaningful against a green test).

Adding a canary for a new privacy or tamper test is one entry in :data:`CANARIES`::

    Canary("inference/seal-ignores-batch", "protocols/inference/_base.py",
           "message=kind, batch=self.s.batch)", "message=kind)",
           ["tests/test_binding.py::test_one_bound_field_changed_does_not_open"], count=2)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# never copied: environments, caches and run outputs are not code
_SKIP = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")


@dataclass(frozen=True)
class Canary:
    """One planted defect: in ``path``, ``old`` (occurring exactly ``count`` times) becomes ``new``.

    ``tests`` are pytest node ids (relative to the repository root); at least one must fail.
    ``why`` says what the defect would let through, for the printed line.
    """

    name: str
    path: str
    old: str
    new: str
    tests: list[str]
    why: str = ""
    count: int = 1
    extra: list[tuple[str, str, str]] = field(default_factory=list)  # more (path, old, new) edits, each once

    def edits(self) -> list[tuple[str, str, str, int]]:
        return [(self.path, self.old, self.new, self.count)] + [(p, o, n, 1) for p, o, n in self.extra]


VR = "tests/test_vertical_run.py"
SB = "tests/test_secureboost.py"
GB = "tests/test_gbdt_reference.py"
BIND = "tests/test_binding.py"
MISS = "tests/test_missing_paths.py"
SECAGG = "tests/test_secagg_dropouts.py"
SBM = "tests/test_secureboost_missing.py"

CANARIES: list[Canary] = [
    # -- seals and signatures that stop binding one field ---------------------------------------
    Canary(
        "envelope/signature-ignores-seq",
        "protocols/common/signing.py",
        "        recipient,\n        seq,\n        hashlib.sha256(payload).digest(),",
        "        recipient,\n        hashlib.sha256(payload).digest(),",
        [f"{BIND}::test_one_bound_field_changed_does_not_open[signed-envelope-seq]"],
        "a relayed envelope's sequence number can be rewritten (replay/reorder) without breaking its signature",
    ),
    Canary(
        "envelope/signature-ignores-phase",
        "protocols/common/signing.py",
        "        session,\n        phase,\n        step,",
        "        session,\n        step,",
        [f"{BIND}::test_one_bound_field_changed_does_not_open[signed-envelope-phase]"],
        "an envelope signed in one phase verifies in another",
    ),
    Canary(
        "inference/seal-ignores-batch",
        "protocols/inference/_base.py",
        "message=kind, batch=self.s.batch)",
        "message=kind)",
        [f"{BIND}::test_one_bound_field_changed_does_not_open[inference-request-batch]"],
        "an inference request opens in another batch of the same session",
        count=2,
    ),
    Canary(
        "inference/seal-ignores-session",
        "protocols/inference/_base.py",
        "protocol=PROTOCOL, session=self.s.session, me=self.name",
        'protocol=PROTOCOL, session="", me=self.name',
        [
            f"{BIND}::test_one_bound_field_changed_does_not_open[inference-request-session]",
            "tests/test_inference.py::test_tampered_replayed_or_wrong_batch_messages_are_refused",
        ],
        "an inference request replays into another run's session",
    ),
    Canary(
        "inference/seal-ignores-message-kind",
        "protocols/inference/_base.py",
        "message=kind, batch=self.s.batch)",
        "batch=self.s.batch)",
        [f"{BIND}::test_one_bound_field_changed_does_not_open[inference-request-message]"],
        "a sealed request body opens as the other message kind",
        count=2,
    ),
    Canary(
        "ckks/key-share-ignores-run-sender-recipient",
        "fedcredit/horizontal/keyshare.py",
        "protocol=_PROTOCOL, session=run_id, me=sender, peer=recipient",
        'protocol=_PROTOCOL, session="", me="", peer=""',
        [
            f"{BIND}::test_one_bound_field_changed_does_not_open[ckks-key-share-run]",
            f"{BIND}::test_one_bound_field_changed_does_not_open[ckks-key-share-recipient]",
        ],
        "a CKKS key envelope opens for another run or recipient once its header is rewritten",
        extra=[
            (
                "fedcredit/horizontal/keyshare.py",
                "protocol=_PROTOCOL, session=env.run_id, me=me, peer=env.sender",
                'protocol=_PROTOCOL, session="", me="", peer=""',
            )
        ],
    ),
    Canary(
        "psi/round2-ignores-session",
        "protocols/psi/engine.py",
        "protocol=PROTOCOL, session=self._session, me=self.role",
        'protocol=PROTOCOL, session="", me=self.role',
        [f"{BIND}::test_one_bound_field_changed_does_not_open[psi-round2-session]"],
        "PSI round-2 keys of one run are accepted in another",
    ),
    Canary(
        "ledger/hash-ignores-timestamp",
        "fedcredit/ledger/records.py",
        '"ts": ts,',
        '"ts": "",',
        [
            f"{BIND}::test_one_bound_field_changed_does_not_open[ledger-record-ts]",
            f"{BIND}::test_one_bound_field_changed_does_not_open[node-log-record-ts]",
        ],
        "a signed ledger or node-log record's time can be rewritten",
    ),
    Canary(
        "ckks/key-share-ignores-nonce",
        "fedcredit/horizontal/keyshare.py",
        "message=_MESSAGE, nonce=nonce)",
        "message=_MESSAGE)",
        [f"{BIND}::test_one_bound_field_changed_does_not_open[ckks-key-share-nonce]"],
        "a CKKS key envelope's nonce can be swapped without the seal noticing",
        extra=[("fedcredit/horizontal/keyshare.py", "message=_MESSAGE, nonce=env.nonce)", "message=_MESSAGE)")],
    ),
    Canary(
        "ledger/hash-ignores-writer",
        "fedcredit/ledger/records.py",
        '"writer": writer,',
        '"writer": "",',
        # (a node log's writer is also the node name the ledger cross-check looks up, so that row
        # is refused without the hash; the ledger's writer is checked by the hash alone)
        [f"{BIND}::test_one_bound_field_changed_does_not_open[ledger-record-writer]"],
        "who wrote a signed ledger can be rewritten in every record",
    ),
    # -- references that must be independent of the code they check ----------------------------
    Canary(
        "gbdt/gain-ignores-gamma",
        "protocols/gbdt/plain.py",
        "- g * g / (h + lam)) - params.gamma",
        "- g * g / (h + lam))",
        [
            f"{GB}::test_hand_worked_gamma_decides_whether_the_root_splits",
            f"{GB}::test_plain_reference_matches_an_independent_exact_booster",
        ],
        "gamma silently ignored by the reference and the federated guest alike",
    ),
    Canary(
        "gbdt/right-child-min-child-weight-dropped",
        "protocols/gbdt/plain.py",
        "ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)",
        "ok = hl >= params.min_child_weight",
        [f"{GB}::test_hand_worked_min_child_weight_on_each_side_decides_the_split"],
        "a split whose right child is below min_child_weight is accepted",
    ),
    Canary(
        "secureboost/federated-gain-ignores-gamma",
        "protocols/gbdt/plain.py",
        "- g * g / (h + lam)) - params.gamma",
        "- g * g / (h + lam))",
        [f"{GB}::test_federated_secureboost_matches_the_independent_booster"],
        "the federated trees (not only the reference) checked against an independent booster",
    ),
    # -- host privacy in SecureBoost and guards that must hold ---------------------------------
    Canary(
        "secureboost/split-ids-encode-feature-and-bin",
        "protocols/secureboost/host.py",
        "ids = _fresh_ids(len(cts), set(s.model_id))",
        "ids = np.array([(s.tree << 48) | (level << 40) | (nd_ << 24) | (f_ << 8) | b_ "
        "for nd_, f_, b_ in zip(c_node, c_feat, c_bin)], dtype=np.uint64)",
        ["tests/test_secureboost_ids.py::test_host_split_ids_are_fresh_random_and_say_nothing_about_feature_or_bin"],
        "the bank learns the host feature and bin of every candidate split from its id",
    ),
    Canary(
        "secureboost/truncated-bitmask-accepted",
        "protocols/secureboost/messages.py",
        "if bits.size != (total + 7) // 8:",
        "if bits.size > (total + 7) // 8:",
        [f"{SB}::test_wrong_length_is_refused"],
        "a truncated guest-split row bitmask is zero-padded instead of refused",
    ),
    # -- planted leaks the vertical-run privacy check must see ---------------------------------
    Canary(
        "vertical/labels-in-split-summary",
        "parties/vertical/alignment_phases.py",
        'return {"train": int((~test & ~val).sum()), "validation"',
        'return {"y": [] if data.labels is None else data.labels[train_rows][:200].tolist(), '
        '"train": int((~test & ~val).sum()), "validation"',
        [f"{VR}::test_in_process_run_outputs_model_parts_and_a_verifying_ledger"],
        "200 bank training labels (aligned order) reach the coordinator in the split summary",
    ),
    Canary(
        "vertical/centre-fixed-point-features-in-split-summary",
        "parties/vertical/alignment_phases.py",
        'return {"train": int((~test & ~val).sum()), "validation"',
        'return {"x": np.rint(pre.transform(data.features[train_rows][:4]) * 4096).astype(int).ravel().tolist(), '
        '"train": int((~test & ~val).sum()), "validation"',
        [f"{VR}::test_in_process_run_outputs_model_parts_and_a_verifying_ledger"],
        "standardised features at the protocol's 12-bit fixed point reach the coordinator",
    ),
    # -- tests that must exercise their subject -----------------------------------------------
    Canary(
        "parallel/pool-never-starts",
        "protocols/common/parallel.py",
        "    if _broken:\n        return None\n    with _lock:",
        "    if True:  # the pool cannot start: every caller silently runs serially\n        return None\n    with _lock:",
        [
            "tests/test_paillier.py::test_parallel_paths_give_identical_results",
            f"{SB}::test_parallel_path_gives_identical_trees",
        ],
        "'parallel == serial' holds trivially when the process pool never starts",
    ),
    Canary(
        "tests/missing-data-layer-is-a-failure-not-a-skip",
        "fedcredit/data/default_credit.py",
        "def load_vertical(",
        "def _load_vertical_removed(",
        [f"{SB}::test_default_credit_subset_lossless_and_sane"],
        "a test that turned the data layer's ImportError into a skip passed with no data layer",
    ),
    # -- behaviour that had no test ---------------------------------------------------------------
    Canary(
        "secagg/halted-round-skipped-silently",
        "parties/horizontal/server.py",
        "        if rnd not in strategy.aggregated:\n            run.flush()",
        "        if False:  # a halted round is silently skipped\n            run.flush()",
        [f"{SECAGG}::test_too_few_banks_left_to_reconstruct_stops_the_run_naming_the_threshold"],
        "SecAgg+ with too few banks to reconstruct carries on without a word",
    ),
    Canary(
        "gbdt/missing-shares-the-last-value-bin",
        "protocols/gbdt/binning.py",
        "t = np.append(t, MISSING_THRESHOLD)",
        "t = t",
        [
            f"{GB}::test_hand_worked_missing_values_decide_the_split_in_the_plain_reference",
            f"{GB}::test_hand_worked_missing_values_decide_the_split_in_federated_secureboost",
        ],
        "missing values lose their own bin: a split can no longer isolate them",
    ),
    Canary(
        "consent/registry-file-ignored",
        "parties/vertical/consent.py",
        "        ids = result.allowed\n",
        "",
        [f"{MISS}::test_training_with_a_consent_file_from_disk_keeps_exactly_the_consented"],
        "the bank's consent CSV is read and counted but the firms it refuses still enter PSI",
    ),
    Canary(
        "inference/revocation-ignored",
        "parties/vertical/consent.py",
        "reasons: list[str | None] = [r or None for r in result.reasons.tolist()]",
        'reasons: list[str | None] = [None if r == "revoked" else (r or None) for r in result.reasons.tolist()]',
        [f"{MISS}::test_inference_after_a_revocation_refuses_and_never_queries_the_centre"],
        "an applicant whose consent was revoked after training is still scored",
    ),
    # -- #20 SecAgg+ dropouts: Flower's workflow kept the setup-time sampled set and neighbours ------
    Canary(
        "secagg/early-dropout-listed-dead-at-unmask",
        "parties/horizontal/secagg_workflow.py",
        "        holders = set(state.active_node_ids)\n        state.sampled_node_ids = holders\n"
        "        state.nid_to_neighbours = {\n"
        "            nid: nbrs & holders for nid, nbrs in state.nid_to_neighbours.items() if nid in holders\n"
        "        }\n",
        "",
        [
            f"{SECAGG}::test_bank_dropping_during_key_sharing_is_left_out_exactly",
            f"{SECAGG}::test_bank_offline_for_good_leaves_later_rounds_with_the_others",
        ],
        "Flower's own behaviour: a bank silent at setup or key sharing is asked for at unmask, every survivor "
        "fails with KeyError and the round halts",
    ),
    Canary(
        "secagg/dead-bank-masks-rebuilt-with-early-dropouts",
        "parties/horizontal/secagg_workflow.py",
        "nid: nbrs & holders for nid, nbrs in",
        "nid: nbrs for nid, nbrs in",
        [f"{SECAGG}::test_drops_at_key_sharing_and_at_masked_vectors_in_one_round_leave_the_exact_average"],
        "a bank dropped after sharing keys has its pairwise masks rebuilt with a bank that never masked, "
        "so the aggregate is wrong",
    ),
    Canary(
        "secagg/unmask-reveals-both-shares-of-a-node",
        "parties/horizontal/client.py",
        '    elif stage == "unmask":\n        _check_unmask_request(msg, ctx, env)\n',
        "",
        [f"{SECAGG}::test_bank_refuses_an_unmask_request_naming_a_node_both_active_and_dead"],
        "a coordinator listing a bank as both active and dead at unmask collects shares of its self-mask "
        "seed and its mask key, and can unmask its individual update",
    ),
    # -- SecureBoost's learned direction of missing values (issue 17) ---------------------------
    Canary(
        "secureboost/missing-direction-in-split-id",
        "protocols/secureboost/host.py",
        "ids = _fresh_ids(len(cts), set(s.model_id))",
        "ids = (_fresh_ids(len(cts), set(s.model_id)) & ~np.uint64(1)) | np.array(c_ml, dtype=np.uint64)",
        [f"{SBM}::test_host_split_ids_say_nothing_about_the_missing_direction"],
        "the bank learns from a host split id which way the centre's missing values go",
    ),
    Canary(
        "gbdt/missing-never-goes-left",
        "protocols/gbdt/plain.py",
        "        & (m > 0)\n",
        "        & (m < 0)\n",
        [
            f"{GB}::test_hand_worked_missing_direction_decides_the_split_in_the_plain_reference",
            f"{GB}::test_hand_worked_missing_direction_decides_the_split_in_federated_secureboost",
            f"{SBM}::test_plain_reference_with_missing_matches_an_independent_exact_booster",
        ],
        "missing values always go right: the learned direction is never tried",
    ),
    Canary(
        "secureboost/host-routes-missing-right-regardless",
        "protocols/secureboost/host.py",
        "go = binned_go_left(self.Xb[rows, f], b, ml, mb, left_bins)",
        "go = binned_go_left(self.Xb[rows, f], b, False, mb, left_bins)",
        [f"{SBM}::test_federated_trees_with_missing_equal_reference"],
        "the centre partitions its rows against the chosen direction and the bank does not notice",
    ),
    Canary(
        "secureboost/scoring-ignores-missing-direction",
        "protocols/secureboost/model.py",
        "go = (x <= self.thresholds[pos]) | (self.missing_left[pos] & np.isnan(x))",
        "go = x <= self.thresholds[pos]",
        [f"{GB}::test_hand_worked_missing_direction_decides_the_split_in_federated_secureboost"],
        "joint scoring sends a new applicant's missing centre value right whatever training learned",
    ),
    # -- SecureBoost's categorical splits (issue 17) ----------------------------------------------
    Canary(
        "secureboost/host-level-codes-in-level-counts",
        "protocols/secureboost/host.py",
        'lv["count"] += cnt[k, f, levels].tolist()',
        'lv["count"] += (self.bins.thresholds[f][np.minimum(levels, self.bins.thresholds[f].size - 1)] % 1e6)'
        ".astype(np.int64).tolist()",
        [f"{SBM}::test_host_level_codes_never_leave_the_host"],
        "the bank receives the centre's level codes (industry, district) beside the per-level sums",
    ),
    Canary(
        "secureboost/host-levels-scanned-unordered",
        "protocols/secureboost/guest.py",
        "order = at[categorical_order(cGL[at], cHL[at], count[at], p)]",
        "order = at",
        [
            f"{SBM}::test_federated_categorical_trees_equal_reference",
            f"{GB}::test_hand_worked_categorical_levels_in_federated_secureboost",
        ],
        "the bank scans a centre column's levels in code order, not by G/H: its trees leave the reference",
    ),
    # -- SecureBoost runs take sparse public records as they are (issue 17) --------------------------
    Canary(
        "secureboost-run/missing-values-imputed-by-the-split",
        "parties/vertical/alignment_phases.py",
        "pre = LocalPreprocessor(keep_missing=trees).fit(",
        "pre = LocalPreprocessor(keep_missing=False).fit(",
        [
            "tests/test_secureboost_sparse_run.py::test_secureboost_runs_on_missing_and_categorical_centre_data_and_beats_bank_only"
        ],
        "a SecureBoost run refuses (or would impute) the centre's empty cells instead of learning their direction",
    ),
    Canary(
        "secureboost-run/categorical-columns-read-as-numbers",
        "parties/vertical/alignment_phases.py",
        "passthrough=[trees and n in data.categorical for n in data.feature_names],",
        "passthrough=[False for n in data.feature_names],",
        [
            "tests/test_secureboost_sparse_run.py::test_secureboost_runs_on_missing_and_categorical_centre_data_and_beats_bank_only"
        ],
        "declared categorical columns are z-scored like amounts, so level codes no longer reach the trees as levels",
    ),
    # -- federated binning: the bank reads only the low window of each bin sum ----------------------
    Canary(
        "binning/bin-sums-unmasked",
        "protocols/binning/centre.py",
        "masks = [secrets.randbelow(pk.n - (1 << int(w))) for w in windows]",
        "masks = [0 for w in windows]",
        ["tests/test_attacks_holders.py::test_binning_window_bounds_what_power_of_two_labels_place"],
        "a bank that encrypts 2^t instead of 0/1 labels reads the centre's fine bin of hundreds of rows",
    ),
    Canary(
        "binning/bin-sums-not-rerandomised",
        "protocols/binning/centre.py",
        "sums=sums.add_plain(masks).to_bytes(),",
        "sums=sums.add_plain(masks).to_bytes(be_secure=False),",
        ["tests/test_binning.py::test_sums_are_rerandomised_before_they_leave"],
        "the bank can test which of its own label ciphertexts a bin sum holds",
    ),
    Canary(
        "exchange/node-skips-verification-in-stream",
        "parties/vertical/client.py",
        "return node.accept_inbox(request.phase, sub, list(inbox), request.announced)",
        "return [e.plain() for e in inbox]",
        [
            "tests/test_attacks_coordinator.py::test_coordinator_attack_is_refused_or_detected_and_leaks_nothing"
            "[coordinator/stream-alter/hetero-lr]"
        ],
        "the hub hands a node altered envelopes inside a streamed epoch and the party computes on them",
    ),
    Canary(
        "exchange/hub-skips-ledger",
        "parties/common/exchange.py",
        "self.record(substep(self.step, self.m), self.round, described, sorted(self.posts))",
        "None",
        ["tests/test_exchange.py::test_streamed_run_verifies_exchange_by_exchange"],
        "a streamed epoch's envelopes cross boundaries without a ledger record",
    ),
    Canary(
        "exchange/hub-ignores-token",
        "parties/common/exchange.py",
        'invited = s.tokens.pop(str(hello.get("token", "")), None)',
        "invited = party",
        ["tests/test_exchange.py::test_hub_refuses_a_wrong_token_another_partys_token_and_a_spent_one"],
        "anyone on the network joins a streamed step as a party and takes its mail",
    ),
]


@dataclass
class Outcome:
    canary: Canary
    caught: bool
    detail: str
    seconds: float


def _copy_repo(dest: Path) -> Path:
    target = dest / "repo"
    shutil.copytree(ROOT, target, ignore=_SKIP, symlinks=True)
    return target


def _apply(repo: Path, canary: Canary) -> str:
    """Apply every edit of ``canary`` in ``repo``; '' on success, else why the canary is stale."""
    for rel, old, new, count in canary.edits():
        p = repo / rel
        if not p.is_file():
            return f"stale: {rel} does not exist"
        text = p.read_text()
        found = text.count(old)
        if found != count:
            return f"stale: {old!r} occurs {found} times in {rel}, expected {count}"
        p.write_text(text.replace(old, new))
    return ""


def _pytest(repo: Path, tests: list[str], timeout: float) -> tuple[int, list[str], str]:
    """Run ``tests`` in ``repo``: (exit status, node ids that failed, last summary line)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "FLWR_TELEMETRY_ENABLED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("FEDCREDIT_REQUIRE", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "--tb=no", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    try:
        r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, [], f"timed out after {timeout:.0f} s"
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    failed = [ln.split()[1] for ln in lines if ln.startswith("FAILED ")]
    return r.returncode, failed, lines[-1] if lines else ""


def _uncaught(tests: list[str], failed: list[str]) -> list[str]:
    """The named tests none of whose cases failed (a node id matches its parametrised cases too)."""
    return [t for t in tests if not any(f == t or f.startswith(t + "[") for f in failed)]


def run_canary(canary: Canary, *, control: bool, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedcredit-canary-") as tmp:
        repo = _copy_repo(Path(tmp))
        if control:
            rc, _, last = _pytest(repo, canary.tests, timeout)
            if rc != 0:
                return Outcome(
                    canary, False, f"control: tests fail on the real code ({last})", time.perf_counter() - t0
                )
        stale = _apply(repo, canary)
        if stale:
            return Outcome(canary, False, stale, time.perf_counter() - t0)
        rc, failed, last = _pytest(repo, canary.tests, timeout)
    # caught: the tests ran (exit 1, not a collection error or timeout) and *every* named test failed
    missing = _uncaught(canary.tests, failed)
    caught = rc == 1 and not missing
    detail = last if caught else f"pytest exit {rc}; not failing: {[m.split('::')[-1] for m in missing]} ({last})"
    return Outcome(canary, caught, detail, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="run only canaries whose name contains this")
    ap.add_argument("--control", action="store_true", help="first require the tests to pass on the real code")
    ap.add_argument("--list", action="store_true", help="list the canaries and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    args = ap.parse_args(argv)
    chosen = [c for c in CANARIES if args.only in c.name]
    names = [c.name for c in CANARIES]
    if len(set(names)) != len(names):
        raise SystemExit("two canaries share a name")
    if args.list:
        for c in chosen:
            print(f"{c.name:<48} {c.path}: {c.why}")
        return 0
    outcomes = []
    for c in chosen:
        o = run_canary(c, control=args.control, timeout=args.timeout)
        outcomes.append(o)
        verdict = "caught" if o.caught else "MISSED"
        print(
            f"{c.name:<48} {verdict:<7} by {', '.join(t.split('::')[-1] for t in c.tests)} "
            f"({o.seconds:.1f} s) -- {c.why}; {o.detail}",
            flush=True,
        )
    missed = [o.canary.name for o in outcomes if not o.caught]
    print(json.dumps({"canaries": len(outcomes), "caught": len(outcomes) - len(missed), "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Egress cross-check: the coordinator's ledger and each node's own signed log must agree both ways.

These mismatches are *authentic* (every file is validly signed by its writer), so only the
cross-check can catch them: a coordinator that misreports what a node sent, a node that sent
something the coordinator did not record, or logs from the wrong run or key.
"""

from __future__ import annotations

import pytest

from fedcredit.ledger import EgressLog, Ledger, generate_signing_key, message_entry, public_key_hex, verify


def _run(tmp_path, *, ledger_msgs, egress_msgs, run_id="r1", egress_run_id=None, egress_key=None, finish=True):
    """Ledger with one step holding ``ledger_msgs``; bank egress log holding ``egress_msgs``.

    Messages are (sender, recipient, kind, step, payload-bytes).
    """
    ck, bk = generate_signing_key(), generate_signing_key()
    ledger_path, egress_path = tmp_path / "ledger.db", tmp_path / "egress-bank.db"
    with Ledger.create(ledger_path, ck, run_id=run_id) as led:
        led.append(
            "run_start",
            {
                "parties": {
                    "bank": {"role": "bank", "egress_pubkey": public_key_hex(bk)},
                    "centre": {"role": "credit_centre", "egress_pubkey": None},
                }
            },
        )
        steps: dict[str, list] = {}
        for sender, recipient, kind, step, payload in ledger_msgs:
            steps.setdefault(step, []).append(
                message_entry(sender=sender, recipient=recipient, kind=kind, payload=payload)
            )
        for step, msgs in steps.items():
            led.append("step", {"step": step, "messages": msgs})
        if finish:
            led.append("run_end", {})
    with EgressLog.create(egress_path, egress_key or bk, run_id=egress_run_id or run_id, node="bank") as eg:
        for _sender, recipient, kind, step, payload in egress_msgs:
            eg.record_sent(kind=kind, recipient=recipient, step=step, payload=payload)
    return ledger_path, egress_path, ck


MSG = ("bank", "coordinator", "masked_gradient", "round-0", b"\x01" * 40)


def test_matching_logs_verify(tmp_path):
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG, MSG], egress_msgs=[MSG, MSG])
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert rep.ok, rep.errors
    assert rep.egress[0].matched == 2
    # the centre sent nothing, bank is covered: no "not cross-checked" warning
    assert not [w for w in rep.warnings if "not cross-checked" in w]


@pytest.mark.parametrize(
    "field,value",
    [
        (4, b"\x02" * 40),  # different bytes (hash)
        (4, b"\x01" * 41),  # different size
        (2, "encrypted_residual"),  # different kind
        (1, "centre"),  # different recipient
        (3, "round-1"),  # different step
    ],
)
def test_ledger_misreporting_a_node_message_is_detected(tmp_path, field, value):
    lied = list(MSG)
    lied[field] = value
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[tuple(lied)], egress_msgs=[MSG])
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert not rep.ok and not rep.intact
    assert any("is not in the node's own egress log" in e for e in rep.errors)
    assert any("which the ledger does not record" in e for e in rep.errors)


def test_message_missing_from_egress_log(tmp_path):
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG, MSG], egress_msgs=[MSG])
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert not rep.ok and rep.first_bad is None  # ledger chain itself is fine
    assert any("ledger record #1" in e and "(1 missing)" in e for e in rep.errors)


def test_message_missing_from_ledger(tmp_path):
    extra = ("bank", "coordinator", "masked_gradient", "round-0", b"secret-extra")
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG, extra])
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert not rep.ok
    assert any("record #2" in e and "does not record" in e for e in rep.errors)


def test_egress_past_truncated_ledger_is_a_warning_only(tmp_path):
    later = ("bank", "coordinator", "masked_gradient", "round-9", b"after crash")
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG, later], finish=False)
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert rep.intact and not rep.complete and not rep.ok
    assert any("past the end of the incomplete ledger" in w for w in rep.warnings)


def _failed_run(tmp_path, *, failed_party, failed_step, extra_step):
    """Round-0 matches; the bank logged one more message at ``extra_step`` that the ledger lacks;
    the coordinator then recorded the (empty) ``round-1`` step, a failure and ``run_end``."""
    ck, bk = generate_signing_key(), generate_signing_key()
    ledger_path, egress_path = tmp_path / "ledger.db", tmp_path / "egress-bank.db"
    with Ledger.create(ledger_path, ck, run_id="r1") as led:
        led.append("run_start", {"parties": {"bank": {"role": "bank", "egress_pubkey": public_key_hex(bk)}}})
        led.append(
            "step",
            {
                "step": "round-0",
                "messages": [message_entry(sender=MSG[0], recipient=MSG[1], kind=MSG[2], payload=MSG[4])],
            },
        )
        led.append("step", {"step": "round-1", "messages": []})
        led.append("failure", {"party": failed_party, "step": failed_step, "reason": "no reply within 60 s"})
        led.append("run_end", {"status": "failed"})
    with EgressLog.create(egress_path, bk, run_id="r1", node="bank") as eg:
        eg.record_sent(kind=MSG[2], recipient=MSG[1], step=MSG[3], payload=MSG[4])
        eg.record_sent(kind=MSG[2], recipient=MSG[1], step=extra_step, payload=b"reply lost with the node")
    return verify(ledger_path, public_key=ck.public_key(), egress=[egress_path])


def test_reply_lost_with_a_failed_node_is_a_warning_only(tmp_path):
    """A node killed after logging its reply but before the reply arrived: the ledger's step lacks
    the message, and the failure record names that node at that step -- not tampering."""
    rep = _failed_run(tmp_path, failed_party="bank", failed_step="round-1", extra_step="round-1")
    assert rep.ok, rep.errors
    assert any("failing at" in w and "reply never arrived" in w for w in rep.warnings)


@pytest.mark.parametrize(
    "failed_party,extra_step",
    [("centre", "round-1"), ("bank", "round-0")],
    ids=["failure-names-another-party", "message-at-an-earlier-completed-step"],
)
def test_failure_record_does_not_excuse_other_omissions(tmp_path, failed_party, extra_step):
    rep = _failed_run(tmp_path, failed_party=failed_party, failed_step="round-1", extra_step=extra_step)
    assert not rep.ok and not rep.intact
    assert any("which the ledger does not record" in e for e in rep.errors)


def test_egress_log_of_another_run(tmp_path):
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG], egress_run_id="r2")
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert not rep.ok and any("belongs to run 'r2'" in e for e in rep.errors)


def test_egress_log_signed_by_unregistered_key(tmp_path):
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG], egress_key=generate_signing_key())
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress])
    assert not rep.ok
    assert any("node_pubkey is not the node's registered key" in e for e in rep.errors)
    assert any("signature does not verify with node 'bank'" in e for e in rep.errors)


def test_auditor_node_key_overrides_and_must_match(tmp_path):
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG])
    rep = verify(
        ledger,
        public_key=ck.public_key(),
        egress=[egress],
        egress_public_keys={"bank": generate_signing_key().public_key()},
    )
    assert not rep.ok and any("auditor's key for node 'bank' differs" in e for e in rep.errors)


def test_unknown_sender_and_duplicate_egress(tmp_path):
    stranger = ("mallory", "coordinator", "x", "round-0", b"?")
    ledger, egress, ck = _run(tmp_path, ledger_msgs=[MSG, stranger], egress_msgs=[MSG])
    rep = verify(ledger, public_key=ck.public_key(), egress=[egress, egress])
    assert any("'mallory' is neither the coordinator nor a party" in e for e in rep.errors)
    assert any("two egress logs for node 'bank'" in e for e in rep.errors)


def test_missing_egress_log_file(tmp_path):
    ledger, _egress, ck = _run(tmp_path, ledger_msgs=[MSG], egress_msgs=[MSG])
    rep = verify(ledger, public_key=ck.public_key(), egress=[tmp_path / "nope.db"])
    assert not rep.ok and any("egress log: ledger file not found" in e for e in rep.errors)


def test_egress_never_stores_payload_bytes(tmp_path):
    secret = b"USCC 91330100MA2B3C4D5E label=1 income=12345"
    p = tmp_path / "e.db"
    with EgressLog.create(p, generate_signing_key(), run_id="r", node="bank") as eg:
        eg.record_sent(kind="k", recipient="coordinator", step="s", payload=secret)
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert secret not in raw and b"91330100MA2B3C4D5E" not in raw

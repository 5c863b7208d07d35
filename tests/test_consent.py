"""Consent registry: parsing, every refusal reason, filtering, and the ledger keeping counts only."""

from __future__ import annotations

import datetime as dt

import pytest

from fedcredit.consent import ConsentError, ConsentRecord, ConsentRegistry
from fedcredit.data import uscc
from fedcredit.ledger import Ledger, generate_signing_key, read_records, verify

A, B, C, D, E = (uscc.from_index(i) for i in range(5))
DAY = dt.date(2025, 6, 1)

CSV = f"""uscc,bank,purpose,scope,valid_from,valid_until,revoked_at
{A},bank-a,credit_risk_modelling,*,2024-01-01,2026-12-31,
{B},bank-a,credit_risk_modelling,*,2023-01-01,2024-12-31,
{C},bank-a,credit_risk_modelling,tax;invoice,2024-01-01,2026-12-31,2025-03-01
{D},bank-a,loan_decision,tax;invoice,2024-01-01,2026-12-31,
{E},bank-a,credit_risk_modelling,*,2025-07-01,2026-12-31,
"""


@pytest.fixture()
def registry(tmp_path):
    p = tmp_path / "consents.csv"
    p.write_text(CSV, encoding="utf-8")
    return ConsentRegistry.from_csv(p)


def test_each_reason(registry):
    crm = "credit_risk_modelling"
    assert registry.check(A, "bank-a", crm, DAY) is None
    assert registry.check(A.lower(), "bank-a", crm, DAY) is None  # ids are normalised
    assert registry.check(B, "bank-a", crm, DAY) == "expired"
    assert registry.check(C, "bank-a", crm, DAY) == "revoked"
    assert registry.check(C, "bank-a", crm, dt.date(2025, 2, 28)) is None  # before revocation
    assert registry.check(D, "bank-a", crm, DAY) == "wrong_purpose"
    assert registry.check(D, "bank-a", "loan_decision", DAY, category="tax") is None
    assert registry.check(D, "bank-a", "loan_decision", DAY, category="court") == "out_of_scope"
    assert registry.check(A, "bank-a", crm, DAY, category="court") is None  # '*' scope
    assert registry.check(E, "bank-a", crm, DAY) == "not_yet_valid"
    assert registry.check(A, "bank-b", crm, DAY) == "no_consent"
    assert registry.check(uscc.from_index(99), "bank-a", crm, DAY) == "no_consent"
    assert registry.check(A, "bank-a", crm, dt.datetime(2024, 1, 1, 9, 30)) is None  # datetime ok, inclusive
    assert registry.check(A, "bank-a", crm, dt.date(2026, 12, 31)) is None
    assert registry.check(A, "bank-a", crm, dt.date(2027, 1, 1)) == "expired"
    with pytest.raises(ConsentError, match="unknown purpose"):
        registry.check(A, "bank-a", "marketing", DAY)


def test_regranted_consent_overrides_revoked_one(registry):
    registry.add(
        ConsentRecord(C, "bank-a", "credit_risk_modelling", frozenset({"*"}), dt.date(2025, 5, 1), dt.date(2026, 1, 1))
    )
    assert registry.check(C, "bank-a", "credit_risk_modelling", DAY) is None
    registry.revoke(C, "bank-a", dt.date(2025, 5, 15))
    assert registry.check(C, "bank-a", "credit_risk_modelling", DAY) == "revoked"


def test_revoked_and_expired_are_kept_out_and_ledger_holds_counts_only(registry, tmp_path):
    """The filter that feeds PSI/inference drops revoked/expired enterprises; the ledger gets counts."""
    ids = [A, B, C, D, E, uscc.from_index(42)]
    res = registry.filter(ids, "bank-a", "credit_risk_modelling", DAY)
    assert res.allowed == [A]
    assert B not in res.allowed and C not in res.allowed
    assert res.refused == {"expired": 1, "revoked": 1, "wrong_purpose": 1, "not_yet_valid": 1, "no_consent": 1}
    assert res.refused_ids[B] == "expired" and res.refused_ids[C] == "revoked"
    assert res.mask == [True, False, False, False, False, False]
    key = generate_signing_key()
    with Ledger.create(tmp_path / "l.db", key, run_id="r") as led:
        led.append("run_start", {"parties": {}})
        led.append("consent_check", res.ledger_payload())
        led.append("run_end", {})
    assert verify(tmp_path / "l.db", public_key=key.public_key()).ok
    rec = read_records(tmp_path / "l.db")[1]
    assert rec.payload["checked"] == 6 and rec.payload["allowed"] == 1
    assert rec.payload["refused"] == {
        "expired": 1,
        "no_consent": 1,
        "not_yet_valid": 1,
        "revoked": 1,
        "wrong_purpose": 1,
    }
    raw = (tmp_path / "l.db").read_bytes()
    for code in ids:
        assert code.encode() not in raw


def test_revocation_takes_effect_from_its_day(registry):
    """The registry side; inference after a revocation runs end to end in tests/test_missing_paths.py."""
    assert registry.check(A, "bank-a", "credit_risk_modelling", DAY) is None
    registry.revoke(A, "bank-a", DAY)
    assert registry.check(A, "bank-a", "credit_risk_modelling", DAY) == "revoked"


def test_grant_all_and_csv_roundtrip(tmp_path):
    ids = uscc.generate(50, __import__("numpy").random.default_rng(0))
    reg = ConsentRegistry.grant_all(ids, "bank-a")
    assert len(reg) == 100  # both purposes
    assert reg.filter(ids, "bank-a", "loan_decision", DAY).allowed == ids
    reg.revoke(ids[3], "bank-a", dt.date(2025, 1, 1), purpose="loan_decision")
    out = reg.to_csv(tmp_path / "c.csv")
    back = ConsentRegistry.from_csv(out)
    assert sorted(map(repr, back)) == sorted(map(repr, reg))
    assert back.check(ids[3], "bank-a", "loan_decision", DAY) == "revoked"
    assert back.check(ids[3], "bank-a", "credit_risk_modelling", DAY) is None
    with pytest.raises(uscc.InvalidUSCC):
        ConsentRegistry.grant_all(["not-a-code"], "bank-a")


def test_record_validation():
    with pytest.raises(ConsentError, match="before valid_from"):
        ConsentRecord(A, "b", "loan_decision", frozenset({"*"}), dt.date(2025, 1, 2), dt.date(2025, 1, 1))
    with pytest.raises(ConsentError, match="scope is empty"):
        ConsentRecord(A, "b", "loan_decision", frozenset(), dt.date(2025, 1, 1), dt.date(2025, 1, 1))
    assert ConsentRecord(A, "b", "loan_decision", "tax;invoice", dt.date(2025, 1, 1), dt.date(2025, 1, 1)).scope == {
        "tax",
        "invoice",
    }


HEADER = "uscc,bank,purpose,scope,valid_from,valid_until,revoked_at\n"


@pytest.mark.parametrize(
    "body,match",
    [
        (
            f"{uscc.corrupt_check_character(A)},b,loan_decision,*,2024-01-01,2025-01-01,\n",
            "line 3, column 'uscc': invalid USCC",
        ),
        (f"{A},b,loan_decision,*,2024-13-01,2025-01-01,\n", "line 3, column 'valid_from': '2024-13-01' is not a date"),
        (f"{A},b,loan_decision,*,2024-01-01,,\n", "column 'valid_until': empty"),
        (f"{A},b,loan_decision,*,2025-01-01,2024-01-01,\n", "column 'valid_until': 2024-01-01 is before valid_from"),
        (f"{A},b,marketing,*,2024-01-01,2025-01-01,\n", "column 'purpose': unknown purpose 'marketing'"),
        (f"{A},b,loan_decision,Tax!,2024-01-01,2025-01-01,\n", "column 'scope': invalid data category"),
        (f"{A},,loan_decision,*,2024-01-01,2025-01-01,\n", "column 'bank': empty bank name"),
        (f"{A},b,loan_decision,*,2024-01-01,2025-01-01,2025-01-01,extra\n", "more field"),
        (f"{A},b,loan_decision\n", "missing (row has fewer fields"),
        (f"{A},b,loan_decision,*,2024-01-01,2025-01-01,yesterday\n", "column 'revoked_at'"),
    ],
)
def test_malformed_rows_name_line_and_column(tmp_path, body, match):
    p = tmp_path / "c.csv"
    p.write_text(HEADER + f"{B},b,loan_decision,*,2024-01-01,2025-01-01,\n" + body, encoding="utf-8")
    with pytest.raises(ConsentError, match=match.replace("(", r"\(")) as exc:
        ConsentRegistry.from_csv(p)
    assert "line 3" in str(exc.value)


def test_malformed_files(tmp_path):
    with pytest.raises(ConsentError, match="not found"):
        ConsentRegistry.from_csv(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConsentError, match="empty file"):
        ConsentRegistry.from_csv(tmp_path / "empty.csv")
    (tmp_path / "hdr.csv").write_text("uscc,bank,purpose,valid_from,valid_until,colour\n")
    with pytest.raises(ConsentError, match=r"missing column\(s\) scope; unknown column\(s\) 'colour'"):
        ConsentRegistry.from_csv(tmp_path / "hdr.csv")
    (tmp_path / "gbk.csv").write_bytes(HEADER.encode() + "银行".encode("gbk") + b"\n")
    with pytest.raises(ConsentError, match="not UTF-8"):
        ConsentRegistry.from_csv(tmp_path / "gbk.csv")
    (tmp_path / "bom.csv").write_bytes(
        "\ufeff".encode() + (HEADER + f"{A},b,loan_decision,*,2024-01-01,2025-01-01,\n").encode()
    )
    assert len(ConsentRegistry.from_csv(tmp_path / "bom.csv")) == 1
    # header only is a valid, empty registry; revoked_at column may be omitted
    (tmp_path / "min.csv").write_text(
        f"uscc,bank,purpose,scope,valid_from,valid_until\n{A},b,loan_decision,*,2024-01-01,2025-01-01\n"
    )
    assert len(ConsentRegistry.from_csv(tmp_path / "min.csv")) == 1

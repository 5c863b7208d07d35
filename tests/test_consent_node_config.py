"""A production node's TOML can name its consent material (docs/deploy.md): the keys reach the
handlers' node_config, and a misspelt one is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.deploy.node_config import NodeConfigError, load_node_config

SCENARIO = Path(__file__).resolve().parents[1] / "configs" / "vertical-lr.toml"


def _write(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(
        f'party = "credit_centre"\nrole = "credit_centre"\nscenario = "{SCENARIO}"\nnode-dir = "{tmp_path / "n"}"\n'
        + extra
    )
    return p


def test_consent_keys_reach_the_node_config(tmp_path):
    cfg = load_node_config(
        _write(
            tmp_path,
            'consent-issuers = ["/srv/eid.pub.jwk"]\nconsent-revocations = ["/srv/rl.jwt"]\n'
            'consent-store = "/srv/store.npz"\n',
        )
    )
    assert cfg.node_config["consent-issuers"] == ["/srv/eid.pub.jwk"]
    assert cfg.node_config["consent-revocations"] == ["/srv/rl.jwt"]
    assert cfg.node_config["consent-store"] == "/srv/store.npz"


def test_a_misspelt_consent_key_is_refused(tmp_path):
    with pytest.raises(NodeConfigError, match="consent-issuer"):
        load_node_config(_write(tmp_path, 'consent-issuer = ["/srv/eid.pub.jwk"]\n'))

"""Key material for a real deployment: TLS, SuperNode authentication and ledger signing keys.

One call makes everything a federation needs (``fedcredit keys init``); ``make_party_keys`` makes
only one party's keys, which is what a bank runs on its own machine so that its private keys never
leave it (only the two public keys travel to the coordinator's operator). Layout under ``DIR``::

    ca/ca.pem, ca/ca.key                       the federation's certificate authority
    coordinator/server.pem, server.key         SuperLink TLS certificate (SAN = --hosts)
    coordinator/ledger.key, ledger.pub         Ed25519 key that signs the run ledger
    parties/<name>/auth.key, auth.pub          SuperNode auth key pair (EC P-384, OpenSSH format,
                                               which is what Flower's SuperLink and SuperNode read)
    parties/<name>/egress.key, egress.pub      Ed25519 key that signs the node's egress log
    manifest.json                              what was made, hosts, public fingerprints

Every file is written with mode 0600 and every directory with 0700: the CA key can mint a
coordinator, an auth key can impersonate a bank, a ledger key can forge a ledger.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedcredit.ledger import save_private_key, save_public_key
from fedcredit.ledger.keys import write_private_file

PARTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
CERT_DAYS = 365
MANIFEST = "manifest.json"


class KeyMaterialError(ValueError):
    """Bad key request (party name, host, existing files) or a key file that cannot be used."""


@dataclass(frozen=True)
class PartyKeys:
    """Paths of one data node's keys."""

    name: str
    auth_key: Path
    auth_pub: Path
    egress_key: Path
    egress_pub: Path


@dataclass(frozen=True)
class FederationKeys:
    """Paths of everything ``init_keys`` made (or found) under ``root``."""

    root: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    ledger_key: Path
    ledger_pub: Path
    hosts: tuple[str, ...]
    parties: dict[str, PartyKeys] = field(default_factory=dict)

    def party(self, name: str) -> PartyKeys:
        if name not in self.parties:
            raise KeyMaterialError(
                f"no keys for party {name!r} under {self.root} "
                f"(have: {', '.join(sorted(self.parties)) or 'none'}); "
                f"run `fedcredit keys init --out {self.root} --parties ...`"
            )
        return self.parties[name]


def write_peers_file(fk: FederationKeys, parties: list[str], path: str | os.PathLike[str]) -> Path:
    """The peers file a node's operator gives its SuperNode (node_config ``peer-keys``): each
    party's Ed25519 node (egress) public key as hex. Every envelope a node accepts must be signed
    by the key listed here for its sender; operators compare these fingerprints out of band."""
    from fedcredit.ledger import load_public_key, public_key_hex

    peers = {name: public_key_hex(load_public_key(fk.party(name).egress_pub)) for name in parties}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(peers, indent=2, sort_keys=True))
    return p


# -- file helpers ---------------------------------------------------------------------------------
def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_0600(path: Path, data: bytes) -> Path:
    _private_dir(path.parent)
    return write_private_file(path, data)


def check_party_name(name: str) -> str:
    """Party names become directory names and Flower node-config values: keep them plain."""
    if not PARTY_NAME.match(name):
        raise KeyMaterialError(
            f"invalid party name {name!r}: use lowercase letters, digits and '_', "
            "starting with a letter (e.g. bank_a, credit_centre)"
        )
    return name


def parse_hosts(hosts: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Split and validate the coordinator's host names / IP addresses for the certificate SAN."""
    items = hosts.split(",") if isinstance(hosts, str) else list(hosts)
    out = tuple(h.strip() for h in items if h.strip())
    if not out:
        raise KeyMaterialError("--hosts is empty: give at least one IP address or DNS name of the coordinator")
    for h in out:
        try:
            ipaddress.ip_address(h)
        except ValueError:
            if not re.match(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$", h):
                raise KeyMaterialError(f"invalid host {h!r}: not an IP address or DNS name") from None
    return out


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# -- TLS --------------------------------------------------------------------------------------------
def _make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=CERT_DAYS * 5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: tuple[str, ...]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedcredit coordinator"),
                    x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=CERT_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def certificate_hosts(cert_path: str | os.PathLike[str]) -> list[str]:
    """The SAN entries (IP addresses and DNS names) of a PEM certificate, as strings."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in san.get_values_for_type(x509.IPAddress)] + list(san.get_values_for_type(x509.DNSName))


# -- party keys -------------------------------------------------------------------------------------
def _party_paths(root: Path, name: str) -> PartyKeys:
    d = root / "parties" / name
    return PartyKeys(
        name=name,
        auth_key=d / "auth.key",
        auth_pub=d / "auth.pub",
        egress_key=d / "egress.key",
        egress_pub=d / "egress.pub",
    )


def make_party_keys(root: str | os.PathLike[str], name: str, *, overwrite: bool = False) -> PartyKeys:
    """One data node's SuperNode auth key pair (EC P-384, OpenSSH) and Ed25519 egress key."""
    check_party_name(name)
    _private_dir(Path(root) / "parties")
    pk = _party_paths(Path(root), name)
    if not overwrite and any(p.exists() for p in (pk.auth_key, pk.egress_key)):
        raise KeyMaterialError(
            f"keys for party {name!r} already exist under {pk.auth_key.parent}; "
            "refusing to overwrite (a registered SuperNode key would stop working)"
        )
    auth = ec.generate_private_key(ec.SECP384R1())
    _write_0600(
        pk.auth_key,
        auth.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    _write_0600(
        pk.auth_pub,
        auth.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + f" fedcredit-{name}\n".encode(),
    )
    egress = Ed25519PrivateKey.generate()
    save_private_key(egress, pk.egress_key)
    save_public_key(egress, pk.egress_pub)
    os.chmod(pk.auth_key.parent, 0o700)
    return pk


def load_auth_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """Load a SuperNode auth public key (OpenSSH line) and check it is on a NIST curve."""
    p = Path(path)
    try:
        key = serialization.load_ssh_public_key(p.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"{p}: not an OpenSSH public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{p}: SuperNode auth keys must be EC (NIST P-256/384/521), got {type(key).__name__}")
    return key


def fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a public key file's bytes: what operators compare over a second channel."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- the whole federation ---------------------------------------------------------------------------
def _layout(root: Path, hosts: tuple[str, ...], parties: list[str]) -> FederationKeys:
    return FederationKeys(
        root=root,
        ca_cert=root / "ca" / "ca.pem",
        ca_key=root / "ca" / "ca.key",
        server_cert=root / "coordinator" / "server.pem",
        server_key=root / "coordinator" / "server.key",
        ledger_key=root / "coordinator" / "ledger.key",
        ledger_pub=root / "coordinator" / "ledger.pub",
        hosts=hosts,
        parties={n: _party_paths(root, n) for n in parties},
    )


def init_keys(
    root: str | os.PathLike[str],
    parties: list[str] | tuple[str, ...],
    *,
    hosts: str | list[str] | tuple[str, ...] = ("127.0.0.1",),
    overwrite: bool = False,
) -> FederationKeys:
    """Make a CA, the coordinator's TLS certificate and ledger key, and every party's keys."""
    root = Path(root).resolve()
    host_t = parse_hosts(hosts)
    names = [check_party_name(p.strip()) for p in parties if p.strip()]
    if len(set(names)) != len(names):
        raise KeyMaterialError(f"party names repeat: {names}")
    fk = _layout(root, host_t, names)
    if not overwrite and (fk.ca_key.exists() or (root / MANIFEST).exists()):
        raise KeyMaterialError(
            f"{root} already holds federation keys; refusing to overwrite (use load_keys, or another directory)"
        )
    _private_dir(root)
    ca_key, ca_cert = _make_ca("fedcredit federation CA")
    _write_0600(fk.ca_key, _pem_key(ca_key))
    _write_0600(fk.ca_cert, _pem_cert(ca_cert))
    srv_key, srv_cert = _make_server_cert(ca_key, ca_cert, host_t)
    _write_0600(fk.server_key, _pem_key(srv_key))
    _write_0600(fk.server_cert, _pem_cert(srv_cert))
    ledger = Ed25519PrivateKey.generate()
    save_private_key(ledger, fk.ledger_key)
    save_public_key(ledger, fk.ledger_pub)
    for name in names:
        make_party_keys(root, name, overwrite=overwrite)
    _write_manifest(fk)
    return fk


def _write_manifest(fk: FederationKeys) -> None:
    manifest = {
        "hosts": list(fk.hosts),
        "ca_sha256": fingerprint(fk.ca_cert),
        "ledger_pub_sha256": fingerprint(fk.ledger_pub),
        "parties": {
            n: {"auth_pub_sha256": fingerprint(p.auth_pub), "egress_pub_sha256": fingerprint(p.egress_pub)}
            for n, p in fk.parties.items()
        },
    }
    _write_0600(fk.root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())


def load_keys(root: str | os.PathLike[str]) -> FederationKeys:
    """Find the keys ``init_keys`` made; checks every file is there and private."""
    root = Path(root).resolve()
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise KeyMaterialError(
            f"{root} holds no federation keys ({MANIFEST} missing); "
            f"run `fedcredit keys init --out {root} --parties ...`"
        )
    manifest = json.loads(mpath.read_text())
    fk = _layout(root, tuple(manifest["hosts"]), sorted(manifest["parties"]))
    files = [fk.ca_cert, fk.server_cert, fk.server_key, fk.ledger_key, fk.ledger_pub]
    for p in fk.parties.values():
        files += [p.auth_key, p.auth_pub, p.egress_key, p.egress_pub]
    for f in files:
        if not f.is_file():
            raise KeyMaterialError(f"key file missing: {f}")
        if f.stat().st_mode & 0o077:
            raise KeyMaterialError(
                f"{f} is readable by others (mode {oct(f.stat().st_mode & 0o777)}); run `chmod 600` on it"
            )
    return fk


def ensure_keys(
    root: str | os.PathLike[str], parties: list[str], *, hosts: str | tuple[str, ...] = ("127.0.0.1",)
) -> FederationKeys:
    """Load the keys under ``root``, making them first if absent; add keys for new parties."""
    root = Path(root).resolve()
    if not (root / MANIFEST).exists():
        return init_keys(root, parties, hosts=hosts)
    fk = load_keys(root)
    missing = [p for p in parties if p not in fk.parties]
    if missing:
        for name in missing:
            make_party_keys(root, name)
        fk = _layout(root, fk.hosts, sorted(set(fk.parties) | set(missing)))
        _write_manifest(fk)
    return fk


def describe(fk: FederationKeys) -> dict:
    """JSON-friendly summary (paths and fingerprints, never key material)."""
    d = asdict(fk)
    return json.loads(json.dumps(d, default=str))

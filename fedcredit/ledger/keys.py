"""Ed25519 signing keys of the ledger writers (coordinator) and of the data nodes (egress logs).

Keys are stored as PEM files readable only by their owner (mode 0600): a leaked coordinator key
lets anyone forge a whole ledger, which is exactly what an auditor's ``--pubkey`` check is there to
catch, so the private key deserves the same care as a TLS key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedcredit.ledger.records import LedgerError

PUBKEY_HEX_LEN = 64


def generate_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable only by its owner (0600 from creation, not after the
    fact, so no other user can open it in between); makes missing parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT: set it
    return path


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM with mode 0600."""
    p = Path(path)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(p, pem)
    return p


def save_public_key(pub: Ed25519PublicKey | Ed25519PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write the public key as SubjectPublicKeyInfo PEM (mode 0600 like every key file we write)."""
    if isinstance(pub, Ed25519PrivateKey):
        pub = pub.public_key()
    p = Path(path)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_private_file(p, pem)
    return p


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise LedgerError(f"{what} file not found: {p}")
    return p.read_bytes()


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise LedgerError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(f"{path}: expected an Ed25519 private key, got {type(key).__name__}")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM; a private-key PEM is accepted (its public half is used)."""
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            priv = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise LedgerError(f"{path}: not a PEM public key ({exc})") from None
        key = priv.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise LedgerError(f"{path}: expected an Ed25519 public key, got {type(key).__name__}")
    return key


def public_key_hex(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Raw 32-byte public key as 64 lowercase hex characters (how keys appear inside records)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(text)
        if len(raw) != 32 or raw.hex() != text:
            raise ValueError("need 64 lowercase hex characters")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise LedgerError(f"invalid Ed25519 public key hex {text!r}: {exc}") from None


def sign_hash(key: Ed25519PrivateKey, hash_hex: str) -> str:
    """Signature (hex) over the 32 raw bytes of a record hash."""
    return key.sign(bytes.fromhex(hash_hex)).hex()


def signature_valid(pub: Ed25519PublicKey, hash_hex: str, sig_hex: str) -> bool:
    try:
        pub.verify(bytes.fromhex(sig_hex), bytes.fromhex(hash_hex))
    except (InvalidSignature, ValueError):
        return False
    return True

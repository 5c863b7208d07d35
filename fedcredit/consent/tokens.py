"""Consent tokens: an enterprise's authorisation as a JWT signed with EdDSA (Ed25519).

Why a JWT: every party (bank, centre, auditor) can check it with a standard library and the
issuer's public key, without trusting whoever handed it over. Why PyJWT: it is the most widely
used, small, well-kept JOSE library for Python and signs EdDSA through ``cryptography`` (already
a dependency); joserfc would also do, but adds nothing this needs (docs/consent.md).

Claims (all required)::

    iss      the issuer: the enterprise, or the platform's enterprise-identity service acting for it
    sub      the enterprise's USCC
    aud      [bank, credit centre]: both parties the authorisation names
    purpose  e.g. "credit_risk_modelling"
    cats     the centre's data categories it covers, e.g. ["tax", "court"] (see fedcredit.data.schema)
    nbf/exp  validity window, seconds since the epoch (exp exclusive)
    jti      the token id, what a revocation list names
    iat      when it was issued

The header carries ``kid`` = the issuer name, so a verifier picks the key without trusting the
claims first. Issuer keys travel as JWKs (RFC 8037 OKP/Ed25519) with ``kid`` = issuer name.

Hot paths (signing demo tokens, verifying a first sighting of 1M tokens) use a raw Ed25519 API
on the compact serialisation directly: libsodium's through PyNaCl when installed (verification
~55 us against OpenSSL's ~105 us through ``cryptography``; a stricter check: it also refuses
small-order keys and R points, which an honest signer never produces), else ``cryptography``'s.
Both produce the same deterministic RFC 8032 signatures. PyJWT's per-token overhead
(parsing the header twice, generic dispatch) cost as much as the signature check itself. The bytes
are the ones PyJWT writes (same header and claim JSON, same base64url), which tests check byte for
byte, and PyJWT verifies them; the verifier here is *stricter* than PyJWT's (strict base64url, no
``crit``/``b64`` header, exactly three segments), never laxer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from fedcredit.data import uscc as uscc_mod

try:  # libsodium: twice as fast as OpenSSL's Ed25519 verification (pyproject.toml: pynacl)
    from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    from nacl.exceptions import BadSignatureError

    ED25519_BACKEND = "libsodium"
except ImportError:  # pragma: no cover - pynacl is a dependency; cryptography alone still works
    ED25519_BACKEND = "cryptography"

ALG = "EdDSA"
TOKEN_TYP = "fedcredit-consent+jwt"
REVOCATION_TYP = "fedcredit-revocations+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "aud", "purpose", "cats", "nbf", "exp", "jti", "iat")


class TokenError(ValueError):
    """A token, key or revocation list that cannot be used; the message says which and why."""


class TokenRejected(TokenError):
    """A token that does not verify; ``reason`` is the ledger's refusal reason (e.g. ``forged``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# -- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuerKey:
    """An issuer's public key and name (its JWK ``kid``); every party knows these."""

    name: str
    key: Ed25519PublicKey

    @functools.cached_property
    def raw(self) -> bytes:
        return self.key.public_bytes_raw()

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message`` (libsodium when
        available, else ``cryptography``; see the module docstring)."""
        if len(signature) != 64:
            return False
        if ED25519_BACKEND == "libsodium":
            try:
                crypto_sign_open(signature + message, self.raw)
            except BadSignatureError:
                return False
            return True
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the raw public key, hex: what the ledger and the audit report name."""
        return hashlib.sha256(self.raw).hexdigest()

    def to_jwk(self) -> dict[str, Any]:
        jwk = json.loads(OKPAlgorithm.to_jwk(self.key))
        return {**jwk, "kid": self.name, "alg": ALG, "use": "sig"}

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], where: str = "JWK") -> IssuerKey:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise TokenError(f"{where}: an issuer key must be an Ed25519 OKP JWK (kty OKP, crv Ed25519)")
        if "d" in jwk:
            raise TokenError(f"{where}: holds a private key; give the issuer's public JWK only")
        name = jwk.get("kid")
        if not isinstance(name, str) or not name:
            raise TokenError(f"{where}: the JWK needs a 'kid' naming the issuer")
        key = OKPAlgorithm.from_jwk(json.dumps(dict(jwk)))
        if not isinstance(key, Ed25519PublicKey):
            raise TokenError(f"{where}: not an Ed25519 public key")
        return cls(name, key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IssuerKey:
        p = Path(path)
        if not p.is_file():
            raise TokenError(f"issuer key file not found: {p}")
        try:
            jwk = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenError(f"{p}: not a JSON Web Key ({exc})") from None
        return cls.from_jwk(jwk, str(p))


def load_issuer_keys(paths: Iterable[str | os.PathLike[str]]) -> dict[str, IssuerKey]:
    """Issuer name -> key from JWK files; two files for the same issuer name are refused."""
    keys: dict[str, IssuerKey] = {}
    for p in paths:
        k = IssuerKey.load(p)
        if k.name in keys:
            raise TokenError(f"{p}: a second key for issuer {k.name!r}")
        keys[k.name] = k
    return keys


class Issuer:
    """Holds an issuer's private key: signs consent tokens and revocation lists."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey):
        self.name = name
        self._key = private_key
        self.public = IssuerKey(name, private_key.public_key())
        self._sodium_sk = (
            crypto_sign_seed_keypair(private_key.private_bytes_raw())[1] if ED25519_BACKEND == "libsodium" else b""
        )
        self._headers: dict[str, bytes] = {}  # typ -> encoded header segment

    @classmethod
    def generate(cls, name: str) -> Issuer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Issuer:
        """Deterministic key from a 32-byte seed: for *demo* issuers only (the seed is public)."""
        return cls(name, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fedcredit demo issuer" + seed).digest()))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """The private JWK, written owner-only."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        jwk = {**json.loads(OKPAlgorithm.to_jwk(self._key)), "kid": self.name, "alg": ALG}
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(jwk, fh)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Issuer:
        p = Path(path)
        try:
            jwk = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenError(f"{p}: not an issuer private JWK ({exc})") from None
        key = OKPAlgorithm.from_jwk(json.dumps(jwk))
        if not isinstance(key, Ed25519PrivateKey) or not jwk.get("kid"):
            raise TokenError(f"{p}: not an Ed25519 private JWK with a 'kid'")
        return cls(str(jwk["kid"]), key)

    def issue(
        self,
        subject: str,
        audience: Iterable[str],
        purpose: str,
        categories: Iterable[str],
        not_before: int,
        expires: int,
        *,
        token_id: str | None = None,
        issued_at: int | None = None,
    ) -> str:
        """A compact JWS for one authorisation (``subject`` is validated as a USCC)."""
        aud = sorted(set(audience))
        cats = sorted(set(categories))
        if not aud or not cats:
            raise TokenError("a consent token needs at least one audience and one data category")
        if expires <= not_before:
            raise TokenError(f"expiry {expires} is not after not-before {not_before}")
        claims = {
            "iss": self.name,
            "sub": uscc_mod.validate(subject),
            "aud": aud,
            "purpose": purpose,
            "cats": cats,
            "nbf": int(not_before),
            "exp": int(expires),
            "iat": int(not_before if issued_at is None else issued_at),
            "jti": token_id or uuid.uuid4().hex,
        }
        return self._sign(claims, TOKEN_TYP)

    def _sign(self, claims: Mapping[str, Any], typ: str) -> str:
        """The compact JWS PyJWT's ``jwt.encode(claims, key, "EdDSA", headers={"kid", "typ"})``
        writes (sorted compact header, compact claims in insertion order), signed with the raw
        Ed25519 API: half the cost per token."""
        head = self._headers.get(typ)
        if head is None:
            header = {"alg": ALG, "kid": self.name, "typ": typ}
            head = self._headers[typ] = _b64e(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        signing_input = head + b"." + _b64e(json.dumps(claims, separators=(",", ":")).encode())
        return (signing_input + b"." + _b64e(self.sign_raw(signing_input))).decode("ascii")

    def sign_raw(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic: the same from either backend)."""
        if self._sodium_sk:
            return bytes(crypto_sign(message, self._sodium_sk)[:64])
        return self._key.sign(message)

    def revocation_list(self, version: int, token_ids: Iterable[str], issued_at: int) -> str:
        """A signed, versioned list of revoked token ids (a later version supersedes)."""
        claims = {"iss": self.name, "version": int(version), "iat": int(issued_at), "revoked": sorted(set(token_ids))}
        return self._sign(claims, REVOCATION_TYP)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """The verified claims of one token."""

    iss: str
    sub: str
    aud: tuple[str, ...]
    purpose: str
    cats: tuple[str, ...]
    nbf: int
    exp: int
    jti: str
    iat: int


_STD = bytes.maketrans(b"-_", b"+/")
_HEADERS: dict[tuple[bytes, str], dict[str, Any]] = {}  # (header segment, typ) -> checked header
_HEADER_CACHE_MAX = 256


def _b64e(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64d(seg: bytes) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2): any other character is an error (Python's
    lenient decoder would skip it, so two spellings could carry one signature)."""
    if b"=" in seg or b"+" in seg or b"/" in seg:
        raise binascii.Error("not unpadded base64url")
    return base64.b64decode(seg.translate(_STD) + b"=" * (-len(seg) % 4), validate=True)


def _header(seg: bytes, typ: str, issuers: Mapping[str, IssuerKey]) -> dict[str, Any]:
    """The header's checks (algorithm, type, trusted kid), cached per header segment: all tokens
    of one issuer share one header, so it is parsed once, not once per token."""
    hit = _HEADERS.get((seg, typ))
    if hit is None:
        try:
            hit = json.loads(_b64d(seg))
        except (binascii.Error, ValueError) as exc:
            raise TokenRejected("malformed", f"not a compact JWS (header: {exc})") from None
        if not isinstance(hit, dict):
            raise TokenRejected("malformed", "not a compact JWS (header is not a JSON object)")
        if hit.get("alg") != ALG:
            raise TokenRejected("forged", f"algorithm {hit.get('alg')!r} is not {ALG}")
        if hit.get("typ") != typ:
            raise TokenRejected("malformed", f"type {hit.get('typ')!r} is not {typ}")
        if "crit" in hit or "b64" in hit:
            raise TokenRejected("malformed", "header parameters 'crit'/'b64' are not accepted")
        if not isinstance(hit.get("kid"), str):
            raise TokenRejected("unknown_issuer", f"issuer {hit.get('kid')!r} is not a trusted issuer")
        if len(_HEADERS) < _HEADER_CACHE_MAX:
            _HEADERS[(seg, typ)] = hit
    kid = hit["kid"]
    if kid not in issuers:
        raise TokenRejected("unknown_issuer", f"issuer {kid!r} is not a trusted issuer")
    return hit


def _verify(token: str | bytes, issuers: Mapping[str, IssuerKey], typ: str) -> dict[str, Any]:
    """Header checks, one raw Ed25519 check over ``header.payload``, then the claims (parsed
    once). PyJWT's time/audience validation is not wanted here: those checks are per run."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else bytes(token)
    parts = raw.split(b".")
    if len(parts) != 3:
        raise TokenRejected("malformed", f"not a compact JWS ({len(parts)} segments, expected 3)")
    head, body, sig_seg = parts
    kid = _header(head, typ, issuers)["kid"]
    try:
        sig = _b64d(sig_seg)
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("malformed", f"signature is not base64url ({exc})") from None
    if not issuers[kid].verifies(sig, raw[: len(head) + 1 + len(body)]):
        raise TokenRejected("forged", f"signature does not verify under issuer {kid!r}'s key") from None
    try:
        claims = json.loads(_b64d(body))
    except (binascii.Error, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TokenRejected("malformed", f"claims are not base64url JSON ({exc})") from None
    if not isinstance(claims, dict):
        raise TokenRejected("malformed", "claims are not a JSON object")
    if claims.get("iss") != kid:
        raise TokenRejected("forged", f"claims name issuer {claims.get('iss')!r} but the header names {kid!r}")
    return claims


def verify_token(token: str | bytes, issuers: Mapping[str, IssuerKey]) -> Grant:
    """The token's claims once its signature verifies under its issuer's key.

    Only the signature and the claims' shape are checked here; audience, purpose, categories,
    validity window and revocation depend on the run and are checked per run
    (:mod:`fedcredit.consent.check`), so a token verified once can be re-checked cheaply later.
    """
    claims = _verify(token, issuers, TOKEN_TYP)
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise TokenRejected("malformed", f"missing claim(s) {', '.join(missing)}")
    try:
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        grant = Grant(
            iss=str(claims["iss"]),
            sub=str(claims["sub"]),  # compared with the row's (validated) USCC per run
            aud=tuple(str(a) for a in aud),
            purpose=str(claims["purpose"]),
            cats=tuple(str(c) for c in claims["cats"]),
            nbf=int(claims["nbf"]),
            exp=int(claims["exp"]),
            jti=str(claims["jti"]),
            iat=int(claims["iat"]),
        )
    except (TypeError, ValueError) as exc:
        raise TokenRejected("malformed", f"bad claim value ({exc})") from None
    return grant


@dataclass(frozen=True)
class RevocationList:
    """A verified revocation list: issuer, version and the revoked token ids."""

    iss: str
    version: int
    iat: int
    revoked: frozenset[str]

    @classmethod
    def verify(
        cls, token: str | bytes, issuers: Mapping[str, IssuerKey], where: str = "revocation list"
    ) -> RevocationList:
        try:
            claims = _verify(token, issuers, REVOCATION_TYP)
            return cls(str(claims["iss"]), int(claims["version"]), int(claims["iat"]), frozenset(claims["revoked"]))
        except TokenRejected as exc:
            raise TokenError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenError(f"{where}: malformed ({exc!r})") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str], issuers: Mapping[str, IssuerKey]) -> RevocationList:
        p = Path(path)
        if not p.is_file():
            raise TokenError(f"revocation list not found: {p}")
        return cls.verify(p.read_text(encoding="utf-8").strip(), issuers, str(p))


def read_tokens(path: str | os.PathLike[str]) -> list[str]:
    """Tokens from a file, one compact JWS per line (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    if not p.is_file():
        raise TokenError(f"consent token file not found: {p}")
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s)
    return out


def unverified_subject(token: str) -> str | None:
    """The ``sub`` claim *without* verification: only to file a token under its enterprise.

    Parsed directly (three segments, a JSON-object header, the payload's ``sub``), as PyJWT's
    unverified decode would, at a fraction of its cost: a bank files every token of its file
    this way (1M tokens: seconds, not half a minute). The centre verifies every claim anyway."""
    try:
        parts = token.encode("ascii").split(b".")
        if len(parts) != 3:
            return None
        if not isinstance(json.loads(_b64d(parts[0])), dict):
            return None
        claims = json.loads(_b64d(parts[1]))
    except (UnicodeError, binascii.Error, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None

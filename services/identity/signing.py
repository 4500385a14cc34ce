"""Key material: ES256 key pairs, their encryption at rest, and signing access tokens with them (joserfc)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from .domain import SIGNING_ALGORITHM

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068: a JWT access token, not an ID token


class KeyMaterialError(RuntimeError):
    """A private key cannot be read: wrong passphrase, or not an EC P-256 key. The message says which."""


def generate_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


def kid_of(key: ECKey) -> str:
    """The key's RFC 7638 thumbprint: the same key always gets the same id, on every replica."""
    return key.thumbprint()


def public_jwk(key: ECKey) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": kid_of(key), "use": "sig", "alg": SIGNING_ALGORITHM}


def seal(key: ECKey, passphrase: str | None) -> str:
    """The private key as PKCS#8 PEM, encrypted with the passphrase when there is one."""
    return key.as_pem(private=True, password=passphrase).decode("ascii")


def unseal(pem: str | bytes, passphrase: str | None) -> ECKey:
    try:
        key = ECKey.import_key(pem, password=passphrase)
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyMaterialError(f"the private key cannot be read ({exc.__class__.__name__}): check the passphrase") from None
    if not key.is_private or key.as_dict().get("crv") != "P-256":
        raise KeyMaterialError("the signing key must be an EC P-256 private key")
    return key


def load_key_file(path: Path, passphrase: str | None) -> ECKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read the signing key file {path}: {exc.strerror}") from None
    return unseal(pem, passphrase)


def sign(claims: dict[str, Any], key: ECKey) -> str:
    header = {"alg": SIGNING_ALGORITHM, "kid": kid_of(key), "typ": ACCESS_TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[SIGNING_ALGORITHM])

"""Secrets and passwords: generated at random, stored only as argon2 hashes (pwdlib), checked off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from functools import cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane): a guess costs memory, a sign-in stays fast.
HASHER = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def refresh_hash(token: str) -> str:
    """How a refresh token is kept: 256 random bits need no slow hash, and a SHA-256 can be looked up by value."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_client_id(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def hashed(secret: str) -> str:
    return await asyncio.to_thread(HASHER.hash, secret)


@cache
def _decoy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


async def matches(secret: str, hashes: Sequence[str]) -> bool:
    """Does the secret match any of the hashes? With no hashes (an unknown account) a decoy is checked,
    so an unknown name takes as long to refuse as a wrong password."""

    def check() -> bool:
        if not hashes:
            HASHER.verify(secret, _decoy_hash())
            return False
        return any(HASHER.verify(secret, h) for h in hashes)

    return await asyncio.to_thread(check)

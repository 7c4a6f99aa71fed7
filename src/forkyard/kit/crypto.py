"""Tokens, hashes and symmetric encryption for secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """A lookup hash for high-entropy tokens (sessions, API keys, email links): SHA-256 is enough
    because the input is random, not a password."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@lru_cache(maxsize=8)
def _derived_key(secret_key: str, purpose: str) -> bytes:
    return hashlib.blake2b(secret_key.encode(), key=purpose.encode()[:64], digest_size=32).digest()


def encrypt(secret_key: str, purpose: str, plaintext: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_derived_key(secret_key, purpose)).encrypt(nonce, plaintext.encode(), None)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt(secret_key: str, purpose: str, token: str) -> str:
    raw = base64.urlsafe_b64decode(token.encode())
    return AESGCM(_derived_key(secret_key, purpose)).decrypt(raw[:12], raw[12:], None).decode()

"""Virtual API keys: made here, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets as random

KEY_PREFIX = "mw-"


def new_key() -> str:
    """256 random bits, URL-safe, recognisable by its prefix (secret scanners, humans)."""
    return KEY_PREFIX + random.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """Enough of the key to tell it apart in a list, too little to use."""
    return key[: len(KEY_PREFIX) + 6] + "..."


def new_id(kind: str) -> str:
    return f"{kind}_{random.token_hex(8)}"

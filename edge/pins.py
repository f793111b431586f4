"""PINs are never stored: only HMAC-SHA256 under a per-appliance key kept in the data directory.

An HMAC rather than a slow password hash: a PIN has at most 10^6 values, so no hash makes a
stolen database safe on its own; the key, kept out of the database (0600), does. And the
door needs a lookup by PIN, which a salted hash cannot give.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from edge import const


class PinKeyError(RuntimeError):
    """The PIN key file exists but cannot be used."""


def is_valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and const.PIN_MIN_DIGITS <= len(pin) <= const.PIN_MAX_DIGITS


class PinHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise PinKeyError("PIN key is too short")
        # Keyed once; copying the keyed state is ~3x cheaper than re-keying per PIN (a roster
        # of 30,000 people hashes every PIN on each sync).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, pin: str) -> str:
        mac = self._keyed.copy()
        mac.update(pin.encode("ascii"))
        return mac.hexdigest()

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> PinHasher:
        return cls(load_or_create_key(data_dir / const.PIN_KEY_FILE))


def load_or_create_key(path: Path) -> bytes:
    """Read the key, creating it (0600, atomically) on first start."""
    if path.exists():
        key = path.read_bytes()
        if len(key) != const.PIN_KEY_BYTES:
            raise PinKeyError(f"{path} holds {len(key)} bytes, expected {const.PIN_KEY_BYTES}")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(const.PIN_KEY_BYTES)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link, not rename: if another process made the key meanwhile, keep theirs.
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key

"""Secrets at the edges: webhook tokens, password hashes, and credential encryption.

Webhook tokens are stored only as their SHA-256 (the token itself is shown once, at creation);
a lookup by hash needs no constant-time compare, but comparing a presented token with a known one
does, so ``tokens_equal`` exists for that.

Broker credentials are encrypted with AES-256-GCM under a master key that never enters the
database; each ciphertext is stored beside the id of its key, so keys can be rotated (a key file
lists several keys, the first encrypts) and a missing key is named instead of guessed at.
Every secret that passes through here is registered with the log redactor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog
from argon2 import PasswordHasher
from argon2 import exceptions as argon2_exc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jtrades.config import Settings
from jtrades.errors import ConfigError, SecretKeyMissing
from jtrades.logging import register_secret

log = structlog.get_logger(__name__)

TOKEN_BYTES = 32


def new_webhook_token() -> str:
    """32 random bytes, URL-safe base64 without padding (43 characters, safe in a URL path)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> bytes:
    """SHA-256 of a token: what the database stores and the webhook looks up (32 bytes)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def tokens_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison, so response timing reveals nothing about a token."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)


# --- passwords ----------------------------------------------------------------------------
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string with its own salt and parameters)."""
    register_secret(password)
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; a malformed hash is a mismatch, not a crash."""
    register_secret(password)
    try:
        return _hasher.verify(stored_hash, password)
    except (argon2_exc.VerificationError, argon2_exc.InvalidHashError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's: rehash on next login."""
    return _hasher.check_needs_rehash(stored_hash)


# --- credential encryption ----------------------------------------------------------------
KEY_BYTES = 32  # AES-256-GCM
NONCE_BYTES = 12
ENV_KEY = "JTRADES_SECRET_KEY"
GENERATED_KEY_FILE = "secret.key"


def key_id(key: bytes) -> str:
    """A short public name for a key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def new_secret_key() -> str:
    """A fresh master key, encoded as one line of URL-safe base64 (what key files hold)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_keys(text: str, source: str) -> list[bytes]:
    """Keys from a key file or ``JTRADES_SECRET_KEY``: one per line (or comma), first = current.

    Each key is 32 bytes as base64 (URL-safe or standard) or 64 hex digits; ``#`` starts a
    comment. Errors name the source and position, never the key material.
    """
    keys: list[bytes] = []
    entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
    for pos, entry in enumerate((e for e in entries if e), start=1):
        register_secret(entry)
        key = _decode_key(entry)
        if key is None:
            raise ConfigError(
                f"{source}: key #{pos} is not 32 bytes of base64 or hex "
                "(make one with: python -c 'import secrets,base64;"
                "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')"
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ConfigError(f"{source}: holds no key")
    return keys


def _decode_key(entry: str) -> bytes | None:
    if len(entry) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(entry)
        except ValueError:
            pass
    for decode in (base64.urlsafe_b64decode, base64.standard_b64decode):
        try:
            raw = decode(entry + "=" * (-len(entry) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    return None


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext and the id of the key that wrote it (stored side by side)."""

    ciphertext: bytes
    key_id: str


class SecretBox:
    """AES-256-GCM with several keys: the first encrypts, all decrypt (rotation).

    ``context`` is bound into each ciphertext as associated data, so a value sealed as one
    account's password cannot be swapped in as another field's (or another row's) and still open.
    """

    def __init__(self, keys: list[bytes], source: str) -> None:
        if not keys:
            raise ConfigError(f"{source}: no secret key")
        self.source = source
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        self.current_key_id = key_id(keys[0])

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: str, context: str = "") -> Sealed:
        """Encrypt with the current key: nonce ‖ ciphertext+tag, plus the key id."""
        register_secret(plaintext)
        nonce = secrets.token_bytes(NONCE_BYTES)
        aead = self._keys[self.current_key_id]
        ct = aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return Sealed(nonce + ct, self.current_key_id)

    def open(self, ciphertext: bytes, key_id: str, context: str = "") -> str:
        """Decrypt; the plaintext is registered as a secret before it is returned."""
        aead = self._keys.get(key_id)
        if aead is None:
            raise SecretKeyMissing(
                f"a stored secret was encrypted with key {key_id}, which is not among the keys in "
                f"{self.source} (have: {', '.join(self._keys)}); restore that key "
                "(an old key file line) or enter the credential again"
            )
        try:
            plain = aead.decrypt(
                bytes(ciphertext[:NONCE_BYTES]),
                bytes(ciphertext[NONCE_BYTES:]),
                context.encode("utf-8"),
            )
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce and a tag
            raise SecretKeyMissing(
                f"a stored secret under key {key_id} does not decrypt with that key "
                "(the key file was edited, or the value was altered or moved to another row)"
            ) from None
        text = plain.decode("utf-8")
        register_secret(text)
        return text

    def needs_reseal(self, key_id: str) -> bool:
        """True for ciphertexts under an older key (re-encrypt them with the current one)."""
        return key_id != self.current_key_id


def load_secret_box(settings: Settings, *, create: bool) -> SecretBox:
    """The master keys: ``secrets.key_file``, else ``JTRADES_SECRET_KEY``, else ``data_dir/secret.key``.

    With none of them and ``create``, a key is generated into ``data_dir/secret.key`` (mode 0600)
    and a warning says where it is: losing it means re-entering every broker password. Without
    ``create`` (a reader), a missing key file gives a box with no usable key for any ciphertext.
    """
    if settings.secrets.key_file:
        path = Path(settings.secrets.key_file).expanduser()
        try:
            return SecretBox(_read_key_file(path), str(path))
        except ConfigError as exc:
            # named as the setting too: the file is the one the operator chose, and its path
            # alone ("secret key file not found: /etc/jtrades/key") did not say where it came from
            raise ConfigError(f"secrets.key_file: {exc}") from None
    env = os.environ.get(ENV_KEY, "")
    if env.strip():
        return SecretBox(parse_keys(env, ENV_KEY), ENV_KEY)
    path = settings.data_dir / GENERATED_KEY_FILE
    if path.exists() or not create:
        if not path.exists():
            raise SecretKeyMissing(
                f"no secret key: set secrets.key_file or {ENV_KEY}, or restore {path}"
            )
        return SecretBox(_read_key_file(path), str(path))
    return SecretBox(_create_key_file(path), str(path))


def _read_key_file(path: Path) -> list[bytes]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"secret key file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read secret key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        # raw key bytes (head -c32 /dev/urandom): the decoder's message would quote them
        raise ConfigError(
            f"secret key file {path} is not text: it holds keys as base64 or hex, one a line"
        ) from None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("secrets.key_file_permissions", path=str(path), hint=f"chmod 600 {path}")
    return parse_keys(text, str(path))


def _create_key_file(path: Path) -> list[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not write two different keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    key = new_secret_key()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    log.warning(
        "secrets.key_created",
        path=str(path),
        hint="back this file up: without it the stored broker passwords cannot be decrypted",
    )
    return parse_keys(key, str(path))

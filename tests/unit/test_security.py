"""Tokens, password hashes and credential encryption (security.py)."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from jtrades import logging as jlog
from jtrades.config import Settings
from jtrades.errors import ConfigError, SecretKeyMissing
from jtrades.security import (
    ENV_KEY,
    SecretBox,
    hash_password,
    hash_token,
    key_id,
    load_secret_box,
    new_secret_key,
    new_webhook_token,
    parse_keys,
    tokens_equal,
    verify_password,
)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


# --- tokens -------------------------------------------------------------------------------
def test_webhook_token_format_and_entropy() -> None:
    tokens = {new_webhook_token() for _ in range(200)}
    assert len(tokens) == 200
    for t in tokens:
        assert TOKEN_RE.match(t), t
        raw = base64.urlsafe_b64decode(t + "=")
        assert len(raw) == 32


@given(st.text(max_size=200))
def test_hash_token_is_sha256_32_bytes_and_deterministic(token: str) -> None:
    h = hash_token(token)
    assert len(h) == 32
    assert h == hash_token(token)
    assert h != hash_token(token + "x")


@given(st.text(max_size=50), st.text(max_size=50))
def test_tokens_equal_matches_plain_equality(a: str, b: str) -> None:
    assert tokens_equal(a, b) == (a == b)
    assert tokens_equal(a.encode(), b) == (a == b)


# --- passwords ----------------------------------------------------------------------------
def test_password_hash_is_argon2id_salted_and_verifies() -> None:
    h1 = hash_password("correct horse battery")
    h2 = hash_password("correct horse battery")
    assert h1.startswith("$argon2id$")
    assert h1 != h2  # salted
    assert verify_password(h1, "correct horse battery")
    assert not verify_password(h1, "correct horse batterY")
    assert not verify_password("not-a-hash", "correct horse battery")


# --- encryption ---------------------------------------------------------------------------
def _box(*keys: str) -> SecretBox:
    return SecretBox(parse_keys("\n".join(keys), "test"), "test")


KEY_A = new_secret_key()
KEY_B = new_secret_key()


@settings(max_examples=60)
@given(st.text(max_size=300), st.text(max_size=30))
def test_seal_open_round_trip(plaintext: str, context: str) -> None:
    box = _box(KEY_A)
    sealed = box.seal(plaintext, context)
    assert sealed.key_id == key_id(parse_keys(KEY_A, "t")[0])
    assert box.open(sealed.ciphertext, sealed.key_id, context) == plaintext
    if len(plaintext) >= 4:
        assert plaintext.encode() not in sealed.ciphertext


def test_ciphertexts_differ_each_time_nonce() -> None:
    box = _box(KEY_A)
    assert box.seal("same").ciphertext != box.seal("same").ciphertext


def test_context_binds_ciphertext_to_its_place() -> None:
    box = _box(KEY_A)
    sealed = box.seal("hunter22-secret", "accounts.password:1")
    with pytest.raises(SecretKeyMissing, match="does not decrypt"):
        box.open(sealed.ciphertext, sealed.key_id, "accounts.password:2")


def test_a_truncated_ciphertext_is_refused_like_a_tampered_one() -> None:
    """Shorter than a nonce, it raised the cipher's ValueError ("Nonce must be between 8 and
    128 bytes") instead of the message that says what to do."""
    box = _box(KEY_A)
    sealed = box.seal("hunter2-password")
    with pytest.raises(SecretKeyMissing, match="does not decrypt"):
        box.open(sealed.ciphertext[:5], sealed.key_id)


def test_tampered_ciphertext_is_refused() -> None:
    box = _box(KEY_A)
    sealed = box.seal("hunter22-secret")
    bad = bytearray(sealed.ciphertext)
    bad[-1] ^= 1
    with pytest.raises(SecretKeyMissing):
        box.open(bytes(bad), sealed.key_id)


def test_missing_key_names_the_key_id_not_the_secret() -> None:
    old = _box(KEY_A).seal("canary-pw-9c1f2e")
    with pytest.raises(SecretKeyMissing) as exc:
        _box(KEY_B).open(old.ciphertext, old.key_id)
    msg = str(exc.value)
    assert old.key_id in msg
    assert "canary-pw-9c1f2e" not in msg
    assert KEY_A not in msg
    assert KEY_B not in msg


def test_rotation_old_key_still_decrypts_new_key_encrypts() -> None:
    old_box = _box(KEY_A)
    old = old_box.seal("rotate-me-please")
    rotated = _box(KEY_B, KEY_A)  # new key first, old kept for reading
    assert rotated.open(old.ciphertext, old.key_id) == "rotate-me-please"
    assert rotated.needs_reseal(old.key_id)
    new = rotated.seal("rotate-me-please")
    assert new.key_id == rotated.current_key_id != old.key_id
    assert not rotated.needs_reseal(new.key_id)
    with pytest.raises(SecretKeyMissing):
        old_box.open(new.ciphertext, new.key_id)


def test_decrypted_secret_is_registered_for_redaction() -> None:
    box = _box(KEY_A)
    sealed = box.seal("zq-registered-canary-771")
    # A fresh box (another process) decrypting it must register it too.
    assert _box(KEY_A).open(sealed.ciphertext, sealed.key_id) == "zq-registered-canary-771"
    assert "zq-registered-canary-771" in jlog.known_secrets()
    assert "zq-registered-canary-771" not in jlog.scrub("x zq-registered-canary-771 y")


# --- key parsing --------------------------------------------------------------------------
def test_parse_keys_accepts_base64_hex_comments_and_commas() -> None:
    raw = os.urandom(32)
    text = f"# current\n{raw.hex()}\n\n{KEY_A}  # old\n"
    keys = parse_keys(text, "f")
    assert keys[0] == raw
    assert len(keys) == 2
    assert parse_keys(f"{KEY_A},{KEY_B}", "env") == parse_keys(f"{KEY_A}\n{KEY_B}", "f")
    std = base64.standard_b64encode(raw).decode()
    assert parse_keys(std, "f") == [raw]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "tooshort", "zz" * 32])
def test_parse_keys_rejects_bad_input_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_keys(text, "keyfile")
    assert "keyfile" in str(exc.value)
    if text.strip() and not text.startswith("#"):
        assert text not in str(exc.value)


# --- where keys come from -----------------------------------------------------------------
def _settings(tmp_path: Path, key_file: str = "") -> Settings:
    return Settings(data_dir=tmp_path / "data", secrets={"key_file": key_file})  # type: ignore[arg-type]


def test_key_generated_on_first_use_mode_0600_with_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    s = _settings(tmp_path)
    with pytest.raises(SecretKeyMissing, match="no secret key"):
        load_secret_box(s, create=False)  # a reader never invents a key
    with capture_logs() as logs:
        box = load_secret_box(s, create=True)
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [warning] = [e for e in logs if e["event"] == "secrets.key_created"]
    assert warning["log_level"] == "warning"
    assert warning["path"] == str(path)
    assert "back" in warning["hint"]
    # Second use reads the same key, silently.
    with capture_logs() as logs2:
        again = load_secret_box(s, create=True)
    assert again.current_key_id == box.current_key_id
    assert not [e for e in logs2 if e["event"] == "secrets.key_created"]
    sealed = box.seal("persisted-secret")
    assert load_secret_box(s, create=False).open(sealed.ciphertext, sealed.key_id) == (
        "persisted-secret"
    )


def test_key_file_setting_wins_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, KEY_B)
    kf = tmp_path / "keys"
    kf.write_text(f"{KEY_A}\n{KEY_B}\n")
    kf.chmod(0o600)
    box = load_secret_box(_settings(tmp_path, str(kf)), create=True)
    assert box.current_key_id == key_id(parse_keys(KEY_A, "t")[0])
    assert len(box.key_ids) == 2
    assert not (tmp_path / "data" / "secret.key").exists()
    with pytest.raises(ConfigError, match="not found"):
        load_secret_box(_settings(tmp_path, str(tmp_path / "nope")), create=True)


def test_a_key_file_of_raw_bytes_is_one_line(tmp_path: Path) -> None:
    """``head -c32 /dev/urandom > key`` is a natural mistake: read_text raised a
    UnicodeDecodeError, a traceback, and its message quoted key bytes."""
    raw = bytes(range(200, 232))
    kf = tmp_path / "raw.key"
    kf.write_bytes(raw)
    kf.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_secret_box(_settings(tmp_path, str(kf)), create=True)
    message = str(info.value)
    assert str(kf) in message
    assert "not text" in message
    assert "\n" not in message
    assert "\\x" not in message  # no key bytes quoted


def test_env_key_used_when_no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, f"{KEY_B},{KEY_A}")
    box = load_secret_box(_settings(tmp_path), create=True)
    assert box.current_key_id == key_id(parse_keys(KEY_B, "t")[0])
    assert box.source == ENV_KEY
    assert not (tmp_path / "data" / "secret.key").exists()


def test_lost_key_file_gives_secret_key_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    s = _settings(tmp_path)
    sealed = load_secret_box(s, create=True).seal("will-be-orphaned")
    (tmp_path / "data" / "secret.key").unlink()
    with pytest.raises(SecretKeyMissing):
        load_secret_box(s, create=False)
    fresh = load_secret_box(s, create=True)  # a new key cannot open the old value
    with pytest.raises(SecretKeyMissing, match=sealed.key_id):
        fresh.open(sealed.ciphertext, sealed.key_id)


def test_group_readable_key_file_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kf = tmp_path / "keys"
    kf.write_text(KEY_A + "\n")
    kf.chmod(0o644)
    with capture_logs() as logs:
        load_secret_box(_settings(tmp_path, str(kf)), create=False)
    [w] = [e for e in logs if e["event"] == "secrets.key_file_permissions"]
    assert w["hint"] == f"chmod 600 {kf}"
    kf.chmod(0o600)
    with capture_logs() as logs:
        load_secret_box(_settings(tmp_path, str(kf)), create=False)
    assert not logs

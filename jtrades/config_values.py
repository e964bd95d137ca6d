"""The values inside settings that are URLs or hosts: checked when the settings load, and
shown with their secrets cut out. Apart from ``config`` because they are plain string rules,
read by the database and daemon modules too (``redact_url``, ``url_secrets``)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

# Query parameters that carry a secret (libpq and asyncpg: password, sslpassword, passfile)...
_SECRET_PARAM = re.compile(r"pass|secret|token", re.IGNORECASE)
# ...of which these hold the secret itself (a passfile is a path: masked when shown, not cut
# from every log line).
_SECRET_VALUE_PARAM = re.compile(r"password|secret|token", re.IGNORECASE)
_PARAM = re.compile(r"([?&])([^=&#?]*)=([^&#]*)")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)@", re.DOTALL)


def redact_url(url: str) -> str:
    """``url`` without its secrets (money rule 8): the password in its userinfo and the value
    of every query parameter named like one (``password``, ``sslpassword``, ``passfile``).

    The userinfo runs to the *last* ``@``, as a password holding an unencoded ``@``, ``/`` or
    ``#`` (people paste them so) would otherwise spill its tail into the host or path: a URL
    with an ``@`` in its query may be masked more than needed, never less."""

    def param(m: re.Match[str]) -> str:
        if _SECRET_PARAM.search(unquote_plus(m.group(2))):
            return f"{m.group(1)}{m.group(2)}=***"
        return m.group(0)

    shown = _PARAM.sub(param, url)
    m = _USERINFO.match(shown)
    if m and ":" in m.group(2):
        user = m.group(2).split(":", 1)[0]
        shown = f"{m.group(1)}{user}:***@{shown[m.end() :]}"
    return shown


def url_secrets(url: str) -> set[str]:
    """The secret values in ``url`` (see ``redact_url``), as written and percent-decoded, for
    the log scrubber: a driver's message may quote them outside any URL."""
    found: set[str] = set()
    for m in _PARAM.finditer(url):
        if _SECRET_VALUE_PARAM.search(unquote_plus(m.group(2))):
            found.update((m.group(3), unquote_plus(m.group(3)), unquote(m.group(3))))
    auth = _USERINFO.match(url)
    if auth and ":" in auth.group(2):
        userinfo = auth.group(2)
        # the driver splits at the first "@", redact_url at the last: hold both readings
        for password in (userinfo.split(":", 1)[1], userinfo.split("@", 1)[0].partition(":")[2]):
            found.update((password, unquote(password)))
    found.discard("")
    return found


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_KEYWORD = re.compile(r"^\s*[A-Za-z_]+\s*=")
_PORT = re.compile(r"^[0-9]{1,5}$")


def check_url(value: str, schemes: tuple[str, ...], what: str, *, secret: bool = False) -> str:
    """``value`` if it is a URL of one of ``schemes`` with sane ports; else a ``ValueError``.

    A ``secret`` one (it may hold a password) is described, never quoted: a value that is no
    URL (libpq's ``host=… password=…``, a scheme left out) keeps its password where
    ``redact_url`` does not look."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.query):
        got = _what_it_is(value, schemes) if secret else repr(redact_url(value))
        raise ValueError(f"{what} must be a {'/'.join(schemes)} URL, got {got}")
    if parts.netloc.count("@") > 1:
        # a password's unencoded "@": asyncpg splits the userinfo at the first "@", so the
        # password's tail became the host name ("Secret@127.0.0.1"), which never resolves,
        # and `jtrades serve` waited for it for ever while the log (split at the last "@")
        # showed a host that answers
        raise ValueError(
            f"{what} has an unencoded '@' in its user name or password: percent-encode it as %40"
        )
    # a port past 65535, or not digits ("²" passed str.isdigit), passed here and failed in the
    # driver, a traceback; not urlsplit's .port, which refuses the list "h1:5432,h2:5433"
    hosts = parts.netloc.rpartition("@")[2].split(",")
    ports = [host.rpartition("]")[2].partition(":")[2] for host in hosts]
    ports += [p for k, v in parse_qsl(parts.query) if k == "port" for p in v.split(",")]
    for port in filter(None, ports):
        if not _PORT.fullmatch(port):
            # a password's unencoded "/" ends the host early: its head reads as the port
            raise ValueError(f"{what} has a port that is not a number 1-65535")
        if not 0 < int(port) < 65536:
            raise ValueError(f"{what} has a port out of 1-65535: {port}")
    return value


def _what_it_is(value: str, schemes: tuple[str, ...]) -> str:
    """What a refused URL looks like, in words that quote nothing of it but its scheme."""
    m = _SCHEME.match(value)
    if m and m.group(1).lower() not in schemes:
        return f"a {m.group(1)}:// URL"
    if m:
        return f"a {m.group(1)}:// URL without a host"
    if _KEYWORD.match(value):
        return (
            "a key=value connection string (not shown: it may hold a password); write it as "
            f"{schemes[-1]}://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    return "no scheme:// (the value is not shown: it may hold a password)"


# one label of a host name: letters, digits, "-" (not at either end) and "_" (found in
# /etc/hosts names), at most 63 long
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_listen_host(host: str) -> str:
    """``host`` if the daemon can listen on it: a host name, an IPv4 or IPv6 address (``::1``,
    no brackets), or empty (every interface); else a ``ValueError`` that names the setting.

    Any string passed: a URL pasted here (``http://0.0.0.0``, as ``public_url`` is one) made
    every webhook URL the CLI printed garbage, and ``jtrades serve`` failed only when it came to
    listen, after the database, the migrations and the broker sessions, blaming the port."""
    if not host:
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        # an all-numeric last label is a mistyped IPv4 address ("10.0.0.256"), no name
        named = all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()
        if not named or len(host) > 253:
            shown = "(not shown: it holds an '@')" if "@" in host else repr(host)
            raise ValueError(
                f"server.host is not a host name or IP address to listen on: {shown}; give the"
                " host alone (no scheme, path, port or spaces: the port is server.port, the URL"
                " TradingView posts to server.public_url)"
            ) from None
    return host

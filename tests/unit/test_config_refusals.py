"""Settings refused when they load, in one line naming the key, instead of failing far later.

- a ``database.url`` whose password holds an unencoded ``@``: asyncpg splits at the first
  ``@`` and resolves the password's tail as the host, so ``jtrades serve`` waited for ever
  (logging, split at the last ``@``, a host that answers);
- a ``server.host`` that is no host (``http://0.0.0.0``): webhook URLs built from it were
  garbage and ``jtrades serve`` failed only once it came to listen;
- a list setting in the environment not written as JSON: the line named the section and an
  example of another key;
- a ``secrets.key_file`` that cannot be read: the line named a path, not the setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jtrades.config import ServerSettings, load_settings
from jtrades.errors import ConfigError
from jtrades.security import load_secret_box


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("JTRADES_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def _refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- database.url: an unencoded "@" in the password ---------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:pw@S3cretPw@127.0.0.1:5432/db",
        "postgres://jt:S3cret@Pw@h1:5432,h2:5433/jt?sslmode=require",
        "postgresql://jt@corp:S3cretPw@db/jt",  # in the user name: the same split
    ],
)
def test_an_unencoded_at_sign_in_the_database_url_is_refused(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    message = _refusal(monkeypatch, "JTRADES_DATABASE__URL", url)
    assert "database.url" in message
    assert "%40" in message
    assert "S3cret" not in message  # no part of the password, before or after its "@"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:pw%40S3cretPw@127.0.0.1:5432/db",  # the same, percent-encoded
        "postgresql://jt@db/jt?application_name=a@b",  # an "@" outside the user information
    ],
)
def test_a_database_url_with_one_at_sign_is_taken(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("JTRADES_DATABASE__URL", url)
    assert load_settings().database.url == url


# --- server.host: a host, not a URL -------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "http://0.0.0.0",
        "https://jt.example.com",
        "0.0.0.0:8080",
        "jt.example.com/webhook",
        "[::1]",
        "0.0.0.0 ",
        "my host",
        "10.0.0.256",
        "-bad.example.com",
    ],
)
def test_a_server_host_that_is_no_host_is_refused_at_load(tmp_path: Path, host: str) -> None:
    (tmp_path / "jtrades.toml").write_text(f'[server]\nhost = "{host}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "server.host" in message
    assert "\n" not in message


def test_a_server_host_with_credentials_is_not_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, "JTRADES_SERVER__HOST", "http://jt:S3cretPw@0.0.0.0")
    assert "server.host" in message
    assert "S3cretPw" not in message


@pytest.mark.parametrize(
    ("host", "public_url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("", "http://127.0.0.1:8080"),  # every interface, as before
        ("::", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("localhost", "http://localhost:8080"),
        ("jt-box.example.com", "http://jt-box.example.com:8080"),
        ("jt_box", "http://jt_box:8080"),
    ],
)
def test_a_host_name_or_address_is_taken(host: str, public_url: str) -> None:
    assert ServerSettings(host=host).public_url == public_url


# --- a list setting in the environment not written as JSON --------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("JTRADES_SERVER__TRUSTED_PROXIES", "server.trusted_proxies"),
        ("JTRADES_SERVER__ALLOWED_IPS", "server.allowed_ips"),
    ],
)
def test_a_list_not_written_as_json_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    monkeypatch.setenv("JTRADES_SERVER__PORT", "9000")  # a sibling that is no list: not named
    message = _refusal(monkeypatch, name, "127.0.0.1")
    assert message.startswith(f"invalid configuration (JTRADES_* environment): {name}: ")
    assert key in message
    assert f"""{name}='["1.2.3.4"]'""" in message  # the JSON form, for this variable
    assert "127.0.0.1" not in message  # the value is not repeated
    other = ({"JTRADES_SERVER__TRUSTED_PROXIES", "JTRADES_SERVER__ALLOWED_IPS"} - {name}).pop()
    assert other not in message


def test_the_json_form_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JTRADES_SERVER__TRUSTED_PROXIES", '["127.0.0.1"]')
    assert load_settings().server.trusted_proxies == ("127.0.0.1",)


def test_a_whole_section_not_written_as_json_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _refusal(monkeypatch, "JTRADES_DATABASE", "url=postgresql://jt:S3cretPw@db/jt")
    assert "JTRADES_DATABASE: a whole section, written as JSON" in message
    assert "S3cretPw" not in message


# --- secrets.key_file ---------------------------------------------------------------------


def test_a_key_file_that_cannot_be_read_names_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    settings = load_settings(data_dir=tmp_path, secrets={"key_file": str(missing)})
    with pytest.raises(ConfigError) as info:
        load_secret_box(settings, create=False)
    message = str(info.value)
    assert message.startswith("secrets.key_file: ")
    assert str(missing) in message
    assert "not found" in message


def test_a_port_ending_in_a_newline_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``re.match`` with ``$`` let ``5432\\n`` through (``$`` matches before a final newline)."""
    message = _refusal(
        monkeypatch, "JTRADES_DATABASE__URL", "postgresql://postgres@127.0.0.1/db?port=5432%0A"
    )
    assert "port" in message

"""Settings: file + environment precedence, and one clear line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from jtrades.config import load_settings
from jtrades.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("JTRADES_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "jtrades.toml"
    p.write_text(text)
    return p


def test_defaults_without_any_file() -> None:
    s = load_settings()
    assert s.database.url == ""
    assert s.server.port == 8080
    assert s.trading.timezone == "America/Chicago"


def test_file_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[server]\nport = 9000\n[trading]\ntimezone = "Europe/London"\n')
    assert load_settings().server.port == 9000
    monkeypatch.setenv("JTRADES_SERVER__PORT", "9100")
    s = load_settings()
    assert s.server.port == 9100
    assert s.trading.timezone == "Europe/London"


def test_explicit_file_wins_and_must_exist(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 7000\n")
    write(tmp_path, "[server]\nport = 9000\n")
    assert load_settings(other).server.port == 7000
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")


def test_xdg_file_is_used_when_no_local_one(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg" / "jtrades"
    xdg.mkdir(parents=True)
    (xdg / "jtrades.toml").write_text("[server]\nport = 7100\n")
    assert load_settings().server.port == 7100


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[trading]\ntimezone = "Mars/Olympus"\n', "trading.timezone: unknown time zone"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = 0\n", "server.port"),
        ('[database]\nurl = "mysql://x"\n', "database.url must be a postgres/postgresql URL"),
        ('[server]\npublic_url = "example.com"\n', "server.public_url"),
        ('[tradovate]\ndemo_ws_url = "https://x"\n', "tradovate WebSocket URL"),
        ('[server]\nallowed_ips = ["not-an-ip"]\n', "not an IP address"),
        ("[server]\nbogus = 1\n", "server.bogus: unknown setting"),
        ('[log]\nformat = "xml"\n', "log.format"),
        ("[server\n", "invalid TOML"),
        # a proxy's password in the URL every start logs (and notifies): refused, unquoted
        ('[server]\npublic_url = "https://hook:pw-canary-7f3a@jt.example.com"\n', "credentials"),
        # true/false for a number: read as 1 or 0 (a one-second TTL), unsaid
        ("[trading]\nsignal_ttl_s = true\n", "signal_ttl_s takes a number, not true"),
        ("[database]\nmax_pool = true\n", "max_pool takes a number, not true"),
        ("[server]\nport = false\n", "port takes a number, not false"),
        # Path("") is the working directory
        ('data_dir = ""\n', "data_dir is empty"),
    ],
)
def test_bad_values_are_one_clear_line(tmp_path: Path, toml: str, needle: str) -> None:
    write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "pw-canary" not in message


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JTRADES_TRADING__TIMEZONE", "Nowhere/Land")
    with pytest.raises(ConfigError, match=r"trading\.timezone"):
        load_settings()


@pytest.mark.parametrize("zone", ["America", "Europe/", "x" * 300])
def test_a_zone_folder_or_an_overlong_name_is_an_unknown_time_zone(
    monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """ZoneInfo raises IsADirectoryError for a tzdata folder and OSError for a name too long
    for a path: it was reported as the config file being unreadable ("Is a directory")."""
    monkeypatch.setenv("JTRADES_TRADING__TIMEZONE", zone)
    with pytest.raises(ConfigError, match=r"trading\.timezone: unknown time zone"):
        load_settings()


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[log]\nlevel = "info"\n# caf\xe9\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(latin1)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("JTRADES_SERVER__ALLOWED_IPS", "1.2.3.4", "written as JSON"),
        ("JTRADES_SERVER", "{bad", "written as JSON"),
        (
            "JTRADES_DATABSE__URL",
            "postgresql://u:secret-pw@db.example/prod",
            "unknown setting section",
        ),
    ],
)
def test_environment_mistakes_are_one_line_and_never_silent(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    """A list not written as JSON raised pydantic-settings' own error (a traceback); a
    misspelled section was ignored (an empty embedded Postgres instead of production)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings()
    assert "secret-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("JTRADES_DATABASE_URL", "did you mean JTRADES_DATABASE__URL?"),
        ("jtrades_log_level", "did you mean JTRADES_LOG__LEVEL?"),
        ("JTRADES_SECRETKEY", "not a jtrades setting"),
        ("JTRADES_", "not a jtrades setting"),
    ],
)
def test_a_jtrades_variable_that_is_no_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, needle: str
) -> None:
    """pydantic ignores a name it does not know: JTRADES_DATABASE_URL (one underscore) started
    an empty embedded Postgres instead of the production database."""
    monkeypatch.setenv(name, "postgresql://u:secret-pw@db.example/prod")
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert "secret-pw" not in message
    assert "\n" not in message


def test_the_other_jtrades_variables_are_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, "[server]\nport = 9000\n")
    for name, value in {
        "JTRADES_CONFIG": str(config),
        "JTRADES_DATA_DIR": str(tmp_path / "data"),
        "JTRADES_SECRET_KEY": "read by jtrades.security",
        "JTRADES_TEST_DSN": "read by tests/conftest.py",
        "JTRADES_BENCH_DSN": "read by bench/",
        "JTRADES_LOG": '{"level": "debug"}',
        "jtrades_trading__timezone": "Europe/London",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.server.port, s.data_dir, s.log.level) == (9000, tmp_path / "data", "debug")
    assert s.trading.timezone == "Europe/London"


def test_cid_accepts_a_number(tmp_path: Path) -> None:
    write(tmp_path, "[tradovate]\ncid = 1234\n")
    assert load_settings().tradovate.cid == "1234"


def test_secret_is_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JTRADES_TRADOVATE__SEC", "canary-sec-value-123")
    s = load_settings()
    assert s.tradovate.sec.get_secret_value() == "canary-sec-value-123"
    assert "canary-sec-value-123" not in repr(s)


@pytest.mark.parametrize("key", ["discord_webhook_url", "webhook_url"])
def test_notify_urls_are_checked_without_repeating_them(tmp_path: Path, key: str) -> None:
    write(tmp_path, f'[notify]\n{key} = "discord.com/api/webhooks/1/canary-hook-token"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"notify.{key}: must be an http(s) URL" in str(info.value)
    assert "canary-hook-token" not in str(info.value)
    write(tmp_path, f'[notify]\n{key} = "https://discord.com/api/webhooks/1/canary-hook-token"\n')
    assert getattr(load_settings().notify, key).get_secret_value().endswith("canary-hook-token")


def test_state_directory_is_the_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/jtrades")
    assert load_settings().data_dir == Path("/var/lib/jtrades")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgress://jt:S3cretPw@db/jt", "a postgress:// URL"),  # a mistyped scheme
        ("mysql://:S3cretPw@db/jt", "a mysql:// URL"),
        ("postgress://db/jt?sslmode=require&password=S3cretPw", "a postgress:// URL"),
        ("postgress://db/jt password=S3cretPw", "a postgress:// URL"),
        # libpq's keyword/value form, as psql and hosting dashboards hand it out
        ("host=db user=jt password=S3cretPw dbname=jt", "key=value"),
        ("host=db password = 'S3cret Pw' dbname=jt", "key=value"),
        ("jt:S3cretPw@db/jt", "no scheme://"),  # the scheme left out
        ("postgresql:jt:S3cretPw@db/jt", "no scheme://"),
    ],
)
def test_bad_database_url_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    """Money rule 8: a rejected database URL is described, never quoted: one that is no URL
    (libpq's "host=… password=…") has its password where no URL redaction looks."""
    monkeypatch.setenv("JTRADES_DATABASE__URL", url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "database.url must be a postgres/postgresql URL" in message
    assert says in message
    assert "S3cret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://jt:S3cretPw@db:99999/jt",
        "postgresql://jt:S3cretPw@h1:5432,h2:65536/jt",
        "postgresql://jt@db/jt?password=S3cretPw&port=5432,70000",
        "postgresql://jt:S3cretPw@db:0/jt",
        # not digits: the driver's int() failed on it, a traceback ("²" passed str.isdigit)
        "postgresql://jt:S3cretPw@db:abc/jt",
        "postgresql://jt:S3cretPw@db:\u00b2/jt",
    ],
)
def test_an_out_of_range_database_port_is_named_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """The driver failed on it with an OverflowError, a traceback, at the first connection."""
    monkeypatch.setenv("JTRADES_DATABASE__URL", url)
    with pytest.raises(ConfigError, match=r"database\.url: .*port") as info:
        load_settings()
    assert "S3cretPw" not in str(info.value)


def test_a_database_url_of_several_hosts_keeps_its_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://jt:S3cretPw@h1:5432,h2:65535/jt?port=5432"
    monkeypatch.setenv("JTRADES_DATABASE__URL", url)
    assert load_settings().database.url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://jt:S3cretPw@db:5432/jt", "postgresql://jt:***@db:5432/jt"),
        ("postgresql://:S3cretPw@db/jt", "postgresql://:***@db/jt"),
        ("postgresql://jt@db/jt?password=S3cretPw", "postgresql://jt@db/jt?password=***"),
        (
            "postgres://db/jt?sslmode=require&PassWord=S3cretPw&application_name=x",
            "postgres://db/jt?sslmode=require&PassWord=***&application_name=x",
        ),
        ("postgresql://db/jt?sslpassword=S3cretPw", "postgresql://db/jt?sslpassword=***"),
        ("postgresql://db/jt?passfile=/S3cretPw", "postgresql://db/jt?passfile=***"),
        # a key percent-encoded is still the key the driver reads
        ("postgresql://db/jt?pass%77ord=S3cretPw", "postgresql://db/jt?pass%77ord=***"),
        # characters that should have been percent-encoded stay inside the mask
        ("postgresql://jt:S3c@ret/Pw#x@db/jt", "postgresql://jt:***@db/jt"),
        (
            "postgresql://jt:a%40S3cretPw@h1:5432,h2:5433/jt",
            "postgresql://jt:***@h1:5432,h2:5433/jt",
        ),
        # nothing to hide: unchanged
        ("postgresql://postgres@/jt?host=/run/pg", "postgresql://postgres@/jt?host=/run/pg"),
        ("postgresql://jt@db/jt", "postgresql://jt@db/jt"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from jtrades.config_values import redact_url

    assert redact_url(url) == shown
    assert "S3cretPw" not in redact_url(url)


def test_the_public_url_defaults_to_where_the_daemon_listens() -> None:
    """A port changed alone printed webhook URLs on the default port 8080."""
    from jtrades.config import ServerSettings

    assert ServerSettings().public_url == "http://127.0.0.1:8080"
    assert ServerSettings(port=9000).public_url == "http://127.0.0.1:9000"
    assert ServerSettings(host="0.0.0.0", port=9001).public_url == "http://127.0.0.1:9001"
    assert ServerSettings(host="::1").public_url == "http://[::1]:8080"
    assert ServerSettings(port=9000, public_url="https://hooks.example/").public_url == (
        "https://hooks.example"
    )

"""Settings: one frozen, nested object from jtrades.toml plus JTRADES_* environment variables.

Precedence, highest first: init arguments, environment (``JTRADES_SECTION__KEY``), the TOML file.
The file is ``--config FILE``, else ``./jtrades.toml``, else ``$XDG_CONFIG_HOME/jtrades/jtrades.toml``;
an explicitly named file that does not exist is an error, an absent default is not.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from jtrades.config_values import check_listen_host, check_url
from jtrades.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """A number given as ``true``/``false`` is refused: read as 1 or 0, ``signal_ttl_s =
        true`` ran with a one-second TTL, ``max_pool = true`` with one connection, unsaid."""
        if isinstance(data, Mapping):
            for name, field in cls.model_fields.items():
                if field.annotation in (int, float) and isinstance(data.get(name), bool):
                    raise ValueError(f"{name} takes a number, not {str(data[name]).lower()}")
        return data


class DatabaseSettings(_Section):
    url: str = ""
    min_pool: int = Field(default=2, ge=1, le=100)
    max_pool: int = Field(default=10, ge=1, le=500)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v, ("postgres", "postgresql"), "database.url", secret=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # The URL TradingView posts to; unset, where the daemon listens (``host``/``port``), so a
    # port changed alone no longer printed webhook URLs on the default one.
    public_url: str = ""
    max_body_bytes: int = Field(default=16384, ge=256, le=1_048_576)
    # TradingView gives up on an answer after 3 s, and disables an alert that keeps failing. A
    # stored signal whose orders are still going out past this (a follower's broker silent)
    # is answered "received"; its row gets the verdict when the last answer is in.
    answer_within_s: float = Field(default=2.5, gt=0, le=60)
    allowed_ips: tuple[str, ...] = ()
    # Reverse proxies (nginx, caddy) whose X-Forwarded-For names the real sender; empty = none.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_listen_host(v)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if not v:
            return v
        if "@" in urlsplit(v).netloc:
            # it is logged at start (and notified) and printed in every webhook URL: a
            # proxy's password in it went to the journal and to Discord (rule 8)
            raise ValueError(
                "server.public_url must not carry credentials (user:password@): the webhook"
                " URL is logged and printed; the token in its path is what authenticates"
            )
        return check_url(v, ("http", "https"), "server.public_url").rstrip("/")

    @model_validator(mode="after")
    def _listening_url(self) -> ServerSettings:
        if not self.public_url:
            wildcard = self.host in ("0.0.0.0", "::", "")  # noqa: S104 (a URL, not a bind)
            host = "127.0.0.1" if wildcard else self.host
            host = f"[{host}]" if ":" in host else host
            object.__setattr__(self, "public_url", f"http://{host}:{self.port}")
        return self

    @field_validator("allowed_ips", "trusted_proxies")
    @classmethod
    def _ips(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for ip in v:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError as exc:
                raise ValueError(f"{ip!r} is not an IP address or network") from exc
        return v


class TradingSettings(_Section):
    timezone: str = "America/Chicago"
    signal_ttl_s: float = Field(default=30, gt=0, le=3600)
    reconcile_interval_s: float = Field(default=30, gt=0, le=3600)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        # OSError: a tzdata folder ("America") or a name too long for a path; uncaught here it
        # was reported as the config file being unreadable
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like America/Chicago)"
            ) from exc
        return v


class TradovateSettings(_Section):
    app_id: str = "jtrades"
    app_version: str = "1.0"
    cid: str = ""
    sec: SecretStr = SecretStr("")
    device_id: str = ""
    demo_rest_url: str = "https://demo.tradovateapi.com/v1"
    demo_ws_url: str = "wss://demo.tradovateapi.com/v1/websocket"
    live_rest_url: str = "https://live.tradovateapi.com/v1"
    live_ws_url: str = "wss://live.tradovateapi.com/v1/websocket"
    oauth_client_id: str = ""
    oauth_client_secret: SecretStr = SecretStr("")
    oauth_redirect_url: str = ""
    request_timeout_s: float = Field(default=10, gt=0, le=120)
    logins_per_hour: int = Field(default=4, ge=1, le=5)
    # Session timing (Tradovate: client heartbeat every 2.5 s; ~10 s of silence = dead peer).
    heartbeat_s: float = Field(default=2.5, gt=0, le=30)
    dead_after_s: float = Field(default=10, gt=0, le=120)
    renew_margin_s: float = Field(default=900, ge=0, le=3600)
    reconnect_initial_s: float = Field(default=1, gt=0, le=60)
    reconnect_max_s: float = Field(default=60, gt=0, le=3600)
    connect_stagger_s: float = Field(default=0.2, ge=0, le=10)
    rate_limit_cooldown_s: float = Field(default=60, ge=0, le=3600)

    @field_validator("demo_rest_url", "live_rest_url")
    @classmethod
    def _rest(cls, v: str) -> str:
        return check_url(v, ("http", "https"), "tradovate REST URL").rstrip("/")

    @field_validator("demo_ws_url", "live_ws_url")
    @classmethod
    def _ws(cls, v: str) -> str:
        return check_url(v, ("ws", "wss"), "tradovate WebSocket URL")

    @field_validator("cid", mode="before")
    @classmethod
    def _cid(cls, v: Any) -> Any:
        # Tradovate's examples give cid as a number, its spec as a string: accept both.
        return str(v) if isinstance(v, int) else v


class SecretsSettings(_Section):
    key_file: str = ""


class LogSettings(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class NotifySettings(_Section):
    """Where operator notifications go (``jtrades.notify``); empty = not sent there."""

    discord_webhook_url: SecretStr = SecretStr("")
    webhook_url: SecretStr = SecretStr("")

    @field_validator("discord_webhook_url", "webhook_url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        value = v.get_secret_value()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            # the value is not repeated: a Discord webhook URL carries its token
            raise ValueError("must be an http(s) URL")
        return v


def _default_data_dir() -> str:
    """$STATE_DIRECTORY (systemd's StateDirectory=), else $XDG_DATA_HOME/jtrades. Only a process
    systemd started has the first: ``jtrades serve`` refuses to run on it alone
    (``state_directory_only``), or the CLI would use another data_dir."""
    state = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    if state:
        return state.split(":")[0]
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "jtrades")


def state_directory_only(settings: Settings) -> Path | None:
    """The data_dir taken from $STATE_DIRECTORY alone (no ``data_dir`` in the config file or
    ``JTRADES_DATA_DIR``) when something reads it, else None. The CLI run by hand with the same
    config file has no $STATE_DIRECTORY and would read another embedded database and another
    secret.key. Only those two live there: with a database.url and a key from
    ``secrets.key_file`` or $JTRADES_SECRET_KEY, data_dir is never read, and a setup that ran
    must not be refused."""
    if "data_dir" in settings.model_fields_set or not os.environ.get("STATE_DIRECTORY"):
        return None
    embedded = not settings.database.url
    generated_key = (
        not settings.secrets.key_file and not os.environ.get("JTRADES_SECRET_KEY", "").strip()
    )
    return settings.data_dir if embedded or generated_key else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JTRADES_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        toml_file=None,
    )

    data_dir: Path = Field(default_factory=lambda: Path(_default_data_dir()))
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    trading: TradingSettings = TradingSettings()
    tradovate: TradovateSettings = TradovateSettings()
    secrets: SecretsSettings = SecretsSettings()
    log: LogSettings = LogSettings()
    notify: NotifySettings = NotifySettings()

    @field_validator("data_dir", mode="before")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            # Path("") is the working directory: the daemon's database and key went there,
            # and a CLI run from another folder found another, empty one
            raise ValueError("data_dir is empty: give a folder (or leave the key out)")
        return v

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_PATH.get("path")
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


_CONFIG_PATH: dict[str, Path | None] = {}


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The TOML file to read, or None when none exists in the default places."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    env = os.environ.get("JTRADES_CONFIG")
    if env:
        return config_path(env)
    local = Path("jtrades.toml")
    if local.is_file():
        return local
    xdg = (
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        / "jtrades"
        / "jtrades.toml"
    )
    return xdg if xdg.is_file() else None


def load_settings(explicit: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; any problem becomes one ``ConfigError`` naming the key."""
    path = config_path(explicit)
    _unknown_variables(os.environ)
    _CONFIG_PATH["path"] = path
    try:
        if path is not None:
            with path.open("rb") as fh:
                tomllib.load(fh)  # surface TOML syntax errors with the file name
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except SettingsError as exc:
        # a section or list given in the environment must be JSON; the message names the
        # variable, never the value (it may hold a password)
        raise ConfigError(_not_json(os.environ) or _NOT_JSON.format(exc)) from None
    finally:
        _CONFIG_PATH.pop("path", None)


# JTRADES_* variables read elsewhere than the settings, so not refused as typos
_OTHER_VARIABLES = frozenset(
    {
        "JTRADES_CONFIG",  # config_path
        "JTRADES_SECRET_KEY",  # security.ENV_KEY
        "JTRADES_TEST_DSN",  # tests/conftest.py
        "JTRADES_BENCH_DSN",  # bench/pipeline_procs.py
    }
)


def _unknown_variables(environ: Mapping[str, str]) -> None:
    """A ``JTRADES_*`` variable that is no setting is a typo, refused: pydantic ignores it, so
    ``JTRADES_DATABSE__URL`` or ``JTRADES_DATABASE_URL`` started an empty embedded Postgres
    instead of the production database, while a misspelled key in a real section was refused.
    The message names the variable, never its value (a database URL holds a password)."""
    known = set(Settings.model_fields)
    for name in environ:
        upper = name.upper()
        if not upper.startswith("JTRADES_") or upper in _OTHER_VARIABLES:
            continue
        head, sep, _ = upper.partition("__")
        section = head.removeprefix("JTRADES_").lower()
        if section in known:
            continue
        if sep:
            raise ConfigError(
                f"{name}: unknown setting section {section!r} (sections: {', '.join(sorted(known))})"
            )
        guess = next((k for k in sorted(known) if section.startswith(f"{k}_")), None)
        hint = (
            f"did you mean JTRADES_{guess.upper()}__{section[len(guess) + 1 :].upper()}?"
            if guess
            else "a setting is JTRADES_<SECTION>__<KEY>, with two underscores"
        )
        raise ConfigError(f"{name}: not a jtrades setting; {hint}")


_NOT_JSON = (
    "invalid configuration (JTRADES_* environment): {}; a list or a whole section is written"
    " as JSON, e.g. JTRADES_SERVER__ALLOWED_IPS='[\"1.2.3.4\"]'"
)


def _not_json(environ: Mapping[str, str]) -> str | None:
    """The one line for the ``JTRADES_*`` variable pydantic-settings could not read as JSON (a
    whole section, or a list setting), naming it and showing its JSON form; None when none is
    found. Its error names only the section ("server"), and the one example given was another
    key's: ``JTRADES_SERVER__TRUSTED_PROXIES=127.0.0.1`` was answered with ALLOWED_IPS."""
    for name in sorted(environ):
        head, sep, key = name.upper().partition("__")
        section = Settings.model_fields.get(head.removeprefix("JTRADES_").lower())
        if not head.startswith("JTRADES_") or section is None:
            continue
        model = section.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue  # data_dir: a path, not JSON
        if sep:
            field = model.model_fields.get(key.lower())
            if field is None or get_origin(field.annotation) not in (tuple, list, dict):
                continue
            example = "'[\"1.2.3.4\"]'"  # the list settings are address lists
            what = f"{head.removeprefix('JTRADES_').lower()}.{key.lower()} is a list"
        else:
            example = "'{\"<key>\": <value>}'"
            what = "a whole section"
        try:
            json.loads(environ[name])
        except ValueError:
            return (
                f"invalid configuration (JTRADES_* environment): {name}: {what}, written as"
                f" JSON, e.g. {name}={example}"
            )
    return None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (in {path} or JTRADES_* environment)" if path else " (JTRADES_* environment)"
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"{key}: {msg}")
    return "invalid configuration" + where + ": " + "; ".join(lines)

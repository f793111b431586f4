"""The one settings tree.

Sources, lowest priority first: defaults -> TOML file -> ``CHECKIN_EDGE_*`` environment ->
files in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) -> explicit overrides.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge import const

DEFAULT_CONFIG_FILE = Path("/etc/checkin-edge/config.toml")
ENV_PREFIX = "CHECKIN_EDGE_"

_toml_file: ContextVar[Path | None] = ContextVar("_toml_file", default=None)


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and why."""


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", case_sensitive=False, validate_default=True
    )

    data_dir: Path = Field(
        Path("/var/lib/checkin-edge"),
        description="Data directory: database, PIN key, badge key, backups.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file checkin-edge.db in data_dir."
    )
    center_id: str = Field("demo-center", min_length=1, description="This center's id at the source and the cloud.")
    source_url: str | None = Field(None, description="Base URL of the back-office roster export.")
    source_token: SecretStr = Field(
        SecretStr(const.PLACEHOLDER_SECRET), description="Bearer token for the roster export."
    )
    cloud_url: str | None = Field(None, description="Base URL of the attendance receiver.")
    cloud_token: SecretStr = Field(
        SecretStr(const.PLACEHOLDER_SECRET), description="Bearer token for the attendance receiver."
    )
    station_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Remote stations (scanners, other doors): station id -> bearer token. JSON in the environment.",
    )
    sync_slots: tuple[str, ...] = Field(
        const.SYNC_SLOTS_PACIFIC, description="Local times (HH:MM) of the scheduled roster pulls."
    )
    sync_time_zone: str = Field(
        const.PACIFIC_TZ, description="Time zone of sync_slots (the back office's, not the center's)."
    )
    sync_driver: Literal["serve", "timer"] = Field(
        "serve",
        description="Who runs the schedule: 'serve' in-process, or 'timer' (checkin-edge-sync.timer).",
    )
    sync_page_limit: int = Field(const.ROSTER_PAGE_LIMIT, ge=1, le=10_000, description="Records asked per page.")
    sync_timeout_s: float = Field(const.ROSTER_HTTP_TIMEOUT_S, gt=0, description="HTTP timeout per page request.")
    sync_max_attempts: int = Field(
        const.ROSTER_MAX_ATTEMPTS, ge=1, le=20, description="Attempts per page before the run fails."
    )
    cloud_batch_size: int = Field(200, ge=1, le=5_000, description="Attendance events per POST to the cloud.")
    cloud_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one attendance POST.")
    outbox_retention_days: float = Field(
        7.0, ge=0, description="Delivered outbox rows are pruned after this long; attendance itself is kept."
    )
    backup_dir: Path | None = Field(
        None,
        description="Where `checkin-edge backup` writes (nightly, by checkin-edge-backup.timer); default "
        "data_dir/backups. Best on a second disk (a USB stick) so a dead SD card does not take the backups.",
    )
    backup_keep: int = Field(
        const.BACKUP_KEEP, ge=1, le=1_000, description="Backups kept in backup_dir; older ones are deleted."
    )
    audit_retention_days: float = Field(
        730.0, ge=30, description="Audit log entries older than this are deleted (attendance itself is kept)."
    )
    sync_runs_kept: int = Field(200, ge=10, le=100_000, description="Roster sync runs (with their reports) kept.")
    low_disk_free_mb: float = Field(
        const.LOW_DISK_MIN_FREE_BYTES / 1024 / 1024,
        ge=0,
        description="Staff are warned when the data directory's disk has less than this many MB free...",
    )
    low_disk_free_percent: float = Field(
        const.LOW_DISK_MIN_FREE_RATIO * 100, ge=0, le=100, description="...or less than this share of it."
    )
    host: str = Field("127.0.0.1", description="Address serve listens on (0.0.0.0 for stations on the LAN).")
    port: int = Field(8080, ge=0, le=65535, description="Port serve listens on (0: any free port).")
    closing_time: str = Field(
        const.CLOSING_TIME,
        description="The center's closing time (HH:MM, in the school's time zone): children still checked in "
        "after it are listed as end-of-day exceptions on the dashboard.",
    )
    demo: bool = Field(False, description="Demo mode: placeholder secrets allowed.")

    @field_validator("sync_slots")
    @classmethod
    def _slots_are_times(cls, slots: tuple[str, ...]) -> tuple[str, ...]:
        for slot in slots:
            hh, sep, mm = slot.partition(":")
            if not (sep and hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError(f"{slot!r} is not a time of day as HH:MM")
        if not slots:
            raise ValueError("at least one slot is needed")
        return tuple(sorted(slots))

    @field_validator("closing_time")
    @classmethod
    def _closing_is_a_time(cls, value: str) -> str:
        hh, sep, mm = value.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError(f"{value!r} is not a time of day as HH:MM")
        return f"{int(hh):02d}:{int(mm):02d}"

    @field_validator("sync_time_zone")
    @classmethod
    def _zone_exists(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials and Path(credentials).is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=credentials))
        sources.append(env_settings)
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def backup_path(self) -> Path:
        return self.backup_dir or self.data_dir / const.BACKUP_DIR_NAME

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'checkin-edge.db'}"

    def check_secrets(self) -> None:
        """Refuse to run a real appliance with a placeholder secret."""
        if self.demo:
            return
        for name, url in (("source_token", self.source_url), ("cloud_token", self.cloud_url)):
            secret: SecretStr = getattr(self, name)
            if url and secret.get_secret_value() in ("", const.PLACEHOLDER_SECRET):
                raise ConfigError(f"{name}: still the placeholder; set {ENV_PREFIX}{name.upper()} or the config file")


def config_file_from_env() -> Path | None:
    named = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def load_config(config_file: Path | None = None, **overrides: Any) -> Config:
    """Build the settings; ``ConfigError`` names every bad key and why."""
    from pydantic import ValidationError

    path = config_file if config_file is not None else config_file_from_env()
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    token = _toml_file.set(path)
    try:
        return Config(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(problems) from None
    finally:
        _toml_file.reset(token)

"""Settings: embedded defaults, then a TOML file, then `FILMROLL_*` environment variables, then command-line flags.

Top-level keys are filmroll's own (snake_case). Sections that mirror Immich's system config keep Immich's key names
(`[library.scan] cronExpression`, `[library.watch] usePolling`).
Environment variables name a key by its path, sections joined with `__`, case and underscores ignored:
`FILMROLL_DATA_DIR`, `FILMROLL_LISTEN`, `FILMROLL_LIBRARY__WATCH__USE_POLLING`, `FILMROLL_CONFIG` (the file itself).
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
from cronsim import CronSim, CronSimError

from . import storage_template
from .errors import InvalidInput

DEFAULT_LISTEN = "127.0.0.1:2283"


def check_cron_expression(expression: str) -> None:
    """Raise InvalidInput `Invalid cron expression <expr>` (§12.4) unless cronsim can schedule it."""
    try:
        CronSim(expression, datetime.now())
    except (CronSimError, ValueError):
        raise InvalidInput(f"Invalid cron expression {expression}") from None


class NightlyScanSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Immich's `library.scan`: the nightly job (§12)."""

    enabled: bool = True
    cron_expression: str = msgspec.field(default="0 0 * * *", name="cronExpression")
    """Five fields (or six, seconds first), local time."""


class WatchOverride(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-library watch settings, under `[library.watch.libraries."<library id>"]`."""

    use_polling: bool | None = msgspec.field(default=None, name="usePolling")
    interval: int | None = msgspec.field(default=None)


class WatchSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Immich's `library.watch` (§11), on by default in filmroll."""

    enabled: bool = True
    use_polling: bool = msgspec.field(default=False, name="usePolling")
    """Poll every `interval` ms instead of inotify (network drives). Network filesystems are polled anyway."""
    interval: int = 10_000
    libraries: dict[str, WatchOverride] = {}

    def for_library(self, library_id: str) -> tuple[bool, float]:
        """(use polling, interval in seconds) for one library."""
        override = self.libraries.get(library_id, WatchOverride())
        polling = self.use_polling if override.use_polling is None else override.use_polling
        interval = self.interval if override.interval is None else override.interval
        return polling, interval / 1000


class LibrarySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    scan: NightlyScanSettings = msgspec.field(default_factory=NightlyScanSettings)
    watch: WatchSettings = msgspec.field(default_factory=WatchSettings)


class ImageOutput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One derived image (`media.md` §2): format, shorter side in pixels, quality."""

    format: Literal["webp", "jpeg"]
    size: int
    quality: int = 80


class ImageSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Immich's `image` system config (`media.md` §2)."""

    thumbnail: ImageOutput = msgspec.field(default_factory=lambda: ImageOutput(format="webp", size=250))
    preview: ImageOutput = msgspec.field(default_factory=lambda: ImageOutput(format="jpeg", size=1440))
    colorspace: Literal["p3", "srgb"] = "p3"
    max_pixels: int = msgspec.field(default=200_000_000, name="maxPixels")
    """filmroll: a source with more pixels than this is refused as a decompression bomb."""


TranscodePolicy = Literal["all", "optimal", "bitrate", "required", "disabled"]


class FfmpegSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Immich's `ffmpeg` system config (`media.md` §4), with Immich's defaults."""

    transcode: TranscodePolicy = "required"
    target_video_codec: Literal["h264"] = msgspec.field(default="h264", name="targetVideoCodec")
    target_audio_codec: Literal["aac"] = msgspec.field(default="aac", name="targetAudioCodec")
    accepted_video_codecs: list[str] = msgspec.field(
        default_factory=lambda: ["h264"], name="acceptedVideoCodecs"
    )
    accepted_audio_codecs: list[str] = msgspec.field(
        default_factory=lambda: ["aac", "mp3", "libopus"], name="acceptedAudioCodecs"
    )
    accepted_containers: list[str] = msgspec.field(
        default_factory=lambda: ["mov", "ogg", "webm"], name="acceptedContainers"
    )
    target_resolution: str = msgspec.field(default="720", name="targetResolution")
    """Shorter side in pixels, or `original` (never scale)."""
    crf: int = 23
    preset: str = "ultrafast"
    max_bitrate: str = msgspec.field(default="0", name="maxBitrate")
    """`0` = no limit; `k` multiplies by 1000, `m` by 10**6."""
    threads: int = 0
    two_pass: bool = msgspec.field(default=False, name="twoPass")
    tonemap: Literal["hable", "mobius", "reinhard", "disabled"] = "hable"
    accel: Literal["disabled"] = "disabled"


class JobSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-queue concurrency (Immich's `job.<queue>.concurrency`) and worker recycling (filmroll)."""

    metadata_extraction: int = msgspec.field(default=2, name="metadataExtraction")
    thumbnail_generation: int = msgspec.field(default=2, name="thumbnailGeneration")
    video_conversion: int = msgspec.field(default=1, name="videoConversion")
    worker_recycle_after: int = msgspec.field(default=200, name="workerRecycleAfter")
    """A worker process is replaced after this many jobs (a leaky decoder cannot grow without bound)."""
    max_attempts: int = msgspec.field(default=3, name="maxAttempts")
    """A media job that fails this many times is recorded as failed (reason kept on the asset)."""
    retry_delay: float = msgspec.field(default=30.0, name="retryDelay")
    """Seconds before a failed job is tried again, doubling with each attempt (a file still being copied, a
    network drive's hiccup)."""


class StorageTemplateSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Immich's `storageTemplate` (`media.md` §5): where upload-library originals live on disk. Enabled by
    default in filmroll (Immich ships it disabled)."""

    enabled: bool = True
    hash_verification_enabled: bool = msgspec.field(default=True, name="hashVerificationEnabled")
    """Check a copy across filesystems by SHA-1 before the original is removed."""
    template: str = storage_template.DEFAULT_TEMPLATE
    """Validated at load: an invalid template refuses to start (`Invalid storage template: …`)."""


class MetricsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """filmroll's `[metrics]`: Prometheus metrics at `GET /metrics` (`daemon/metrics.py`)."""

    enabled: bool = True
    public: bool = True
    """Served without credentials (what Prometheus scrapers expect). The metrics are aggregates only (counts by
    type and state, queue depths, latencies by route), never per-user. `false`: an admin's credentials are
    required (`x-api-key`, `Authorization: Bearer`)."""


class FsviewUser(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One user's folder in the FUSE view, under `[fsview.users."<email or storage label>"]`."""

    uid: int
    gid: int | None = None
    """Default: `[fsview] gid`."""


class FsviewSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """filmroll's `[fsview]`: the read-only FUSE view (`filmroll serve --mount PATH`, `fsview/`)."""

    allow_other: bool = False
    """Let local users other than the daemon's own reach the mount (FUSE `allow_other`; for anyone but root,
    `user_allow_other` must be set in /etc/fuse.conf). Modes still keep each user's folder to its owner."""
    uid: int | None = None
    """Owner of every user's folder unless `users` says otherwise; default: the daemon's own uid."""
    gid: int | None = None
    users: dict[str, FsviewUser] = {}
    """Per filmroll user (by email or storage label): the Unix uid/gid that owns their folder."""


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ""
    """Where the index, uploads and derived files live. Default: $STATE_DIRECTORY (systemd), else
    $XDG_DATA_HOME/filmroll (~/.local/share/filmroll)."""
    listen: str = DEFAULT_LISTEN
    """HOST:PORT for the HTTP API; port 0 picks a free port (the chosen one is logged)."""
    mount: str = ""
    """Where to mount the read-only FUSE view of albums; empty for none."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "human", "json"] = "auto"
    """`auto`: human-readable on a terminal, one JSON object a line otherwise."""
    library: LibrarySettings = msgspec.field(default_factory=LibrarySettings)
    image: ImageSettings = msgspec.field(default_factory=ImageSettings)
    ffmpeg: FfmpegSettings = msgspec.field(default_factory=FfmpegSettings)
    job: JobSettings = msgspec.field(default_factory=JobSettings)
    storage_template: StorageTemplateSettings = msgspec.field(
        default_factory=StorageTemplateSettings, name="storageTemplate"
    )
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    fsview: FsviewSettings = msgspec.field(default_factory=FsviewSettings)
    config_file: str = ""
    """The TOML file these settings came from, if any (set by `load_settings`, not read from the file)."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def index_path(self) -> Path:
        return self.data_path / "index"

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def default_data_dir(environ: dict[str, str]) -> str:
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return state
    xdg = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "filmroll")


def default_config_file(environ: dict[str, str]) -> str:
    if environ.get("FILMROLL_CONFIG"):
        return environ["FILMROLL_CONFIG"]
    configuration_directory = environ.get("CONFIGURATION_DIRECTORY", "").split(":")[0]
    if configuration_directory and os.path.exists(os.path.join(configuration_directory, "config.toml")):
        return os.path.join(configuration_directory, "config.toml")
    return ""


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port). Raises InvalidInput naming the value."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(f"Invalid listen address {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port_text)


def _normal(name: str) -> str:
    return name.replace("_", "").lower()


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Nested dict of the FILMROLL_* variables, keyed by the settings' own (encoded) key names."""
    overrides: dict[str, Any] = {}
    for variable, value in environ.items():
        if not variable.startswith("FILMROLL_") or variable == "FILMROLL_CONFIG":
            continue
        struct: Any = Settings
        target = overrides
        path = variable.removeprefix("FILMROLL_").split("__")
        for depth, part in enumerate(path):
            info = msgspec.inspect.type_info(struct) if struct is not None else None
            fields = (
                {_normal(f.name): f for f in info.fields}
                if isinstance(info, msgspec.inspect.StructType)
                else {}
            )
            found = fields.get(_normal(part))
            if found is None or found.name == "config_file":
                raise InvalidInput(f"Unknown setting in environment variable {variable}")
            if depth == len(path) - 1:
                target[found.encode_name] = value
            else:
                target = target.setdefault(found.encode_name, {})
                struct = found.type.cls if isinstance(found.type, msgspec.inspect.StructType) else None
    return overrides


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def load_settings(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge defaults <- TOML file <- environment <- `overrides` (command-line flags that were given).

    Raises InvalidInput with the file or variable named when anything is malformed.
    """
    environ = dict(os.environ if environ is None else environ)
    config_file = config_file if config_file is not None else default_config_file(environ)
    merged: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as stream:
                merged.update(tomllib.load(stream))
        except OSError as error:
            raise InvalidInput(f"Cannot read config file {config_file}: {error.strerror}") from error
        except tomllib.TOMLDecodeError as error:
            raise InvalidInput(f"Config file {config_file} is not valid TOML: {error}") from error
        merged.pop("config_file", None)
    _merge(merged, _env_overrides(environ))
    merged.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as error:
        source = f"config file {config_file} / environment" if config_file else "environment / flags"
        raise InvalidInput(f"Invalid setting ({source}): {error}") from error
    if not settings.data_dir:
        settings.data_dir = default_data_dir(environ)
    settings.data_dir = os.path.abspath(os.path.expanduser(settings.data_dir))
    settings.config_file = os.path.abspath(config_file) if config_file else ""
    settings.listen_address()
    check_cron_expression(settings.library.scan.cron_expression)
    storage_template.parse(settings.storage_template.template)
    return settings

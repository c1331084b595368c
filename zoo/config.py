"""All environment variables the zoo reads, in one place.

Values are read when asked for (never at import time) so tests and long-running
programs can change them, and so importing ``zoo`` touches neither disk nor network.
A front end that takes the same settings as options (the CLI's --cache-dir, --mirror,
--offline, --catalog, --quiet/--verbose) lays them over the variables for the duration of
one command with ``overrides``, instead of writing the process environment.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

ENV_CATALOG = "MOBILENET_ZOO_CATALOG"
ENV_CACHE = "MOBILENET_ZOO_CACHE"
ENV_MIRROR = "MOBILENET_ZOO_MIRROR"
ENV_OFFLINE = "MOBILENET_ZOO_OFFLINE"
ENV_PROFILE = "MOBILENET_ZOO_PROFILE"
ENV_DEBUG = "MOBILENET_ZOO_DEBUG"
ENV_QUIET = "MOBILENET_ZOO_QUIET"
ENV_LOG_LEVEL = "MOBILENET_ZOO_LOG_LEVEL"
ENV_MIRROR_TOKEN = "MOBILENET_ZOO_MIRROR_TOKEN"

_TRUE = {"1", "true", "yes", "on"}

# Values laid over the environment by ``overrides`` (keys: the names of the functions below).
_overridden: dict[str, object] = {}


def env_flag(name: str) -> bool:
    """True when the variable is set to 1/true/yes/on (case-insensitive)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def catalog_path() -> Path | None:
    """The user's catalog override, or None for the catalog shipped with the package."""
    if "catalog" in _overridden:
        return Path(_overridden["catalog"]).expanduser()
    value = os.environ.get(ENV_CATALOG)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where fetched models live: $MOBILENET_ZOO_CACHE or the platform's user cache dir."""
    if "cache_dir" in _overridden:
        return Path(_overridden["cache_dir"]).expanduser()
    value = os.environ.get(ENV_CACHE)
    if value:
        return Path(value).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("mobilenet-zoo", appauthor=False)


def mirrors() -> list[str]:
    """Mirror bases from $MOBILENET_ZOO_MIRROR (several separated by whitespace or ';')."""
    if "mirrors" in _overridden:
        return list(_overridden["mirrors"])
    value = os.environ.get(ENV_MIRROR, "")
    return [m for m in value.replace(";", " ").split() if m]


def mirror_token() -> str | None:
    """A bearer token sent to http(s) mirrors only (never to upstream, never after a redirect
    to another host). Credentials in ~/.netrc are used by requests for any host as usual."""
    value = os.environ.get(ENV_MIRROR_TOKEN, "").strip()
    return value or None


def offline() -> bool:
    if "offline" in _overridden:
        return bool(_overridden["offline"])
    return env_flag(ENV_OFFLINE)


def profile_path() -> Path:
    """Per-user, per-machine file of latencies measured by `bench` (device `local`).

    Lives under the user *data* dir (honours XDG_DATA_HOME), not in the cache, because
    a cache may be shared by many machines while a measurement belongs to one.
    """
    value = os.environ.get(ENV_PROFILE)
    if value:
        return Path(value).expanduser()
    from platformdirs import user_data_path

    return user_data_path("mobilenet-zoo", appauthor=False) / "profile.json"


def debug() -> bool:
    return env_flag(ENV_DEBUG)


LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level() -> str:
    """How much the zoo tells the user: debug (--verbose), info (default), warning (--quiet), error.

    $MOBILENET_ZOO_LOG_LEVEL names a level; $MOBILENET_ZOO_QUIET=1 means ``warning``.
    """
    if "log_level" in _overridden:
        return str(_overridden["log_level"])
    value = os.environ.get(ENV_LOG_LEVEL, "").strip().lower()
    if value in LOG_LEVELS:
        return value
    return "warning" if env_flag(ENV_QUIET) else "info"


def quiet() -> bool:
    """No progress bars or notes (warnings and errors still show)."""
    return LOG_LEVELS.index(log_level()) >= LOG_LEVELS.index("warning")


def verbose() -> bool:
    """Everything, including the runtimes' own logs (TensorFlow, LiteRT, absl)."""
    return log_level() == "debug"


def ca_bundle() -> str | None:
    """A CA bundle for HTTPS: $REQUESTS_CA_BUNDLE, $CURL_CA_BUNDLE or $SSL_CERT_FILE (first set wins).

    requests itself honours only the first two (in that order); corporate TLS inspection is
    often set up through the OpenSSL one (SSL_CERT_FILE), so that one is honoured too.
    """
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@contextmanager
def overrides(*, cache_dir: Path | None = None, mirrors: Sequence[str] | None = None,
              offline: bool | None = None, catalog: Path | None = None,
              log_level: str | None = None) -> Iterator[None]:
    """Within the block, the given values (None: not given) win over the environment.

    The CLI wraps each command in this, so every library call the command makes (restore
    fetching a missing model, classify, bench...) sees the same cache, mirrors and offline
    mode as the command itself. Process-wide (download threads see it too), restored on exit.
    """
    given = {"cache_dir": cache_dir, "mirrors": None if mirrors is None else tuple(mirrors),
             "offline": offline, "catalog": catalog, "log_level": log_level}
    saved = dict(_overridden)
    _overridden.update({key: value for key, value in given.items() if value is not None})
    try:
        yield
    finally:
        _overridden.clear()
        _overridden.update(saved)

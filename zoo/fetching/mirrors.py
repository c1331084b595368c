"""Where to download a tarball from: mirrors first (in order), then upstream.

A mirror ``BASE`` serves an upstream URL ``scheme://host/path`` at ``BASE/host/path``,
the layout TensorFlow's own mirror uses. ``BASE`` may be http(s)://, file:// or a plain
directory; `mobilenet-zoo mirror DIR` writes exactly that layout.

Authentication: credentials in the mirror URL (``https://user:pass@host``), ``~/.netrc``
(read by requests), or ``$MOBILENET_ZOO_MIRROR_TOKEN`` sent as ``Authorization: Bearer``
to http(s) mirrors only. Labels and messages show URLs with the password masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar
from urllib.parse import urlsplit

from ..errors import DownloadError, IntegrityError, OfflineError, SourcesFailed, UsageError
from .._util.redact import redact
from .._util.safepath import inside, unsafe_url_path

__all__ = ["Source", "mirror_base", "mirror_path", "mirror_target", "redact", "rewrite", "sources_for",
           "try_sources"]

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    url: str
    label: str          # "upstream" or "mirror <base>" (password masked), for messages
    is_local: bool      # file:// (usable offline)
    token: str | None = None  # bearer token for this source (mirrors only)


def mirror_base(base: str) -> str:
    """Normalise a mirror base to a URL without a trailing slash (directories become file://)."""
    base = base.strip()
    scheme = urlsplit(base).scheme.lower()
    if scheme in ("http", "https", "file"):
        return base.rstrip("/")
    if scheme and len(scheme) > 1:
        raise UsageError(f"unsupported mirror {redact(base)!r}", "use http(s)://, file:// or a directory path")
    return Path(base).expanduser().resolve().as_uri().rstrip("/")


def mirror_path(url: str) -> str:
    """``scheme://host/path`` -> ``host/path`` (the mirror-relative path); ValueError if unsafe."""
    parts = urlsplit(url)
    why = unsafe_url_path(parts.path)
    if why is not None:
        raise ValueError(f"{redact(url)}: {why}")
    return f"{parts.netloc.rpartition('@')[2]}{parts.path}"


def mirror_target(directory: Path, url: str) -> Path:
    """Where `mirror DIR` stores ``url``: provably inside ``directory`` (CacheError otherwise)."""
    try:
        rel = mirror_path(url)
    except ValueError as exc:
        from ..errors import CacheError

        raise CacheError(f"refusing to mirror {exc}", "fix the catalog's url") from None
    return inside(Path(directory), *[p for p in rel.split("/") if p], what="mirror path")


def rewrite(url: str, base: str) -> str:
    return f"{mirror_base(base)}/{mirror_path(url)}"


def sources_for(url: str, mirrors: Sequence[str], *, offline: bool, token: str | None = None) -> list[Source]:
    """Sources to try in order; offline keeps only local (file) ones."""
    out = []
    for m in mirrors:
        target = rewrite(url, m)
        local = target.startswith("file:")
        out.append(Source(target, f"mirror {redact(mirror_base(m))}", local, None if local else token))
    out.append(Source(url, "upstream", url.startswith("file:")))
    if offline:
        out = [s for s in out if s.is_local]
    return out


def try_sources(sources: Sequence[Source], attempt: Callable[[Source], T], *, model: str,
                no_source: Callable[[], Exception] | None = None) -> T:
    """``attempt(source)`` for each source in turn until one succeeds (fetch and mirror share it).

    No source at all (``--offline`` with only http mirrors) is an :class:`OfflineError`
    (``no_source`` may build a more specific one). A source that fails to deliver
    (DownloadError, IntegrityError) lets the next one try; with one source its own error is
    raised, with several a :class:`SourcesFailed` keeping every source's error. Anything else
    (a refused archive whose bytes matched the trusted digest, a full disk, a bug) stops at once.
    """
    if not sources:
        raise (no_source() if no_source is not None else OfflineError(
            f"{model}: offline leaves no source to download from",
            "run the command without offline, or give a file mirror (mirrors, a folder) made with "
            "`mobilenet-zoo mirror`", params=("offline", "mirrors")))
    failures: list[tuple[Source, DownloadError | IntegrityError]] = []
    for source in sources:
        try:
            return attempt(source)
        except (DownloadError, IntegrityError) as exc:
            if len(sources) == 1:
                raise
            failures.append((source, exc))
    raise SourcesFailed(model, failures)

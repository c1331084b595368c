"""Where to download a tarball from: mirrors first (in order), then upstream.

A mirror ``BASE`` serves an upstream URL ``scheme://host/path`` at ``BASE/host/path``,
the layout TensorFlow's own mirror uses. ``BASE`` may be http(s)://, file:// or a plain
directory; `mobilenet-zoo mirror DIR` writes exactly that layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from .errors import UsageError


@dataclass(frozen=True)
class Source:
    url: str
    label: str          # "upstream" or "mirror <base>", for messages
    is_local: bool      # file:// (usable offline)


def mirror_base(base: str) -> str:
    """Normalise a mirror base to a URL without a trailing slash (directories become file://)."""
    base = base.strip()
    scheme = urlsplit(base).scheme.lower()
    if scheme in ("http", "https", "file"):
        return base.rstrip("/")
    if scheme and len(scheme) > 1:
        raise UsageError(f"unsupported mirror {base!r}", "use http(s)://, file:// or a directory path")
    return Path(base).expanduser().resolve().as_uri().rstrip("/")


def mirror_path(url: str) -> str:
    """``scheme://host/path`` -> ``host/path`` (the mirror-relative path)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def rewrite(url: str, base: str) -> str:
    return f"{mirror_base(base)}/{mirror_path(url)}"


def sources_for(url: str, mirrors: Sequence[str], *, offline: bool) -> list[Source]:
    """Sources to try in order; offline keeps only local (file) ones."""
    out = [Source(rewrite(url, m), f"mirror {m}", rewrite(url, m).startswith("file:")) for m in mirrors]
    out.append(Source(url, "upstream", url.startswith("file:")))
    if offline:
        out = [s for s in out if s.is_local]
    return out

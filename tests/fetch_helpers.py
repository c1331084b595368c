"""Shared set-up for fetch tests: catalogs whose URLs point at the loopback fault server."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from zoo.catalog.registry import default_catalog_path

from .archives import upstream_v1_tarball, upstream_v3_tarball

_TEMPLATE = None


def _template() -> dict:
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = yaml.safe_load(default_catalog_path().read_text())["models"]
    return _TEMPLATE


@dataclass
class Served:
    id: str
    url: str
    path: str          # server path
    data: bytes
    sha256: str


def model_entry(model_id: str, url: str, data: bytes | None, *, pinned: bool = True, known_size: bool = True,
                template_id: str = "v1_1.0_224") -> dict:
    """A catalog entry copied from a real one, pointing at ``url``."""
    base = next(m for m in _template() if m["id"] == template_id)
    sha = hashlib.sha256(data).hexdigest() if (pinned and data is not None) else None
    size = len(data) if (known_size and data is not None) else None
    entry = dict(base, id=model_id, aliases=[])
    entry["releases"] = [{"release": "r1", "url": url, "sha256": sha, "size_bytes": size}]
    return entry


def entry_served_at(entry, url: str, data: bytes) -> dict:
    """A catalog mapping for ``entry`` (e.g. a tiny test model) whose one release is ``data`` at ``url``."""
    raw = entry.to_dict()
    for derived in ("model_size_mb", "url", "sha256", "size_bytes"):  # JSON conveniences, not catalog fields
        raw.pop(derived)
    raw["releases"] = [{"release": "r1", "url": url, "sha256": hashlib.sha256(data).hexdigest(),
                        "size_bytes": len(data)}]
    return raw


def write_catalog(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"schema_version": 1, "models": entries}, sort_keys=False))
    return path


def serve_models(server, tmp_path: Path, specs: list[tuple[str, bytes]], **kwargs) -> tuple[Path, list[Served]]:
    """Register each (id, tarball bytes) on the server and write a catalog for them."""
    served, entries = [], []
    for model_id, data in specs:
        path = f"/models/{model_id}.tgz"
        url = server.add(path, data)
        entries.append(model_entry(model_id, url, data, **kwargs))
        served.append(Served(model_id, url, path, data, hashlib.sha256(data).hexdigest()))
    return write_catalog(tmp_path / "catalog.yaml", entries), served


def v1_tarball(tag: str = "a", scale: float = 1e-4) -> bytes:
    return upstream_v1_tarball(f"mobilenet_v1_{tag}", size_scale=scale)


def v3_tarball() -> bytes:
    return upstream_v3_tarball()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) for everything under root (to prove nothing changed)."""
    out = {}
    if root.exists():
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            out[p.relative_to(root).as_posix()] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out

"""Choosing a model: the validated catalog, model names, selection, this machine's measured
latencies and the frontier plot. Light on purpose: `list`, `show` and `pick` import only this
group (no TensorFlow, numpy or requests)."""

from .registry import Catalog, Entry, Release, load_catalog

__all__ = ["Catalog", "Entry", "Release", "load_catalog"]

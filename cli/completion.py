"""Shell completion of model names (ids, and NAME@RELEASE once an id is typed).

Installed with `mobilenet-zoo --install-completion` (bash, zsh, fish, PowerShell); typer
calls these functions with what the user has typed so far.
"""

from __future__ import annotations


def complete_model(incomplete: str) -> list[str]:
    """Model ids starting with ``incomplete``; after ``id@``, that model's releases."""
    try:
        from .common import load_catalog

        catalog = load_catalog()
    except Exception:  # a broken catalog must not break the user's shell
        return []
    if "@" in incomplete:
        base, _, partial = incomplete.partition("@")
        if base not in catalog:
            return []
        entry = catalog.get(base)
        return [f"{base}@{r.release}" for r in entry.releases if r.release.startswith(partial)]
    typed = incomplete.lower()
    return [model_id for model_id in catalog.ids if model_id.lower().startswith(typed)]

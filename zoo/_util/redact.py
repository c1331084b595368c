"""Secrets never leave the process in text: passwords in URLs and the mirror token are masked.

Applied once, where every message is born (``ZooError``) and where sources are labelled
(``zoo.fetching.mirrors``), so progress lines, errors, warnings and ``--json`` all show ``user:***@``.
"""

from __future__ import annotations

import os
import re

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]*):([^/\s@]*)@")
MASK = "***"


def redact(text: str) -> str:
    """``http://user:secret@host/x`` -> ``http://user:***@host/x``; the mirror token -> ``***``."""
    if not isinstance(text, str):
        return text
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    token = os.environ.get("MOBILENET_ZOO_MIRROR_TOKEN", "")
    if len(token) >= 4:
        out = out.replace(token, MASK)
    return out

"""Keep secrets out of messages: storage URLs are shown with their password as ``***``."""

from __future__ import annotations

import re

__all__ = ["mask_url", "scrub"]

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^\s]*)(?P<at>@)")


def _password(url: str) -> str | None:
    match = _USERINFO.search(url)
    return match.group("password") if match and match.group("password") else None


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; other URLs unchanged."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}***{m.group('at')}" if m.group("password") else m.group(0), url)


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (and any URL's userinfo password) replaced by ``***``."""
    if url:
        password = _password(url)
        if password:
            text = text.replace(password, "***")
    return mask_url(text)

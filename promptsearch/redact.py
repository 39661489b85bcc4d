"""Keep secrets out of messages: storage URLs are shown with their password as ``***``."""

from __future__ import annotations

import re

__all__ = ["mask_url", "scrub"]

_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<password>[^&\s]*)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^\s]*)(?P<at>@)")


def _passwords(url: str) -> list[str]:
    found = [m.group("password") for m in (*_USERINFO.finditer(url), *_QUERY_PASSWORD.finditer(url))]
    pieces = [piece for p in found for piece in p.split("@")]  # a raw '@' in a password splits it
    return [p for p in (*found, *pieces) if len(p) >= 3]


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (and ``?password=`` too)."""
    url = _QUERY_PASSWORD.sub(lambda m: f"{m.group('head')}***", url)
    return _USERINFO.sub(lambda m: f"{m.group('head')}***{m.group('at')}" if m.group("password") else m.group(0), url)


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (and any URL's userinfo password) replaced by ``***``."""
    if url:
        for password in sorted(_passwords(url), key=len, reverse=True):
            text = text.replace(password, "***")
    return mask_url(text)

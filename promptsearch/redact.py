"""Keep secrets out of messages: URLs (storage, MLflow) are shown with their password as ``***``.

The password is what SQLAlchemy's URL parser (``sqlalchemy.engine.make_url``) reads, and, to be safe with
passwords that parser splits differently (a raw ``@``), everything between the user name and the *last* ``@``
of the authority. A URL without a scheme (``user:pw@host/db``), a password with spaces, ``/`` or ``@``, and
``?password=`` query values are all masked.
"""

from __future__ import annotations

import re

__all__ = ["mask_url", "passwords", "scrub"]

_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<password>[^&\s]*)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^\s]*)(?P<at>@)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _split(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme://, user, password, @rest)`` when ``url`` has a ``user:password@`` part, else None."""
    match = _SCHEME.match(url)
    head = match.group(0) if match else ""
    rest = url[len(head) :]
    authority = rest.split("?", 1)[0]
    at = authority.rfind("@")
    if at < 0:
        return None
    userinfo = authority[:at]
    if ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    return head, user, password, rest[at:]


def passwords(url: str) -> list[str]:
    """Every string that ``url`` treats as a password (longest first), for scrubbing free text."""
    found: list[str] = []
    parts = _split(url)
    if parts is not None:
        found.append(parts[2])
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url).password
        if parsed:
            found.append(str(parsed))
    except Exception:  # not a URL SQLAlchemy reads: the split above stands
        pass
    found += [m.group("password") for m in _QUERY_PASSWORD.finditer(url)]
    pieces = [piece for p in found for piece in re.split(r"[@\s/]", p)]  # pieces of it may be quoted alone
    return sorted({p for p in (*found, *pieces) if len(p) >= 3}, key=len, reverse=True)


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (and ``?password=`` too)."""
    parts = _split(url)
    if parts is not None:
        head, user, password, rest = parts
        url = f"{head}{user}:***{rest}" if password else url
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group('head')}***", url)


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (and any URL's userinfo password) replaced by ``***``."""
    if url:
        for password in passwords(url):
            text = text.replace(password, "***")
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group('head')}***", text)
    return _USERINFO.sub(lambda m: f"{m.group('head')}***{m.group('at')}" if m.group("password") else m.group(0), text)

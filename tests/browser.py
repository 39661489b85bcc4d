"""Headless Chromium for the report tests: load a file, return its DOM after scripts ran and the console."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """$PROMPTSEARCH_CHROMIUM, else the first Chromium on PATH (Debian: apt-get install chromium)."""
    explicit = os.environ.get("PROMPTSEARCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    dom: str
    console: list[str]  # the page's console messages, including uncaught errors


def load(browser: str, page: Path, *, budget_ms: int = 15000, timeout: float = 120) -> Page:
    """Open ``page`` in headless Chromium, let its scripts run for ``budget_ms`` of virtual time, dump the DOM."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # no shared profile lock between runs
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            "--window-size=1400,2000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr[-2000:]}")
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return Page(dom=proc.stdout, console=console)


def screenshot(browser: str, page: Path, target: Path, *, width: int = 1400, height: int = 2400) -> Path:
    subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-')}",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={target}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return target

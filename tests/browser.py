"""Headless Chromium for tests: the rendered DOM (after scripts ran) and screenshots of a page.

Uses Debian's ``chromium`` (``/usr/bin/chromium``, or ``GLASSBOX_CHROMIUM``), with a throwaway profile and
every background network feature off, so a page is rendered exactly as a user's browser would show it.

>>> visible_text("<style>p{}</style><p>a <b>b</b></p><script>x()</script>")
'a b'
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
]


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    env = os.environ.get("GLASSBOX_CHROMIUM")
    for cand in (env, "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and Path(cand).is_file():
            return cand
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium (or set GLASSBOX_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="glassbox-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=timeout, check=False)


def dump_dom(url: str, *, budget_ms: int = 15000, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (virtual time lets timers and fetches settle)."""
    res = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout)
    if res.returncode != 0 and not res.stdout:
        raise RuntimeError(f"chromium failed on {url}: {res.stderr.decode(errors='replace')[-500:]}")
    return res.stdout.decode("utf-8", errors="replace")


def screenshot(url: str, path: str | os.PathLike[str], *, size: tuple[int, int] = (1400, 2400),
               budget_ms: int = 15000, timeout: float = 60) -> Path:
    """A PNG of the rendered page."""
    out = Path(path).resolve()
    _run([f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", url],
         timeout)
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return out


def visible_text(dom: str) -> str:
    """The text a user sees: scripts, styles and tags removed, whitespace collapsed."""
    t = re.sub(r"<(script|style|noscript)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    t = re.sub(r"<[^>]+>", " ", t)
    for a, b in (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&nbsp;", " "), ("&#39;", "'"), ("&quot;", '"')):
        t = t.replace(a, b)
    return " ".join(t.split())

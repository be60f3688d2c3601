"""Version order: is the host's pxhostd older than the pod's, is an apply a downgrade.

Versions are compared the way dpkg compares them (`dpkg --compare-versions`), so the
order agrees with the package manager that installs them: numbers compare as numbers
(1.10 > 1.7, the old monitor compared strings), `~` sorts before everything (1.0~rc1 <
1.0), and a local suffix sorts after (0.1.0+test1 > 0.1.0). An epoch (`1:`) and a Debian
revision (`-1`) are honoured too.
"""

from __future__ import annotations

import re

_VERSION_RE = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*")


class BadVersion(ValueError):
    """Text that is not a version."""


def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch.isdigit():
        return 0
    if ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (by _order) and digit runs (numerically)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    text = version.strip()
    if not _VERSION_RE.fullmatch(text):
        raise BadVersion(f"not a version: {text[:80]!r}")
    epoch = 0
    if ":" in text:
        head, text = text.split(":", 1)
        epoch = int(head)
    upstream, revision = text, ""
    if "-" in text:
        upstream, revision = text.rsplit("-", 1)
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Negative if a < b, 0 if equal, positive if a > b; BadVersion for non-versions."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    result = _compare_part(ua, ub) or _compare_part(ra, rb)
    return (result > 0) - (result < 0)

"""Version order: is the host's pxhostd older than the pod's, is an apply a downgrade.

Versions are compared the way dpkg compares them, so the order agrees with the package
manager that installs them: numbers compare as numbers (1.10 > 1.7, the old monitor
compared strings), `~` sorts before everything (1.0~rc1 < 1.0), and a local suffix sorts
after (0.1.0+test1 > 0.1.0). An epoch (`1:`) and a Debian revision (`-1`) are honoured too.
The comparison is python3-debian's (`debian.debian_support.Version`, which uses apt's own
when python3-apt is installed); only the check that the text is a version at all is ours:
it must start with a digit, which dpkg warns about and python3-debian does not ask.
"""

from __future__ import annotations

import re

from debian.debian_support import Version

_VERSION_RE = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*")


class BadVersion(ValueError):
    """Text that is not a version."""


def parse_version(text: str) -> Version:
    """A dpkg version, or BadVersion naming the text."""
    text = text.strip()
    if not _VERSION_RE.fullmatch(text):
        raise BadVersion(f"not a version: {text[:80]!r}")
    try:
        return Version(text)
    except ValueError:
        raise BadVersion(f"not a version: {text[:80]!r}") from None


def compare_versions(a: str, b: str) -> int:
    """Negative if a < b, 0 if equal, positive if a > b; BadVersion for non-versions."""
    va, vb = parse_version(a), parse_version(b)
    return (va > vb) - (va < vb)

"""Typed parsers for single parameter values: booleans, versions, lists, names, paths.

Each parser takes the parameter's display name (for the message) and the raw text and
either returns a typed value or raises ValueError with a message fit for a user. The
caller (params.py) collects those into one InvalidSpec.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from typing import NamedTuple

#: Longest value accepted for any parameter; nothing legitimate comes close.
MAX_VALUE_CHARS = 4096

_TRUE = frozenset({"true", "1", "yes", "y", "on", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "f"})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")
_KVDB_URL = re.compile(r"(?:etcd|consul)(?::https?)?://\S+")
#: A Portworx cluster name: the characters and length of a Kubernetes label value (the name
#: also labels objects), so it needs no quoting in an argument, a key or a label.
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
MAX_CLUSTER_NAME = 63
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_TYPE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?"
)
_KUBE_VERSION = re.compile(r"\s*v?(\d{1,3})\.(\d{1,3})(?:\.(\d{1,5}))?([-+][\x21-\x7e]*)?\s*")


def show(value: str, limit: int = 60) -> str:
    """Quote a user value for a message: control and non-ASCII characters escaped, shortened.

    The result is one printable ASCII line, safe in a log line, a YAML comment, an HTTP
    header and (after HTML escaping) a web page.
    """
    cut = value if len(value) <= limit else value[:limit] + "..."
    escaped = cut.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'


def check_text(name: str, value: str, *, multiline: bool = False) -> str:
    """Reject what no parameter may carry: NUL, control characters, overlong values."""
    if len(value) > MAX_VALUE_CHARS:
        raise ValueError(f"{name}: value longer than {MAX_VALUE_CHARS} characters")
    allowed = "\n\t" if multiline else ""
    for ch in value:
        if ch in allowed:
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") or ch in "\u2028\u2029":
            what = "control" if category == "Cc" else "invalid"
            raise ValueError(f"{name}: {what} character U+{ord(ch):04X} in {show(value)}")
    return value


def parse_bool(name: str, value: str) -> bool:
    """Booleans the way people write them; anything else is an error, never 'true'."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{name}: expected a boolean (true/false, yes/no, 1/0), got {show(value)}")


class KubeVersion(NamedTuple):
    """A Kubernetes version compared numerically: (1, 10) > (1, 7)."""

    major: int
    minor: int
    patch: int = 0
    suffix: str = ""

    @property
    def minor_version(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}{self.suffix}"

    @property
    def is_gke(self) -> bool:
        return self.suffix.startswith("-gke.")


def parse_kube_version(name: str, value: str) -> KubeVersion:
    """`1.30`, `v1.30.2`, `1.27.3-gke.100`, `1.29.1+k3s1` (the suffixes old tooling saw)."""
    match = _KUBE_VERSION.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{name}: expected a Kubernetes version such as 1.30 or v1.30.2, got {show(value)}"
        )
    major, minor, patch, suffix = match.groups()
    return KubeVersion(int(major), int(minor), int(patch or 0), suffix or "")


def split_csv(name: str, value: str) -> list[str]:
    """One CSV record (quotes allowed, as the old service's CSV reader did); no empty items."""
    try:
        rows = list(csv.reader(io.StringIO(value, newline=""), skipinitialspace=True, strict=True))
    except csv.Error as exc:
        raise ValueError(f"{name}: malformed comma-separated list ({exc})") from None
    if len(rows) != 1:
        raise ValueError(f"{name}: expected one line of comma-separated values, got {len(rows)}")
    items = rows[0]
    if any(not item.strip() for item in items):
        raise ValueError(f"{name}: empty item in comma-separated list {show(value)}")
    return items


def parse_kvdb_urls(name: str, value: str) -> list[str]:
    urls = [item.strip() for item in split_csv(name, value)]
    for url in urls:
        check_text(name, url)
        if not _KVDB_URL.fullmatch(url):
            raise ValueError(
                f"{name}: {show(url)} is not a kvdb URL "
                "(etcd://host:port, etcd:https://host:port or consul:http://host:port)"
            )
    return urls


def parse_abs_path(name: str, value: str) -> str:
    check_text(name, value)
    if not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ValueError(f"{name}: expected an absolute path without spaces, got {show(value)}")
    return value


def parse_host_dir(name: str, value: str) -> str:
    """A host directory the service gets as a bind mount: absolute, normal, no `:` or `%`."""
    path = parse_abs_path(name, value)
    if ":" in path or "%" in path or path != "/" + "/".join(
        part for part in path.split("/") if part not in ("", ".")
    ) or "/../" in path + "/" or path == "/":
        raise ValueError(
            f"{name}: expected a normalised absolute directory other than / without ':' "
            f"or '%', got {show(value)}"
        )
    return path


def parse_path_list(name: str, value: str) -> list[str]:
    return [parse_abs_path(name, item.strip()) for item in split_csv(name, value)]


def parse_journal(name: str, value: str) -> str:
    return "auto" if value.strip() == "auto" else parse_abs_path(name, value)


def parse_iface(name: str, value: str) -> str:
    if not _IFACE.fullmatch(value):
        raise ValueError(
            f"{name}: expected a network interface name (up to 15 letters, digits, '_.:@-'), "
            f"got {show(value)}"
        )
    return value


def parse_image(name: str, value: str) -> str:
    if len(value) > 512 or not _IMAGE.fullmatch(value):
        raise ValueError(
            f"{name}: expected a container image reference such as "
            f"registry.example/portworx/pxhostd:1.0, got {show(value)}"
        )
    return value


def parse_cluster_name(name: str, value: str) -> str:
    """Letters, digits, `-`, `_`, `.`; a letter or digit at both ends; at most 63."""
    check_text(name, value)
    if not _CLUSTER_NAME.fullmatch(value):
        raise ValueError(
            f"{name}: expected a cluster name (letters, digits, '-', '_', '.'; starting and "
            f"ending with a letter or digit; at most {MAX_CLUSTER_NAME} characters), "
            f"got {show(value)}"
        )
    return value


def parse_dns_label(name: str, value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{name}: expected a Kubernetes namespace name (lower-case letters, digits, '-'; "
            f"at most 63), got {show(value)}"
        )
    return value


def parse_secret_type(name: str, value: str) -> str:
    if not _SECRET_TYPE.fullmatch(value):
        raise ValueError(
            f"{name}: expected a secret store type such as k8s, vault or aws-kms, got {show(value)}"
        )
    return value


def parse_userpwd(name: str, value: str) -> str:
    check_text(name, value, multiline=True)
    if ":" not in value:
        raise ValueError(f"{name}: expected user:password")
    return value


def parse_secret(name: str, value: str) -> str:
    return check_text(name, value, multiline=True)


def parse_env_list(name: str, value: str) -> list[tuple[str, str]]:
    """`K=V,K2=V2`; names must be valid environment names, values are kept verbatim."""
    pairs = []
    for item in split_csv(name, value):
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.fullmatch(key):
            raise ValueError(
                f"{name}: expected NAME=VALUE with a valid environment name, got {show(item)}"
            )
        pairs.append((key, check_text(name, val, multiline=True)))
    return pairs

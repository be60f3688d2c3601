"""Docker secrets (`/run/secrets/<name>`) as the pod's secret environment.

On Kubernetes the generated Secret reaches the pod as environment variables
(`PXHOSTD_TOKEN`, `PXHOSTD_KVDB_USERPWD`, `PXHOSTD_ACLTOKEN`, and `NAME` for a
secret-looking extra variable). Docker Swarm has no environment-from-secret: a secret is a
file under /run/secrets. The pod reads the files with the fixed names below and adds them
to the environment it builds the spec from under exactly those Kubernetes names, so from
there on both platforms take the same path to the service's root-only environment file
(never its arguments). The names are the contract with `pxhostctl spec --platform swarm`
and docs/swarm.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pxhostd.errors import InvalidSpec
from pxhostd.spec import rules

SECRETS_DIR = Path("/run/secrets")

#: Docker secret name (and file name under /run/secrets) -> the pod environment variable the
#: Kubernetes Secret sets for the same value.
SECRET_FILES: Mapping[str, str] = {
    "portworx-token": "PXHOSTD_TOKEN",
    "portworx-kvdb-userpwd": "PXHOSTD_KVDB_USERPWD",
    "portworx-acltoken": "PXHOSTD_ACLTOKEN",
}
#: `portworx-env.NAME`: the service environment variable NAME (a secret-looking `-e NAME=...`
#: of the generator, which on Kubernetes comes from the Secret key `env.NAME`).
ENV_SECRET_PREFIX = "portworx-env."
#: A secret is a short string; anything larger is a mistake (a file secret, a wrong target).
MAX_SECRET_BYTES = 64 * 1024

_log = logging.getLogger(__name__)


class BadSecret(InvalidSpec):
    """A Docker secret file the pod knows cannot be used (named, never its value)."""

    name = "InvalidSecret"


def env_name_for(file_name: str) -> str | None:
    """The environment variable a secret file becomes, or None if the name is not ours."""
    if file_name in SECRET_FILES:
        return SECRET_FILES[file_name]
    if file_name.startswith(ENV_SECRET_PREFIX):
        return file_name[len(ENV_SECRET_PREFIX):]
    return None


def _read_value(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise BadSecret(f"secret {path.name}: cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_SECRET_BYTES:
        raise BadSecret(f"secret {path.name}: larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSecret(f"secret {path.name}: not UTF-8 text") from None
    # `docker secret create NAME -` from `echo` leaves one trailing newline; nothing else
    # is trimmed (a secret may end in spaces on purpose).
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if "\n" in text or "\r" in text or "\0" in text:
        raise BadSecret(f"secret {path.name}: holds a line break or NUL inside its value")
    if text == "":
        raise BadSecret(f"secret {path.name}: is empty")
    return text


def read_docker_secrets(directory: Path = SECRETS_DIR) -> dict[str, str]:
    """Environment name -> value for every known secret file in `directory`.

    Unknown files are left alone (other services' secrets may be mounted too). A known
    file that cannot be used is a BadSecret naming the file; the value is never shown.
    """
    found: dict[str, str] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return found
    except OSError as exc:
        raise BadSecret(f"cannot list {directory}: {exc.strerror}") from exc
    for file_name in names:
        env = env_name_for(file_name)
        if env is None:
            _log.debug("%s/%s is not one of pxhostd's secrets; left alone", directory, file_name)
            continue
        try:
            rules.check_env_name("secret", env, InvalidSpec)
        except InvalidSpec:
            raise BadSecret(
                f"secret {file_name}: {env!r} is not a valid environment variable name"
            ) from None
        found[env] = _read_value(directory / file_name)
    return found


def merge_secrets(environ: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """The pod's environment with the secrets added; a secret wins over an inline value."""
    merged = dict(environ)
    for name, value in secrets.items():
        if name in merged and merged[name] != value:
            _log.warning("environment variable %s is also a Docker secret; the secret is used",
                         name)
        merged[name] = value
    return merged

"""The desired spec as plain immutable values.

Instances are built by `pxhostd.spec.validate` (which checks every field); the dataclasses
themselves do not re-validate, so tests can build them freely. Equal specs compare equal
and serialise to the same canonical dict, which is what the restart decision hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SERVICE = "portworx"


def unit_name(service: str) -> str:
    """The systemd unit that runs the service (one place for the suffix)."""
    return f"{service}.service"

#: Mount options in canonical order. Defaults (`rw`, `rbind`) are accepted on input and
#: dropped from the canonical form, so `/a:/b` and `/a:/b:rw` are the same mount.
MOUNT_OPTION_ORDER = ("ro", "norbind")


@dataclass(frozen=True)
class Mount:
    """A bind mount into the service's namespace: `src:dst[:opts]`."""

    src: str
    dst: str
    options: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def recursive(self) -> bool:
        return "norbind" not in self.options

    def __str__(self) -> str:
        if self.options:
            return f"{self.src}:{self.dst}:{','.join(self.options)}"
        return f"{self.src}:{self.dst}"


@dataclass(frozen=True)
class Spec:
    """What the host should run: a payload directory plus args, env and mounts."""

    payload: str
    service: str = DEFAULT_SERVICE
    args: tuple[str, ...] = ()
    #: Sorted by name; names are unique.
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()

    @property
    def unit_name(self) -> str:
        return unit_name(self.service)

    def to_dict(self) -> dict[str, object]:
        """Canonical plain form; `spec_from_dict(s.to_dict()) == s`."""
        return {
            "service": self.service,
            "payload": self.payload,
            "args": list(self.args),
            "env": dict(self.env),
            "mounts": [str(m) for m in self.mounts],
        }

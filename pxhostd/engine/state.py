"""What was last applied successfully, kept in one JSON file that is replaced atomically.

The decision compares the desired spec with this record (not with file mtimes), so it must
never be half written: it is saved with `atomic_write` and only after an operation reached
its commit point. A file that cannot be parsed is not guessed at: it is a named error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pxhostd.errors import HostStateError
from pxhostd.hostfs import atomic_write, remove_file
from pxhostd.spec.model import DEFAULT_SERVICE, Spec, unit_name
from pxhostd.spec.validate import spec_from_dict

#: Bumped when the layout of applied.json changes incompatibly.
APPLIED_SCHEMA = 1

#: State files may hold unit text and environment values (secrets): root only.
STATE_FILE_MODE = 0o600


class CorruptStateFile(HostStateError):
    """A state file exists but is not what pxhostd wrote (unparseable or wrong schema)."""


def utc_now() -> str:
    """Timestamp for state files: ISO 8601, UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dump_json(doc: dict[str, Any]) -> str:
    """Stable JSON text (sorted keys) so an unchanged state gives byte-identical files."""
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def read_json_object(path: Path, what: str, schema: int) -> dict[str, Any] | None:
    """Load a JSON object written by pxhostd; None if absent, CorruptStateFile if damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostStateError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStateFile(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CorruptStateFile(f"{what} {path} does not hold a JSON object")
    if doc.get("schema") != schema:
        raise CorruptStateFile(
            f"{what} {path} has schema {doc.get('schema')!r}, this pxhostd reads {schema}"
        )
    return doc


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise CorruptStateFile(f"applied state {path}: field {key!r} is missing or malformed")
    return value


def _optional(doc: dict[str, Any], key: str, path: Path) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise CorruptStateFile(f"applied state {path}: field {key!r} is malformed")
    return value


def _optional_bool(doc: dict[str, Any], key: str, path: Path) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise CorruptStateFile(f"applied state {path}: field {key!r} is malformed")
    return value


@dataclass(frozen=True)
class DesiredSource:
    """Who made a spec the desired state, and when."""

    #: For people: "spec file /etc/pxhostd/spec.yaml" or "Install over D-Bus".
    what: str
    at: str = field(default_factory=utc_now)
    #: sha256 of the spec file's bytes when the spec came from the file; "" otherwise.
    file_digest: str = ""


@dataclass(frozen=True)
class AppliedSpec:
    """The spec that was applied, as applied.json holds it.

    `doc` is kept exactly as written, so applied.json round-trips unchanged and a spec that
    an older pxhostd accepted still loads; what the engine reads of the installed service
    is parsed once, when the file is read, instead of at every use.
    """

    doc: dict[str, Any]
    service: str = DEFAULT_SERVICE
    #: The payload directory it was applied from (None: not recorded).
    payload: str | None = None

    @property
    def unit_name(self) -> str:
        return unit_name(self.service)

    def to_spec(self) -> Spec:
        """The spec under this pxhostd's rules; InvalidSpec if they refuse it now."""
        return spec_from_dict(self.doc)

    @classmethod
    def of(cls, spec: Spec) -> AppliedSpec:
        return cls(spec.to_dict(), spec.service, spec.payload)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], path: Path = Path("<memory>")) -> AppliedSpec:
        service = doc.get("service", DEFAULT_SERVICE)
        payload = doc.get("payload")
        if not isinstance(service, str) or not service:
            raise CorruptStateFile(f"applied state {path}: field 'spec.service' is malformed")
        return cls(doc, service, payload if isinstance(payload, str) else None)


@dataclass(frozen=True)
class AppliedState:
    """The host as pxhostd last left it after a successful operation."""

    #: The desired spec that was applied.
    spec: AppliedSpec
    #: Release directory name the `current` link points to.
    release_id: str
    #: Digest of the payload manifest's file list.
    payload_digest: str
    #: Digest of everything that matters to the running service (restart when it changes).
    restart_digest: str
    #: Unit file name -> sha256 of the text written.
    unit_digests: dict[str, str]
    #: Whether the service unit was enabled.
    enabled: bool
    #: Payload version (for history and status).
    version: str = ""
    #: Transaction that applied it.
    txid: str = ""
    #: When it was applied (utc_now()).
    applied_at: str = field(default_factory=utc_now)
    #: Where this desired state came from ("spec file /etc/pxhostd/spec.yaml", "Install
    #: over D-Bus") and when it was submitted; kept by reconciles that do not replace it.
    source: str = ""
    source_at: str = ""
    #: sha256 of the spec file's bytes when it was last applied from the file: the file is
    #: a new desired state only when its content differs from this (docs/spec-format.md).
    file_digest: str = ""
    #: /etc/pwx/config.json was missing when this state was recorded (after the service's
    #: start): restarting did not bring it, so its absence alone restarts nothing again.
    config_missing: bool = False

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"config_missing": True} if self.config_missing else {}
        return {
            "schema": APPLIED_SCHEMA,
            "spec": self.spec.doc,
            "release_id": self.release_id,
            "payload_digest": self.payload_digest,
            "restart_digest": self.restart_digest,
            "unit_digests": dict(self.unit_digests),
            "enabled": self.enabled,
            "version": self.version,
            "txid": self.txid,
            "applied_at": self.applied_at,
            "source": self.source,
            "source_at": self.source_at,
            "file_digest": self.file_digest,
            **extra,  # left out when false: a file of an earlier version saves back as it was
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], path: Path = Path("<memory>")) -> AppliedState:
        unit_digests = _field(doc, "unit_digests", dict, path)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in unit_digests.items()):
            raise CorruptStateFile(f"applied state {path}: field 'unit_digests' is malformed")
        return cls(
            spec=AppliedSpec.from_doc(_field(doc, "spec", dict, path), path),
            release_id=_field(doc, "release_id", str, path),
            payload_digest=_field(doc, "payload_digest", str, path),
            restart_digest=_field(doc, "restart_digest", str, path),
            unit_digests=dict(unit_digests),
            enabled=_field(doc, "enabled", bool, path),
            version=_field(doc, "version", str, path),
            txid=_field(doc, "txid", str, path),
            applied_at=_field(doc, "applied_at", str, path),
            # Absent in state files of older pxhostd versions.
            source=_optional(doc, "source", path),
            source_at=_optional(doc, "source_at", path),
            file_digest=_optional(doc, "file_digest", path),
            config_missing=_optional_bool(doc, "config_missing", path),
        )


class AppliedStateStore:
    """Load and save `AppliedState` in one file (Paths.applied_file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> AppliedState | None:
        """The last applied state; None if nothing was ever applied (or it was forgotten)."""
        doc = read_json_object(self.path, "applied state", APPLIED_SCHEMA)
        return None if doc is None else AppliedState.from_json(doc, self.path)

    def save(self, state: AppliedState) -> bool:
        """Replace the record atomically; False if the file already held exactly this."""
        return atomic_write(self.path, dump_json(state.to_json()), mode=STATE_FILE_MODE)

    def clear(self) -> bool:
        """Forget the applied state (uninstall); False if there was none."""
        return remove_file(self.path)

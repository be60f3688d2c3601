"""The payload manifest (`payload.yaml`) and the check that a directory matches it.

The manifest is the payload's identity: its digest (over a canonical serialisation) is what
the restart decision and the release directory name use. Every file the service may run is
listed with its sha256, so a tampered or half-copied payload is refused before anything on
the host changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pxhostd.errors import InvalidPayload
from pxhostd.payload.filelist import FileList, FileListBuilder
from pxhostd.payload.safeopen import HashingReader, PayloadDir
from pxhostd.spec import rules
from pxhostd.spec.yamlio import parse_yaml_document

MANIFEST_NAME = "payload.yaml"
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILES = 100_000
MAX_EXEC_ARGS = 64
MAX_EXEC_ARG_LEN = 4096
MAX_URL = 2048

MANIFEST_KEYS = ("name", "version", "exec", "notify", "health", "files", "reboot_unit",
                 "reboot_exec", "drain")
#: `drain`: whether an upgrade to this payload disrupts the pods using its volumes, so the
#: pod drains the node first (docs/pod.md). `never` is the default.
DRAIN_VALUES = ("never", "on-upgrade")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

E = InvalidPayload


@dataclass(frozen=True)
class PayloadHeader:
    """Everything of a manifest but its file list: what rendering and the decision use.

    Kept beside each release (a few hundred bytes), so a no-op and the daemon's start-up
    never rebuild a 100,000-entry manifest to learn the entry program.
    """

    name: str
    version: str
    exec: tuple[str, ...]
    notify: bool
    health: str | None
    reboot_unit: bool
    reboot_exec: tuple[str, ...]
    #: Manifest.digest of the full manifest.
    digest: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "version": self.version, "exec": list(self.exec),
            "notify": self.notify, "health": self.health, "reboot_unit": self.reboot_unit,
            "reboot_exec": list(self.reboot_exec), "digest": self.digest,
        }

    @classmethod
    def from_json(cls, doc: object) -> PayloadHeader:
        """Read back `to_json()`; InvalidPayload if the document is not one."""
        if not isinstance(doc, dict):
            raise E("payload header: not a JSON object")
        try:
            header = cls(
                name=str(doc["name"]), version=str(doc["version"]),
                exec=tuple(str(a) for a in doc["exec"]), notify=bool(doc["notify"]),
                health=None if doc["health"] is None else str(doc["health"]),
                reboot_unit=bool(doc["reboot_unit"]),
                reboot_exec=tuple(str(a) for a in doc["reboot_exec"]),
                digest=str(doc["digest"]),
            )
        except (KeyError, TypeError) as exc:
            raise E(f"payload header: malformed ({exc})") from None
        if not header.exec or len(header.digest) != 64:
            raise E("payload header: malformed (exec or digest)")
        return header


@dataclass(frozen=True)
class Manifest:
    """A checked `payload.yaml`."""

    name: str
    version: str
    #: Entry program relative to the payload root, then fixed arguments.
    exec: tuple[str, ...]
    notify: bool = False
    health: str | None = None
    #: (relative path, sha256 hex), sorted by path (any pairs given become a FileList).
    files: FileList = field(default_factory=FileList)
    reboot_unit: bool = False
    #: Program relative to the payload root plus arguments, run by the reboot unit.
    reboot_exec: tuple[str, ...] = ()
    drain: str = "never"
    digest: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.files, FileList):
            object.__setattr__(self, "files", FileList(self.files))
        object.__setattr__(self, "digest", _streamed_digest(self))

    @property
    def header(self) -> PayloadHeader:
        return PayloadHeader(self.name, self.version, self.exec, self.notify, self.health,
                             self.reboot_unit, self.reboot_exec, self.digest)

    def to_dict(self, *, with_files: bool = True) -> dict[str, object]:
        """Canonical plain form; `manifest_from_dict(m.to_dict()) == m`."""
        out: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "exec": list(self.exec),
            "notify": self.notify,
            "reboot_unit": self.reboot_unit,
        }
        if with_files:
            out["files"] = dict(self.files)
        if self.health is not None:
            out["health"] = self.health
        if self.reboot_exec:
            out["reboot_exec"] = list(self.reboot_exec)
        if self.drain != "never":  # left out at its default: old digests stay the same
            out["drain"] = self.drain
        return out


#: What rendering and the restart decision read: either form has the same fields.
PayloadInfo = Manifest | PayloadHeader


def _digest(data: Mapping[str, object]) -> str:
    """The definition: sha256 of the canonical JSON of `Manifest.to_dict()`."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _streamed_digest(m: Manifest) -> str:
    """`_digest(m.to_dict())` without building the file list's dict and JSON text: the
    keys before `files` in sorted order, the file list in pieces, then the rest."""
    plain = m.to_dict(with_files=False)
    head = {k: v for k, v in plain.items() if k < "files"}
    tail = {k: v for k, v in plain.items() if k > "files"}

    def inner(d: Mapping[str, object]) -> str:
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)[1:-1]

    h = hashlib.sha256()
    h.update(("{" + inner(head) + ("," if head else "") + '"files":').encode())
    m.files.canonical_json(h)
    h.update((("," if tail else "") + inner(tail) + "}").encode())
    return h.hexdigest()


def _check_exec(fld: str, value: object, files: FileList) -> tuple[str, ...]:
    items = rules.check_list(fld, value, MAX_EXEC_ARGS, E)
    if not items:
        raise E(f"{fld}: must name the program to run")
    program = rules.check_rel_path(f"{fld}[0]", items[0], E)
    if files.get(program) is None:
        raise E(f"{fld}[0]: program {program!r} is not listed in files")
    args = [
        rules.check_text(f"{fld}[{i}]", item, MAX_EXEC_ARG_LEN, E)
        for i, item in enumerate(items[1:], start=1)
    ]
    return (program, *args)


def _check_health(value: object) -> str:
    fld = "payload.yaml health"
    url = rules.check_text(fld, value, MAX_URL, E)
    if not url.isascii() or any(ch.isspace() for ch in url):
        raise E(f"{fld}: {rules.show(url)} must be ASCII without whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise E(f"{fld}: {rules.show(url)} is not a valid URL ({exc})") from None
    if parts.scheme != "http":
        raise E(f"{fld}: {rules.show(url)} must be an http:// URL")
    if parts.username is not None or parts.password is not None:
        raise E(f"{fld}: must not contain user information")
    if parts.hostname not in _LOOPBACK_HOSTS:
        raise E(f"{fld}: host must be loopback (127.0.0.1, localhost or [::1])")
    if port is None or port == 0:
        raise E(f"{fld}: must name a port")
    if parts.fragment:
        raise E(f"{fld}: must not contain a fragment")
    return url


#: Entries checked together (`FileListBuilder.extend`).
_CHUNK = 4096


def _file_entries(entries: Iterator[tuple[object, object]]) -> FileList:
    """The `files` mapping as the parser streams it: checked a chunk at a time, kept
    compact. A chunk that is not all plain paths and digests is checked entry by entry,
    which names the first bad one."""
    builder = FileListBuilder()
    keys: list[object] = []
    values: list[object] = []
    for key, digest in entries:
        keys.append(key)
        values.append(digest)
        if len(keys) >= _CHUNK:
            _add_chunk(builder, keys, values)
            keys, values = [], []
    _add_chunk(builder, keys, values)
    if not len(builder):
        raise E("payload.yaml files: must list at least the program in exec")
    return builder.finish()


def _add_chunk(builder: FileListBuilder, keys: list[object], values: list[object]) -> None:
    if not keys:
        return
    if (len(builder) + len(keys) <= MAX_FILES and MANIFEST_NAME not in keys
            and builder.extend(keys, values)):  # type: ignore[arg-type]
        return
    fld = "payload.yaml files"
    path_field = f"{fld} (path)"
    for key, digest in zip(keys, values, strict=True):
        path = rules.check_rel_path(path_field, key, E)
        if path == MANIFEST_NAME:
            raise E(f"{fld}: the manifest {MANIFEST_NAME} cannot list itself")
        rules.require_str(f"{fld}[{path!r}]", digest, E)
        if len(builder) >= MAX_FILES:
            raise E(f"{fld}: too many files (more than {MAX_FILES})")
        builder.add(path, digest)  # type: ignore[arg-type]


def _check_files(value: object) -> FileList:
    fld = "payload.yaml files"
    if isinstance(value, FileList):
        return value  # streamed by the parser and checked as it came
    if not isinstance(value, Mapping):
        raise E(f"{fld}: must be a mapping of relative path: sha256, got {rules.type_name(value)}")
    if len(value) > MAX_FILES:
        raise E(f"{fld}: too many files ({len(value)}, at most {MAX_FILES})")
    return _file_entries(iter(value.items()))


def manifest_from_dict(data: object) -> Manifest:
    """Validate plain values (parsed payload.yaml) into a Manifest."""
    if not isinstance(data, Mapping):
        raise E(f"payload.yaml: must be a mapping, got {rules.type_name(data)}")
    for key in data:
        if key not in MANIFEST_KEYS:
            close = rules.nearest(key, MANIFEST_KEYS)
            hint = f", did you mean {close!r}?" if close else ""
            raise E(f"payload.yaml: unknown key {rules.show(key)}{hint} "
                    f"(known keys: {', '.join(MANIFEST_KEYS)})")
    for key in ("name", "version", "exec", "files"):
        if key not in data:
            raise E(f"payload.yaml {key}: missing")
    files = _check_files(data["files"])
    reboot_unit = rules.require_bool("payload.yaml reboot_unit", data.get("reboot_unit", False), E)
    reboot_exec: tuple[str, ...] = ()
    if "reboot_exec" in data:
        if not reboot_unit:
            raise E("payload.yaml reboot_exec: given but reboot_unit is not true")
        reboot_exec = _check_exec("payload.yaml reboot_exec", data["reboot_exec"], files)
    elif reboot_unit:
        raise E("payload.yaml reboot_exec: missing (reboot_unit: true needs a program to run)")
    health = data.get("health")
    drain = rules.require_str("payload.yaml drain", data.get("drain", "never"), E)
    if drain not in DRAIN_VALUES:
        raise E(f"payload.yaml drain: {rules.show(drain)} must be one of "
                f"{', '.join(DRAIN_VALUES)}")
    return Manifest(
        name=rules.check_token("payload.yaml name", data["name"], E),
        version=rules.check_token("payload.yaml version", data["version"], E),
        exec=_check_exec("payload.yaml exec", data["exec"], files),
        notify=rules.require_bool("payload.yaml notify", data.get("notify", False), E),
        health=None if health is None else _check_health(health),
        files=files,
        reboot_unit=reboot_unit,
        reboot_exec=reboot_exec,
        drain=drain,
    )


def parse_manifest_yaml(text: str | bytes) -> Manifest:
    doc = parse_yaml_document(text, "payload.yaml", MAX_MANIFEST_BYTES, E,
                              streams={"files": _file_entries})
    return manifest_from_dict(doc)


def read_manifest_bytes(payload_dir: Path) -> bytes:
    """`<payload_dir>/payload.yaml` as bytes, read by descriptor from a trusted directory."""
    with PayloadDir(payload_dir) as src:
        return src.read(MANIFEST_NAME, MAX_MANIFEST_BYTES)


def load_manifest(payload_dir: Path) -> Manifest:
    """Read and validate `<payload_dir>/payload.yaml` (file contents are not checked here)."""
    return read_manifest(payload_dir)[0]


def _open_manifest(src: PayloadDir) -> HashingReader:
    fd, st = src.open(MANIFEST_NAME)
    if st.st_size > MAX_MANIFEST_BYTES:
        os.close(fd)
        raise E(f"payload.yaml: too large ({st.st_size} bytes, at most {MAX_MANIFEST_BYTES})")
    return HashingReader(fd, MANIFEST_NAME, MAX_MANIFEST_BYTES)


def read_manifest(payload_dir: Path) -> tuple[Manifest, str]:
    """Parse `<payload_dir>/payload.yaml` as it is read (never held whole); the manifest
    and the file's sha256."""
    with PayloadDir(payload_dir) as src:
        reader = _open_manifest(src)
        try:
            manifest = manifest_from_dict(parse_yaml_document(
                reader, "payload.yaml", MAX_MANIFEST_BYTES, E, streams={"files": _file_entries}))
            reader.drain()
            return manifest, reader.hexdigest()
        finally:
            reader.close()


def manifest_file_sha256(payload_dir: Path) -> str:
    """The sha256 of `<payload_dir>/payload.yaml`, read in pieces (what a no-op compares)."""
    with PayloadDir(payload_dir) as src:
        reader = _open_manifest(src)
        try:
            reader.drain()
            return reader.hexdigest()
        finally:
            reader.close()


def manifest_sha256(data: bytes) -> str:
    """The manifest file's own sha256: what a no-op compares instead of parsing."""
    return hashlib.sha256(data).hexdigest()


def verify_payload_files(payload_dir: Path, manifest: Manifest) -> None:
    """Check the directory holds every listed file with its sha256 (read by descriptor)."""
    with PayloadDir(payload_dir) as src:
        for rel, expected in manifest.files:
            fd, st = src.open(rel)
            try:
                h = hashlib.sha256()
                while chunk := os.read(fd, 1 << 20):
                    h.update(chunk)
            except OSError as exc:
                raise E(f"payload: cannot read {rel!r}: {exc.strerror}") from None
            finally:
                os.close(fd)
            if h.hexdigest() != expected:
                raise E(f"payload: sha256 mismatch for {rel!r} (the file's content is not "
                        f"the one payload.yaml lists: {expected[:12]}...)")
            if rel in _programs(manifest) and not st.st_mode & stat.S_IXUSR:
                raise E(f"payload: program {rel!r} is not executable")


def _programs(manifest: Manifest | PayloadHeader) -> set[str]:
    return {manifest.exec[0], *manifest.reboot_exec[:1]}

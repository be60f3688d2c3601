"""Versioned payload releases and the `current` link that selects one.

Layout: `<releases_dir>/<release_id>/...` plus `<releases_dir>/current -> <release_id>`
(a relative link). A release appears under its real name only complete and fsync'd: it is
built in a TEMP_PREFIX directory, every file verified against its sha256 while copied,
then renamed in. Removal renames to a TEMP_PREFIX name first. So after any crash the
directory holds complete releases plus temp leftovers that `sweep()` removes.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pxhostd.engine.failpoints import (
    DISABLED,
    MID_PRUNE,
    MID_RELEASE_REMOVE,
    MID_STAGE,
    Failpoints,
)
from pxhostd.errors import HostStateError, InvalidPayload
from pxhostd.hostfs import (
    TEMP_PREFIX,
    atomic_symlink,
    exchange_paths,
    fsync_dir,
    remove_file,
    remove_tree,
    sha256_file,
    sweep_temp_files,
    temp_name,
    write_all,
)

CURRENT = "current"
_CHUNK = 1 << 20


def make_release_id(version: str, payload_digest: str) -> str:
    """Directory name of a release: readable version plus enough digest to be unique."""
    return f"{version}-{payload_digest[:12]}"


@dataclass(frozen=True)
class StageResult:
    release_id: str
    path: Path
    #: False when the release was already staged and verified (nothing written).
    changed: bool


def _check_release_id(rid: str) -> None:
    if (
        not rid
        or rid in (CURRENT, ".", "..")
        or rid.startswith((".", TEMP_PREFIX))
        or "/" in rid
        or "\0" in rid
    ):
        raise HostStateError(f"not a valid release id: {rid!r}")


def _check_rel_path(rel: str) -> PurePosixPath:
    """Defence in depth: the manifest validator already refuses these."""
    p = PurePosixPath(rel)
    if (
        not rel
        or "\0" in rel
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
        raise InvalidPayload(f"payload file path {rel!r} is not a plain relative path")
    return p


def _is_executable(mode: int) -> bool:
    return bool(mode & stat.S_IXUSR)


def _copy_verified(src: Path, dst: Path, rel: str, expected: str) -> None:
    """Copy one file, hashing on the way; the temp tree is discarded on any error."""
    try:
        src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise InvalidPayload(f"payload file {rel} is missing ({src})") from exc
    except OSError as exc:
        raise InvalidPayload(f"payload file {rel} cannot be read: {exc.strerror}") from exc
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidPayload(f"payload file {rel} is not a regular file")
        mode = 0o755 if _is_executable(st.st_mode) else 0o644
        h = hashlib.sha256()
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            while True:
                try:
                    chunk = os.read(src_fd, _CHUNK)
                except OSError as exc:
                    raise InvalidPayload(
                        f"payload file {rel} cannot be read: {exc.strerror}"
                    ) from exc
                if not chunk:
                    break
                h.update(chunk)
                write_all(dst_fd, chunk)
            os.fchmod(dst_fd, mode)
            os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    digest = h.hexdigest()
    if digest != expected.lower():
        raise InvalidPayload(
            f"payload file {rel}: sha256 mismatch (manifest {expected}, file {digest})"
        )


class Releases:
    """The releases directory: stage, verify, switch, prune, remove."""

    #: `Releases.release_id(version, payload_digest)`, the directory name of a release.
    release_id = staticmethod(make_release_id)

    def __init__(self, releases_dir: Path, failpoints: Failpoints = DISABLED) -> None:
        self.releases_dir = releases_dir
        self.current_link = releases_dir / CURRENT
        self.failpoints = failpoints

    def path(self, release_id: str) -> Path:
        _check_release_id(release_id)
        return self.releases_dir / release_id

    def exists(self, release_id: str) -> bool:
        p = self.path(release_id)
        return p.is_dir() and not p.is_symlink()

    # -- staging -------------------------------------------------------------------------

    def stage(
        self, payload_dir: Path, release_id: str, files: Mapping[str, str]
    ) -> StageResult:
        """Copy and verify the listed payload files into release `release_id` (idempotent).

        `files` maps each relative path to its sha256. A release that already exists and
        matches (content and executable bits) is left alone; one that does not is replaced
        by an atomic exchange, so the real name never points at a partial tree.
        """
        for rel in files:
            _check_rel_path(rel)
        rid = release_id
        final = self.path(rid)
        in_the_way = os.path.lexists(final)
        if in_the_way and self._matches_source(final, payload_dir, files):
            return StageResult(rid, final, changed=False)
        self._ensure_dir()
        tmp = temp_name(self.releases_dir, rid)
        try:
            self._build(tmp, payload_dir, files)
            if in_the_way and final.is_dir() and not final.is_symlink():
                self._replace_tree(tmp, final)
            else:
                if in_the_way:
                    remove_file(final)
                os.rename(tmp, final)
            fsync_dir(self.releases_dir)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise HostStateError(f"cannot stage release {rid}: {exc.strerror}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return StageResult(rid, final, changed=True)

    def _ensure_dir(self) -> None:
        if self.releases_dir.is_dir():
            return
        try:
            self.releases_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.releases_dir.parent)
        except OSError as exc:
            raise HostStateError(f"cannot create {self.releases_dir}: {exc.strerror}") from exc

    def _replace_tree(self, new: Path, final: Path) -> None:
        """Put the complete tree `new` in place of the (damaged) tree `final`."""
        try:
            exchange_paths(new, final)  # `new` now holds the damaged tree
        except HostStateError:
            # Filesystem without RENAME_EXCHANGE: two renames. A crash between them leaves
            # no tree under the real name; recovery re-stages it (the journal has `stage`).
            doomed = temp_name(self.releases_dir, final.name)
            os.rename(final, doomed)
            os.rename(new, final)
            fsync_dir(self.releases_dir)
            shutil.rmtree(doomed)
            return
        shutil.rmtree(new)

    def _build(self, tmp: Path, payload_dir: Path, files: Mapping[str, str]) -> None:
        os.mkdir(tmp, 0o755)
        os.chmod(tmp, 0o755)
        dirs: set[Path] = {tmp}
        for n, rel in enumerate(sorted(files)):
            dst = tmp / rel
            parent = dst.parent
            if parent not in dirs:
                parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                while parent != tmp:
                    dirs.add(parent)
                    parent = parent.parent
            _copy_verified(payload_dir / rel, dst, rel, files[rel])
            if n == 0:
                self.failpoints.hit(MID_STAGE)
        # Deepest first, so each directory's entries are durable before its parent's.
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)

    def _matches_source(self, release: Path, payload_dir: Path, files: Mapping[str, str]) -> bool:
        if not self._verify_path(release, files):
            return False
        for rel in files:
            try:
                src_mode = (payload_dir / rel).stat().st_mode
            except OSError:
                continue  # source gone: the verified content (pinned by digest) decides
            have_mode = (release / rel).stat().st_mode
            if _is_executable(src_mode) != _is_executable(have_mode):
                return False
        return True

    def verify(self, release_id: str, files: Mapping[str, str]) -> bool:
        """True if the release holds exactly the listed files with the listed sha256."""
        return self._verify_path(self.path(release_id), files)

    def _verify_path(self, release: Path, files: Mapping[str, str]) -> bool:
        if release.is_symlink() or not release.is_dir():
            return False
        found: set[str] = set()
        try:
            for root, dirnames, filenames in os.walk(release):
                for name in dirnames:
                    if (Path(root) / name).is_symlink():
                        return False
                for name in filenames:
                    p = Path(root) / name
                    if p.is_symlink() or not p.is_file():
                        return False
                    found.add(p.relative_to(release).as_posix())
            if found != set(files):
                return False
            return all(
                sha256_file(release / rel) == expected.lower()
                for rel, expected in files.items()
            )
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise HostStateError(f"cannot verify release {release}: {exc.strerror}") from exc

    # -- the current link ----------------------------------------------------------------

    def current(self) -> str | None:
        """The release id `current` points at; None if there is no link."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HostStateError(
                f"{self.current_link} is not a symlink: {exc.strerror}"
            ) from exc
        try:
            _check_release_id(target)
        except HostStateError as exc:
            raise HostStateError(
                f"{self.current_link} points at {target!r}, not at a release id"
            ) from exc
        return target

    def switch(self, release_id: str) -> str | None:
        """Point `current` at the release atomically; return the release it pointed at."""
        if not self.exists(release_id):
            raise HostStateError(f"cannot switch to release {release_id}: it is not staged")
        previous = self.current()
        atomic_symlink(release_id, self.current_link)
        return previous

    def unlink_current(self) -> str | None:
        """Remove the `current` link durably (uninstall); return what it pointed at."""
        previous = self.current()
        remove_file(self.current_link)
        return previous

    # -- listing and removal ---------------------------------------------------------------

    def list(self) -> builtins.list[str]:
        """Staged release ids, sorted by name (temp leftovers and `current` excluded)."""
        if not self.releases_dir.is_dir():
            return []
        return sorted(
            e.name
            for e in self.releases_dir.iterdir()
            if e.name != CURRENT
            and not e.name.startswith(".")
            and e.is_dir()
            and not e.is_symlink()
        )

    def remove(self, release_id: str) -> bool:
        """Remove one release durably; refuses the current one. False if it was absent."""
        if release_id == self.current():
            raise HostStateError(f"refusing to remove release {release_id}: it is current")
        return remove_tree(self.path(release_id))

    def prune(self, keep: Collection[str]) -> builtins.list[str]:
        """Remove every release not in `keep`, never the current one; return removed ids."""
        current = self.current()
        removed: builtins.list[str] = []
        for rid in self.list():
            if rid in keep or rid == current:
                continue
            if remove_tree(self.path(rid)):
                removed.append(rid)
                self.failpoints.hit(MID_PRUNE)
        return removed

    def remove_all(self) -> builtins.list[str]:
        """Uninstall: drop `current`, every release and leftovers, then the directory."""
        if not self.releases_dir.is_dir():
            return []
        self.unlink_current()
        removed: builtins.list[str] = []
        for rid in self.list():
            if remove_tree(self.path(rid)):
                removed.append(rid)
                self.failpoints.hit(MID_RELEASE_REMOVE)
        self.sweep()
        with contextlib.suppress(OSError):
            self.releases_dir.rmdir()
            fsync_dir(self.releases_dir.parent)
        return removed

    def sweep(self) -> builtins.list[Path]:
        """Remove temp leftovers of interrupted staging, removal or link switches."""
        return sweep_temp_files(self.releases_dir)

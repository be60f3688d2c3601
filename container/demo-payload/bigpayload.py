#!/usr/bin/python3
"""Build a pxdemo payload at a real payload's size: the demo program plus a generated tree.

    bigpayload.py OUTDIR --version 1.0.0 [--files 20000] [--large 2] [--change small|large]
                  [--min-size 200] [--max-size 65536] [--large-size 67108864]
                  [--seed pxbench] [--link-from DIR] [--port N]

The same arguments always give byte-identical files (each file's bytes come from a PRNG
seeded with the seed and the file's path), so two versions built with different
`--change` differ in exactly the files named below and nothing else:

- `--change small`: one small file (`rootfs/usr/lib/px/d000/f00000.bin`) differs;
- `--change large`: one large file (`rootfs/opt/px/blob0.bin`) differs.

The version is baked into the demo program, so `pxdemo` and `VERSION` differ between
versions too (a few KiB). `--link-from DIR` hardlinks every file that is the same in DIR
(built with the same seed and sizes) instead of writing it again. Standard library only:
it runs inside a test node.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import MANIFEST, BuildError, build, render_manifest

SMALL_DIR = "rootfs/usr/lib/px"
LARGE_DIR = "rootfs/opt/px"
PER_DIR = 100
CHANGED_SMALL = f"{SMALL_DIR}/d000/f00000.bin"
CHANGED_LARGE = f"{LARGE_DIR}/blob0.bin"


def layout(files: int, large: int) -> list[str]:
    """Relative paths of the generated files (the demo program's files come on top)."""
    small = [f"{SMALL_DIR}/d{i // PER_DIR:03d}/f{i:05d}.bin" for i in range(files)]
    return small + [f"{LARGE_DIR}/blob{k}.bin" for k in range(large)]


def is_changed(rel: str, change: str) -> bool:
    return (change == "small" and rel == CHANGED_SMALL) or (
        change == "large" and rel == CHANGED_LARGE
    )


def content(rel: str, args: argparse.Namespace) -> bytes:
    rng = random.Random(f"{args.seed}:{rel}")
    large = rel.startswith(LARGE_DIR)
    data = bytearray(rng.randbytes(args.large_size if large else
                                   rng.randint(args.min_size, args.max_size)))
    if is_changed(rel, args.change):
        # 16 bytes differ, and differently per version: each version's change is new.
        data[:16] = hashlib.sha256(f"changed:{args.version}".encode()).digest()[:16]
    return bytes(data)


def generate(args: argparse.Namespace) -> dict[str, str]:
    out: Path = args.outdir
    files = build(out, args.version, port=args.port)
    (out / MANIFEST).unlink()  # written again below, listing the whole tree
    listed = dict(files)
    made: set[Path] = set()
    for rel in layout(args.files, args.large):
        path = out / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            made.add(path.parent)
        source = args.link_from / rel if args.link_from else None
        if source is not None and not is_changed(rel, args.change) and source.is_file():
            if path.exists():
                path.unlink()
            os.link(source, path)
            with open(path, "rb") as f:
                listed[rel] = hashlib.file_digest(f, "sha256").hexdigest()
            continue
        data = content(rel, args)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        listed[rel] = hashlib.sha256(data).hexdigest()
    health = f"http://127.0.0.1:{args.port}/v1/cluster/nodehealth"
    manifest = render_manifest("portworx-demo", args.version, health, listed)
    (out / MANIFEST).write_text(manifest)
    for dirpath, _dirs, _files in os.walk(out):
        os.chmod(dirpath, 0o755)
    return listed


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Build a big deterministic pxdemo payload.")
    p.add_argument("outdir", type=Path)
    p.add_argument("--version", required=True)
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--large", type=int, default=2)
    p.add_argument("--min-size", type=int, default=200)
    p.add_argument("--max-size", type=int, default=64 << 10)
    p.add_argument("--large-size", type=int, default=64 << 20)
    p.add_argument("--change", choices=["none", "small", "large"], default="none")
    p.add_argument("--seed", default="pxbench")
    p.add_argument("--link-from", type=Path, default=None)
    p.add_argument("--port", type=int, default=9001)
    args = p.parse_args(argv)
    try:
        listed = generate(args)
    except (BuildError, OSError) as exc:
        print(f"bigpayload.py: {exc}", file=sys.stderr)
        return 1
    size = sum((args.outdir / rel).stat().st_size for rel in listed)
    print(f"{args.outdir}: {len(listed)} files, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

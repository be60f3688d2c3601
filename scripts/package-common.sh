# shellcheck shell=bash disable=SC2034  # variables here are read by the sourcing scripts
# Shared by scripts/build-deb and scripts/build-rpm (sourced, not run).
# Exports a clean copy of the source tree, applies an optional local version and checks
# that the code's version and the packaging's version agree.

# Tools from the distribution only: a developer's pyenv or venv python must not leak into
# a package build.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# The version the code declares (pxhostd/__init__.py is the one source of truth).
code_version() {
    sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$1/pxhostd/__init__.py"
}

# Copy the tree into $1: files git knows about (tracked, or new and not ignored) when this
# is a git checkout, so virtualenvs, caches, build trees and out/ never get in; otherwise
# the whole tree minus the usual build debris.
export_tree() {
    local dest=$1
    mkdir -p "$dest"
    if git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (
            cd "$REPO_ROOT" || exit 1
            git ls-files -z --cached --others --exclude-standard |
                while IFS= read -r -d '' f; do
                    if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
                done |
                tar --null --no-recursion -T - -cf -
        ) | tar -xf - -C "$dest"
    else
        tar -C "$REPO_ROOT" -cf - \
            --exclude=.git --exclude=.venv --exclude=.cache --exclude=out \
            --exclude=build --exclude=dist --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude='*.pyc' --exclude=debian/pxhostd \
            --exclude=debian/.debhelper . | tar -xf - -C "$dest"
    fi
}

# Turn the copy in $1 into version $2 (code, pyproject.toml); prints nothing.
set_code_version() {
    local tree=$1 version=$2
    sed -i "s/^__version__ = \".*\"$/__version__ = \"$version\"/" "$tree/pxhostd/__init__.py"
    sed -i "0,/^version = \".*\"$/s//version = \"$version\"/" "$tree/pyproject.toml"
}

# Parse --out DIR (default out/), --nocheck (skip the build-time entry-point import check)
# and --local-version SUFFIX (a newer build of the same code, e.g. for upgrade tests:
# 0.1.0 becomes 0.1.0+SUFFIX, which sorts after 0.1.0 for dpkg, rpm and PEP 440).
LOCAL_VERSION=${PXHOSTD_LOCAL_VERSION:-}
NOCHECK=
OUT_DIR=$REPO_ROOT/out
case " ${DEB_BUILD_OPTIONS:-} " in *" nocheck "*) NOCHECK=1 ;; esac
parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --nocheck) NOCHECK=1; shift ;;
            --out) [ $# -ge 2 ] || die "--out needs a directory"
                   OUT_DIR=$2; shift 2 ;;
            --out=*) OUT_DIR=${1#*=}; shift ;;
            --local-version) [ $# -ge 2 ] || die "--local-version needs a value"
                             LOCAL_VERSION=$2; shift 2 ;;
            --local-version=*) LOCAL_VERSION=${1#*=}; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; exit 2 ;;
        esac
    done
    if [ -n "$LOCAL_VERSION" ] && ! printf '%s' "$LOCAL_VERSION" | grep -Eqx '[a-z0-9]+(\.[a-z0-9]+)*'; then
        die "--local-version: '$LOCAL_VERSION' must be lower-case letters and digits, dot-separated"
    fi
    mkdir -p "$OUT_DIR"
    OUT_DIR=$(cd "$OUT_DIR" && pwd)
}

# Fail with one message naming every missing tool.
require_tools() {
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing tools: ${missing[*]} (scripts/setup-host installs them)"
    fi
}

# Run a build step quietly; on failure show the end of its log.
run_logged() {
    local log=$1; shift
    if ! "$@" >"$log" 2>&1; then
        echo "$(basename "$0"): build failed; last lines of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

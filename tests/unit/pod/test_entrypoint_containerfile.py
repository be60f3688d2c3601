"""container/Containerfile, read: the quick checks beside the real build.

`make image` builds it with podman (tests/e2e/test_pod_podman.py runs the result); these
checks say, without an engine, that every file it COPYs is what `make packages` produces,
the paths it fills are the ones the entrypoint reads, the base is made locally (no
registry), and nothing it sets in the environment can leak into the spec the pod builds.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from pxhostd import __version__
from pxhostd.pod.hostinstall import IMAGE_PACKAGES, package_name
from pxhostd.pod.hostpayload import IMAGE_PAYLOAD
from pxhostd.pod.specbuild import is_dropped_env

REPO = Path(__file__).resolve().parents[3]
CONTAINERFILE = REPO / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        result.append((word.upper(), rest.strip()))
    assert not pending, "the Containerfile ends inside a continued line"
    return result


def build_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def expand(text: str) -> str:
    args = build_args()
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def test_known_instructions_only() -> None:
    known = {"FROM", "ARG", "ENV", "COPY", "RUN", "LABEL", "STOPSIGNAL", "ENTRYPOINT",
             "HEALTHCHECK"}
    assert {word for word, _ in instructions()} <= known


def test_base_is_the_locally_made_image() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    # ARG before FROM: the default names the local image, never a registry's.
    text = CONTAINERFILE.read_text()
    assert text.index("ARG BASE_IMAGE=") < text.index("FROM ")
    assert re.search(r"^ARG BASE_IMAGE=localhost/", text, re.M)
    build = (REPO / "scripts" / "build-image").read_text()
    assert "debootstrap --variant=minbase" in build and "--pull=never" in build


def test_apt_update_failure_fails_the_build() -> None:
    runs = [rest for word, rest in instructions() if word == "RUN"]
    (apt,) = [r for r in runs if "apt-get update" in r]
    assert "apt-get update --error-on=any" in apt
    assert 'test -n "${DEBIAN_MIRROR}"' in apt


def test_healthcheck_is_the_pod_probe_in_exec_form() -> None:
    (check,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    assert check.endswith('CMD ["pxhostctl", "probe", "--pod"]'), check


def test_build_context_is_only_the_deb() -> None:
    lines = [ln for ln in (REPO / ".containerignore").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines == ["*", "!out/pxhostd_*_all.deb"]


def test_version_arg_matches_the_code() -> None:
    assert build_args()["PXHOSTD_VERSION"] == __version__


def test_every_copy_source_exists_or_is_built_by_make_packages() -> None:
    build_deb = (REPO / "scripts" / "build-deb").read_text()
    assert 'deb="pxhostd_${version}_all.deb"' in build_deb  # what `make deb` leaves in out/
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^packages:.*\bdeb\b", makefile, re.M)
    copies = [shlex.split(expand(rest)) for word, rest in instructions() if word == "COPY"]
    assert copies
    for *sources, dest in copies:
        for source in sources:
            if source.startswith("out/"):
                assert source == f"out/{package_name(__version__)}"
                assert dest.rstrip("/") == str(IMAGE_PACKAGES)
            else:
                assert (REPO / source).exists(), source


def test_image_paths_are_the_entrypoints() -> None:
    text = expand(CONTAINERFILE.read_text())
    assert f"{IMAGE_PACKAGES}/{package_name(__version__)}" in text
    run_lines = [expand(rest) for word, rest in instructions() if word == "RUN"]
    payload_builds = [r for r in run_lines if "demo-payload/build.py" in r]
    assert len(payload_builds) == 1
    argv = shlex.split(payload_builds[0])
    assert argv[:2] == ["python3", "/usr/share/pxhostd/demo-payload/build.py"]
    assert argv[2] == str(IMAGE_PAYLOAD)
    # ... and that build.py is in the .deb:
    rules = (REPO / "debian" / "rules").read_text()
    assert "$(PKG)/usr/share/pxhostd/demo-payload/" in rules


def test_entrypoint_is_the_console_script_in_exec_form() -> None:
    (entry,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    # Exec form: no shell between the kubelet and tini, which reaps orphans as a child
    # subreaper (hostPID: not PID 1) and forwards SIGTERM to the entrypoint.
    assert entry == '["tini", "-s", "--", "pxhostd-pod"]'
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pxhostd-pod"] == "pxhostd.pod.entrypoint:main"


def test_image_environment_never_reaches_the_spec() -> None:
    env_lines = [rest for word, rest in instructions() if word == "ENV"]
    names = [item.split("=", 1) for line in env_lines for item in shlex.split(line)]
    assert names
    for name, value in names:
        assert is_dropped_env(name, value), f"ENV {name} would become the service's"


@pytest.mark.parametrize("word", ["RUN", "COPY"])
def test_no_registry_or_mirror_host_names(word: str) -> None:
    for w, rest in instructions():
        if w == word:
            assert "http://" not in rest and "https://" not in rest

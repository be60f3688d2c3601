"""`pxhostctl spec --platform swarm`: the compose file for `docker stack deploy`.

Structure (what docs/swarm.md promises), no secret value in the output, and injection: every
hostile value survives the three expansions the file goes through on its way to the pod
(YAML; `docker stack deploy`'s `$` interpolation; Swarm's Go templates in env values), each
re-implemented here from the documented rules, and compared with the intended value.
A real `docker stack deploy` of the file: tests/e2e/test_swarm.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from specgen_helpers import ServerProcess

from pxhostd.errors import InvalidSpec
from pxhostd.manifest.model import render_for_platform
from pxhostd.manifest.model.swarm import SECRET_NAMES, compose
from pxhostd.manifest.params import parse_params
from pxhostd.pod import specbuild
from pxhostd.pod.dockersecrets import SECRET_FILES

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"t": "tok-s3cr3t", "pwd": "user:pw-s3cr3t", "acl": "acl-s3cr3t"}

HOSTILE = [
    "a\nb: c", "a\n---\nkind: Evil\n...", "a'b\"c", "{{ .Service.Name }}", "{{.Node.ID}}",
    "${HOME}", "$HOME", "$$", "$", "${X:-evil}", "$(reboot)`id`;rm -rf /", "a #b", "#b",
    "ünï©ødé ☃ \u202e", "&a *a !!python/object:os.system [x] {y: z}", "a\\nb\\", "- item",
    "yes", "0o17", "{{", "}}{{{", '{{"{{"}}',
]


# -- the expansions the file goes through, re-implemented ---------------------------------

_INTERP = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|)")


def interpolate(value: str) -> str:
    """docker stack deploy: `$$` is `$`; `$VAR`, `${VAR...}` are substituted (here: refused)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        raise AssertionError(f"{value!r} would be interpolated at {match.group(0)!r}")

    return _INTERP.sub(sub, value)


def interpolate_all(obj: Any) -> Any:
    if isinstance(obj, str):
        return interpolate(obj)
    if isinstance(obj, list):
        return [interpolate_all(x) for x in obj]
    if isinstance(obj, dict):
        return {k: interpolate_all(v) for k, v in obj.items()}
    return obj


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)


def expand_template(value: str, node: str = "node-1") -> str:
    """Swarm's Go templates in env values; only string constants and .Node.Hostname here."""

    def action(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if body == ".Node.Hostname":
            return node
        constant = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', body)
        if constant is None:
            raise AssertionError(f"{value!r}: template action {match.group(0)!r} would run")
        return constant.group(1)

    return _ACTION.sub(action, value)


def service(text: str) -> dict[str, Any]:
    doc = interpolate_all(yaml.safe_load(text))
    assert set(doc) <= {"version", "services", "networks", "secrets"}
    assert list(doc["services"]) == ["portworx"]
    svc: dict[str, Any] = doc["services"]["portworx"]
    return svc


def render(pairs: list[tuple[str, str]]) -> str:
    return render_for_platform(parse_params([("platform", "swarm"), *pairs]))


# -- structure --------------------------------------------------------------------------------


def test_one_global_service_on_the_host_network_with_three_binds() -> None:
    text = render([("c", "px1"), ("k", "etcd://10.0.0.1:2379")])
    doc = yaml.safe_load(text)
    assert doc["version"] == "3.8"
    assert doc["networks"] == {"hostnet": {"external": True, "name": "host"}}
    svc = service(text)
    assert svc["networks"] == ["hostnet"]
    assert svc["deploy"]["mode"] == "global"
    assert svc["entrypoint"] == ["tini", "-s", "--", "pxhostd-pod"]
    assert svc["command"][0] == "--host-access=bus"
    assert [(v["type"], v["source"], v["target"]) for v in svc["volumes"]] == [
        ("bind", p, p) for p in ("/run/dbus/system_bus_socket", "/opt/pwx", "/run/pxhostd")
    ]
    assert svc["healthcheck"]["test"] == ["CMD", "pxhostctl", "probe", "--pod"]
    assert svc["stop_grace_period"] == "10s" and svc["stop_signal"] == "SIGTERM"
    update = svc["deploy"]["update_config"]
    assert (update["parallelism"], update["order"], update["failure_action"]) == (
        1, "stop-first", "rollback")
    assert update["monitor"] == "30s"
    assert svc["deploy"]["rollback_config"]["order"] == "stop-first"
    assert "secrets" not in svc and "secrets" not in doc
    assert "privileged" not in text and "docker.sock" not in text


def test_the_pods_args_are_what_the_pod_passes_to_the_service() -> None:
    svc = service(render([("c", "px1"), ("s", "/dev/sdb"), ("d", "eth1")]))
    options = specbuild.parse_pod_args(svc["command"])
    assert options.host_access.value == "bus"
    assert list(options.args) == ["-c", "px1", "-b", "-d", "eth1", "-s", "/dev/sdb"]
    assert options.ignored == ()


def test_secrets_are_external_with_fixed_names_and_never_written() -> None:
    pairs = [(k, v) for k, v in SECRETS.items()] + [("e", "REG_PASSWORD=reg-s3cr3t,A=1")]
    text = render(pairs)
    for value in (*SECRETS.values(), "reg-s3cr3t"):
        assert value not in text
    doc = yaml.safe_load(text)
    names = ["portworx-token", "portworx-kvdb-userpwd", "portworx-acltoken",
             "portworx-env.REG_PASSWORD"]
    assert doc["secrets"] == {name: {"external": True} for name in names}
    svc = service(text)
    assert sorted(s["source"] for s in svc["secrets"]) == sorted(names)
    for s in svc["secrets"]:
        assert (s["target"], s["uid"], s["gid"], s["mode"]) == (s["source"], "0", "0", 0o400)
    assert svc["environment"] == {"PXHOSTD_NODE_NAME": "{{.Node.Hostname}}", "A": "1"}
    # The header tells how to create each, without a value.
    for name in names:
        assert f"docker secret create {name} -" in text


def test_generator_secret_names_are_the_ones_the_pod_reads() -> None:
    assert set(SECRET_NAMES.values()) == set(SECRET_FILES)


def test_kubernetes_only_parameters_are_warned_about() -> None:
    params = parse_params([("platform", "swarm"), ("mas", "true"), ("ns", "storage")])
    assert any(w.startswith("mas: only for Kubernetes") for w in params.warnings)
    assert any(w.startswith("ns: only for Kubernetes") for w in params.warnings)
    assert "# WARNING: mas: only for Kubernetes" in render_for_platform(params)
    assert compose(params) == compose(parse_params([("platform", "swarm")]))


@pytest.mark.parametrize("value", ["docker", "swarmy", "1"])
def test_unknown_platform_is_refused(value: str) -> None:
    with pytest.raises(InvalidSpec, match="platform: expected kubernetes or swarm"):
        parse_params([("platform", value)])


def test_kubernetes_stays_the_default() -> None:
    assert render_for_platform(parse_params([])).count("kind: DaemonSet") == 1
    assert "kind: DaemonSet" in render_for_platform(parse_params([("platform", "k8s")]))


# -- injection --------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_values_arrive_intact(payload: str) -> None:
    clean = payload.replace("\n", " ")
    pairs = [("c", "px1"), ("ca", "/etc/pwx/" + clean.replace(" ", "_")),
             ("e", '"A=' + payload.replace('"', '""') + '"'),
             ("s", "/dev/" + clean.replace(" ", "_").replace(",", "_"))]
    params = parse_params([("platform", "swarm"), *pairs])  # all are valid text
    svc = service(render_for_platform(params))
    command = svc["command"]
    assert command[command.index("-c") + 1] == "px1"
    assert command[command.index("-ca") + 1] == params.etcd_ca
    assert command[command.index("-s") + 1] == params.drives[0]
    assert expand_template(svc["environment"]["A"]) == dict(params.env)["A"]
    assert expand_template(svc["environment"]["PXHOSTD_NODE_NAME"]) == "node-1"


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_env_value_survives_every_expansion(value: str) -> None:
    try:
        params = parse_params([("platform", "swarm"), ("e", "A=" + value.replace(",", ""))])
    except InvalidSpec:
        return
    svc = service(render_for_platform(params))
    assert expand_template(svc["environment"]["A"]) == dict(params.env)["A"]


# -- the CLI and the web service ------------------------------------------------------------


def test_cli_platform_swarm(tmp_path: Path) -> None:
    out = tmp_path / "stack.yml"
    proc = subprocess.run(
        [sys.executable, "-m", "pxhostd.cli.main", "spec", "--platform", "swarm", "-c", "px1",
         "-t", SECRETS["t"], "-o", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert SECRETS["t"] not in text
    assert service(text)["deploy"]["mode"] == "global"


def test_web_platform_swarm(specgen: ServerProcess) -> None:
    answer = specgen.get("/?" + urlencode({"platform": "swarm", "c": "px1"}))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/yaml")
    assert service(answer.body)["command"][:3] == ["--host-access=bus", "-c", "px1"]
    page = specgen.get("/", accept="text/html").body
    assert '<select id="f-platform" name="platform"' in page
    assert '<option value="swarm">swarm</option>' in page
    result = specgen.get("/?platform=swarm&c=px1", accept="text/html").body
    assert "docker stack deploy -c portworx.yaml portworx" in result

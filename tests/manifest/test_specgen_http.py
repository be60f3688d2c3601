"""`pxhostd-specgen` over real HTTP: form, YAML, errors, health, retired endpoints, headers."""

from __future__ import annotations

import html
import html.parser
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from specgen_helpers import ServerProcess, load_docs, one, validate_all

from pxhostd import __version__
from pxhostd.manifest.model import render_yaml
from pxhostd.manifest.params import PARAMS, parse_params
from pxhostd.manifest.routes import GONE

REPO = Path(__file__).resolve().parents[2]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class _FormParser(html.parser.HTMLParser):
    """Collects inputs, labels and the form's method/action."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, dict[str, str]] = {}
        self.labels: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self.hidden: dict[str, list[tuple[str, str]]] = {}  # form id -> hidden (name, value)
        self.errors: dict[str, str] = {}  # id of a field-error paragraph -> its text
        self.alerts = 0
        self._error_id = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type") == "hidden":
            self.hidden.setdefault(self.forms[-1]["id"], []).append((a["name"], a["value"]))
        elif tag in ("input", "select"):
            self.inputs[a["name"]] = a
        elif a.get("class") == "field-error":
            self._error_id = a["id"]
            self.errors[a["id"]] = ""
        elif tag == "label":
            self.labels.add(a["for"])
        elif tag == "form":
            self.forms.append(a)
        elif a.get("role") == "alert":
            self.alerts += 1

    def handle_data(self, data: str) -> None:
        if self._error_id:
            self.errors[self._error_id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._error_id = ""


def test_root_without_parameters_serves_an_accessible_form(specgen: ServerProcess) -> None:
    resp = specgen.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = _FormParser()
    page.feed(resp.body)
    # POST: what a person types (secrets too) never lands in a URL.
    assert page.forms == [{"method": "post", "action": "/", "id": "specform"}]
    shown = {p.short for p in PARAMS if p.form}
    assert set(page.inputs) == shown
    for name, attrs in page.inputs.items():
        assert attrs["id"] in page.labels, f"input {name} has no label"
        assert attrs.get("aria-describedby"), f"input {name} has no description"
    for secret in ("pwd", "t", "acl"):
        assert page.inputs[secret]["type"] == "password"
    assert '<html lang="en">' in resp.body


def test_parameters_give_yaml(specgen: ServerProcess) -> None:
    pairs = [("c", "px-http"), ("k", "etcd://10.0.0.1:2379"), ("s", "/dev/sdb"), ("t", "tok")]
    resp = specgen.get("/?" + urlencode(pairs))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/yaml; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.body == render_yaml(parse_params(pairs))
    docs = load_docs(resp.body)
    validate_all(docs)
    assert one(docs, "Secret")["stringData"]["token"] == "tok"


def test_old_style_url_with_deprecated_long_names(specgen: ServerProcess) -> None:
    query = "cluster=px1&kvdb=etcd://e:2379&drives=/dev/sdb,/dev/sdc&zeroStorage=true&stork=true"
    resp = specgen.get("/?" + query)
    assert resp.status == 200, resp.body
    docs = load_docs(resp.body)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "DaemonSet"] == [
        "portworx", "portworx-control-plane"
    ]
    warnings = resp.headers.get_all("Warning")
    assert len(warnings) == 1 and warnings[0].startswith('299 - "stork: ')
    assert "# WARNING: stork:" in resp.body


def test_bad_input_is_a_400_with_the_reason(specgen: ServerProcess) -> None:
    resp = specgen.get("/?" + urlencode([("c", "px"), ("f", "perhaps"), ("kbver", "1.7.9")]))
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert 'f: expected a boolean (true/false, yes/no, 1/0), got "perhaps"' in resp.body
    assert "kbver: Kubernetes 1.7 is older than the oldest supported version" in resp.body


def test_type_docker_is_a_clear_400(specgen: ServerProcess) -> None:
    resp = specgen.get("/?type=docker")
    assert resp.status == 400
    assert "docker install type is no longer supported" in resp.body


def test_unknown_names_strict_and_lenient(
    specgen: ServerProcess, specgen_lenient: ServerProcess
) -> None:
    strict = specgen.get("/?c=px&colour=blue")
    assert strict.status == 400 and 'unknown parameter(s): "colour"' in strict.body
    lenient = specgen_lenient.get("/?c=px&colour=blue")
    assert lenient.status == 200
    assert lenient.headers["Warning"] == '299 - "ignored unknown parameter(s): \\"colour\\""'


def test_malformed_query_is_a_400(specgen: ServerProcess) -> None:
    resp = specgen.get("/?c=%ff%fe")
    assert resp.status == 400 and "malformed query" in resp.body
    many = "&".join(f"x{i}=1" for i in range(100))
    assert specgen.get("/?" + many).status == 400


def test_health_and_unknown_paths(specgen: ServerProcess) -> None:
    health = specgen.get("/healthz")
    assert (health.status, health.body) == (200, "ok\n")
    assert specgen.get("/healthz", method="HEAD").status == 200
    assert specgen.get("/kube1.5").status == 404


def test_retired_scripts_answer_gone_with_their_replacement(specgen: ServerProcess) -> None:
    replacements = {
        "/upgrade": "pxhostctl install",
        "/px-wipe": "pxhostctl uninstall --wipe",
        "/precheck": "pxhostctl probe",
    }
    assert set(GONE) == set(replacements)
    for path, command in replacements.items():
        resp = specgen.get(path + "?kbver=1.30")
        assert resp.status == 410
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert command in resp.body


def test_a_form_body_works_as_the_query_does(specgen: ServerProcess) -> None:
    pairs = [("c", "px-post"), ("k", "etcd://10.0.0.1:2379"), ("t", "s3cret&=%")]
    resp = specgen.post("/", pairs)
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"] == "application/yaml; charset=utf-8"
    assert resp.body == specgen.get("/?" + urlencode(pairs)).body
    assert one(load_docs(resp.body), "Secret")["stringData"]["token"] == "s3cret&=%"
    download = specgen.post("/download", pairs)
    assert download.headers["Content-Disposition"] == 'attachment; filename="portworx.yaml"'
    assert download.body == resp.body
    page = _FormParser()
    page.feed(specgen.post("/form", pairs).body)
    assert page.inputs["c"]["value"] == "px-post" and page.inputs["t"]["value"] == "s3cret&=%"


def test_post_takes_only_a_bounded_form_body_on_parameter_paths(specgen: ServerProcess) -> None:
    json_body = specgen.get("/", method="POST", data=b'{"c": "px"}',
                            content_type="application/json")
    assert json_body.status == 415 and "application/x-www-form-urlencoded" in json_body.body
    both = specgen.get("/?c=a", method="POST", data=b"k=etcd://h:2379")
    assert both.status == 400 and "either in the query or in the POST body" in both.body
    assert specgen.get("/", method="POST", data=b"c=" + b"x" * 17000).status == 413
    assert specgen.get("/", method="POST", data=b"c=%ff").status == 400
    for path in ("/healthz", "/upgrade"):
        resp = specgen.get(path, method="POST", data=b"")
        assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"
    put = specgen.get("/", method="PUT", data=b"c=px")
    assert put.status == 405 and put.headers["Allow"] == "GET, HEAD, POST"
    assert specgen.get("/service/stop", method="POST", data=b"").status == 404  # the old :9015


def test_form_field_errors_stand_next_to_their_fields(specgen: ServerProcess) -> None:
    pairs = [("c", "bad name"), ("j", "relative"), ("s", "/dev/sdb"), ("t", "tok"),
             ("colour", "blue")]
    resp = specgen.post("/", pairs, accept=BROWSER_ACCEPT)
    assert resp.status == 400
    page = _FormParser()
    page.feed(resp.body)
    assert page.alerts == 1  # the whole list, unknown names included, above the form
    assert set(page.errors) == {"f-c-error", "f-j-error"}
    assert page.errors["f-c-error"].startswith("c: expected a cluster name (letters, digits")
    assert page.errors["f-j-error"].startswith("j: expected an absolute path")
    assert page.inputs["c"]["aria-invalid"] == "true"
    assert page.inputs["c"]["aria-describedby"] == "f-c-help f-c-error"
    assert "aria-invalid" not in page.inputs["s"]
    # Every value kept, the bad ones too, so they can be corrected.
    assert {k: page.inputs[k]["value"] for k in ("c", "j", "s", "t")} == {
        "c": "bad name", "j": "relative", "s": "/dev/sdb", "t": "tok"}


def test_browser_gets_an_escaped_result_page(specgen: ServerProcess) -> None:
    evil = "<script>alert(1)</script>&\"'"
    env = '"A=' + evil.replace('"', '""') + '"'  # one CSV item; env values pass anything
    resp = specgen.get("/?" + urlencode([("e", env), ("stork", "1")]), accept=BROWSER_ACCEPT)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script>" not in resp.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in resp.body
    assert 'id="warnings"' in resp.body


def test_browser_gets_the_form_again_on_error_escaped(specgen: ServerProcess) -> None:
    evil = '"><script>alert(1)</script>'
    query = urlencode([("c", evil), ("f", "<b>maybe</b>"), ("t", "top-secret")])
    resp = specgen.get("/?" + query, accept=BROWSER_ACCEPT)
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script>" not in resp.body and "<b>maybe" not in resp.body
    page = _FormParser()
    page.feed(resp.body)
    assert page.alerts == 1
    assert page.inputs["c"]["value"] == evil  # re-filled, and escaped on the way
    assert page.inputs["t"]["value"] == "top-secret"  # every value comes back (no-store page)
    assert resp.headers["Cache-Control"] == "no-store"


def test_queries_and_bodies_are_never_logged() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pxhostd.manifest.web", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().rsplit(" ", 1)[1].strip().rstrip("/")
    server = ServerProcess(base, proc)
    try:
        assert server.get("/?c=px&t=sup3rs3cret").status == 200
        assert server.get("/?pwd=nocolon-sup3rs3cret").status == 400
        assert server.post("/", [("c", "px"), ("t", "sup3rs3cret")]).status == 200
        assert server.post("/form", [("t", "sup3rs3cret")]).status == 200
        assert server.post("/", [("pwd", "nocolon-sup3rs3cret")]).status == 400
        host, port = urlsplit(base).hostname, urlsplit(base).port
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"GET /?t=sup3rs3cret extra HTTP/1.1\r\n\r\n")  # malformed line
            assert sock.recv(100).startswith(b"HTTP/1.1 400")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "sup3rs3cret" not in err
    assert '"GET /" 200' in err and '"GET /" 400' in err
    assert '"POST /" 200' in err and '"POST /form" 200' in err and '"POST /" 400' in err


def test_result_page_offers_download_command_and_change_link(specgen: ServerProcess) -> None:
    query = "c=px-one&kbver=1.31&mas=true&t=s3cret&e=A%3D1"
    page = specgen.get(f"/?{query}", accept="text/html")
    assert page.status == 200
    body = html.unescape(page.body)
    command = body.split('<pre id="command">', 1)[1].split("</pre>", 1)[0]
    assert command == (
        "pxhostctl spec --cluster px-one --kube-version 1.31 --masters --token \"$TOKEN\" "
        "--env A=1"
    )
    assert "s3cret" not in command
    page = _FormParser()
    page.feed(page_body := specgen.get(f"/?{query}", accept="text/html").body)
    assert "href=" not in page_body  # no link at all can carry a value
    assert [f["id"] for f in page.forms] == ["download-form", "change-form"]
    assert all(f["method"] == "post" for f in page.forms)
    sent = [("c", "px-one"), ("kbver", "1.31"), ("mas", "true"), ("t", "s3cret"), ("e", "A=1")]
    assert page.hidden == {"download-form": sent, "change-form": sent}  # every value, in order
    got = specgen.post("/download", page.hidden["download-form"])
    assert got.headers["Content-Disposition"] == 'attachment; filename="portworx.yaml"'
    assert got.headers["Content-Type"] == "application/yaml; charset=utf-8"
    assert got.body == specgen.get(f"/?{query}", accept="application/yaml").body
    form = specgen.post("/form", page.hidden["change-form"]).body
    assert 'value="px-one"' in form and '<option value="1.31" selected>' in form
    assert 'id="f-mas" name="mas" value="true" aria-describedby="f-mas-help" checked' in form
    assert 'id="f-t" name="t" value="s3cret"' in form  # the secret comes back too
    assert "white-space:pre-wrap" in form  # long lines wrap instead of being cut


def test_form_shows_defaults_as_placeholders_and_versions_as_a_list(
    specgen: ServerProcess,
) -> None:
    from pxhostd.manifest.form import kube_minors
    from pxhostd.manifest.params import DEFAULT_CLUSTER, DEFAULT_NAMESPACE

    body = specgen.get("/").body
    assert f'name="c" value="" placeholder="{DEFAULT_CLUSTER}"' in body
    assert f'placeholder="{DEFAULT_NAMESPACE}"' in body
    assert '<select id="f-kbver" name="kbver"' in body
    assert kube_minors()[-1] == "1.25" and all(f'<option value="{m}">' in body
                                               for m in kube_minors())
    order = [body.index(f'name="{n}"') for n in ("c", "k", "s", "kbver", "ns")]
    assert order == sorted(order), "the essential fields come first"
    assert specgen.get("/").headers["Server"] == f"pxhostd-specgen/{__version__}"


def test_unknown_parameter_names_the_nearest_known_one(specgen: ServerProcess) -> None:
    resp = specgen.get("/?c=x&kbvr=1.30")
    assert resp.status == 400
    assert "\"kbvr\" (did you mean 'kbver'?)" in resp.body

"""The web form in a real headless Chromium, driven over WebDriver (chromedriver, stdlib HTTP).

Needs Debian's `chromium` and `chromium-driver`; the test fails (never skips) without them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubelet_expand import container_as_run
from specgen_helpers import ServerProcess, arg_after, container, load_docs, one, validate_all

from pxhostd.manifest.params import PARAMS

pytestmark = pytest.mark.browser

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


class WebDriver:
    """The few W3C WebDriver commands this test needs, over urllib."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.load(resp)["value"]
        except urllib.error.HTTPError as err:
            with err:
                detail = err.read().decode(errors="replace")
            raise AssertionError(f"WebDriver {method} {path}: {err.code} {detail}") from None

    def start(self, binary: str, user_data_dir: Path, downloads: Path) -> None:
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"],
                "prefs": {"download.default_directory": str(downloads),
                          "download.prompt_for_download": False},
            },
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]
        self.s("POST", "/timeouts", {"implicit": 15000, "pageLoad": 30000})

    def s(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def find(self, css: str) -> str:
        found = self.s("POST", "/element", {"using": "css selector", "value": css})
        assert isinstance(found, dict) and ELEMENT in found, found
        return str(found[ELEMENT])

    def type(self, css: str, text: str) -> None:
        self.s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self.s("POST", f"/element/{self.find(css)}/click")

    def text_content(self, css: str) -> str:
        return str(self.s("GET", f"/element/{self.find(css)}/property/textContent"))

    def prop(self, css: str, name: str) -> object:
        return self.s("GET", f"/element/{self.find(css)}/property/{name}")

    def url(self) -> str:
        return str(self.s("GET", "/url"))

    def stop(self) -> None:
        if self.session:
            self.call("DELETE", f"/session/{self.session}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromedriver are required (apt-get install chromium "
                    "chromium-driver)", pytrace=False)
    port = _free_port()
    proc = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wd = WebDriver(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for chromedriver to listen (start-up, not a timed assertion)
            try:
                if wd.call("GET", "/status").get("ready"):
                    break
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("chromedriver did not start", pytrace=False)
            time.sleep(0.1)
        (tmp_path / "downloads").mkdir()
        wd.start(chromium, tmp_path / "profile", tmp_path / "downloads")
        yield wd
    finally:
        try:
            wd.stop()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


#: A value for every field of the form, by short name (secrets included; tricky characters).
TYPED: dict[str, str] = {
    "c": "browser-cluster",
    "k": "etcd://10.1.0.1:2379,etcd://10.1.0.2:2379",
    "s": "/dev/sdb,/dev/sdc",
    "d": "eth1",
    "m": "eth2",
    "j": "/dev/sdd",
    "ns": "portworx",
    "px": "registry.example/px/pxhostd:1.0",
    "st": "vault",
    "pwd": "root:p&ss=w%rd",
    "ca": "/etc/pwx/ca.crt",
    "cert": "/etc/pwx/c.crt",
    "key": "/etc/pwx/c.key",
    "acl": "acl <tok> \"'&",
    "t": "join&t=ok?#",
    "e": 'PX_HTTP_PROXY=http://proxy:3128,"NOTE=a, b {{x}} $(y)"',
    "kubelet": "/var/lib/k0s/kubelet",
}
CHOSEN = {"kbver": "1.31", "platform": "kubernetes"}
TICKED = ("mas", "z", "f", "osft")


def _secret_values() -> list[str]:
    return [TYPED[p.short] for p in PARAMS if p.secret]


def test_fill_the_form_submit_download_and_come_back_with_every_value(
    browser: WebDriver, specgen: ServerProcess, tmp_path: Path
) -> None:
    fields = {p.short for p in PARAMS if p.form}
    assert fields == set(TYPED) | set(CHOSEN) | set(TICKED), "every field is exercised"
    browser.s("POST", "/url", {"url": specgen.base + "/"})
    assert browser.s("GET", "/title") == "pxhostd manifest generator"
    for short, text in TYPED.items():
        browser.type(f"#f-{short}", text)
    for short, option in CHOSEN.items():
        browser.click(f"#f-{short} option[value='{option}']")
    for short in TICKED:
        browser.click(f"#f-{short}")
    browser.click("#submit")

    manifest = browser.text_content("#manifest")
    assert browser.url() == specgen.base + "/"  # POSTed: no value in the URL (nor history)
    docs = load_docs(manifest)
    validate_all(docs)
    ds = one(docs, "DaemonSet", "portworx")
    args = container(ds)["args"]
    assert arg_after(args, "-c") == ["browser-cluster"]
    assert arg_after(args, "-k") == ["etcd://10.1.0.1:2379,etcd://10.1.0.2:2379"]
    assert arg_after(args, "-s") == ["/dev/sdb", "/dev/sdc"] and "-f" in args
    assert arg_after(args, "-d") == ["eth1"]
    secret = one(docs, "Secret")["stringData"]
    env = container_as_run(container(ds), secret)["env"]
    assert env["NOTE"] == "a, b {{x}} $(y)"  # as the pod gets it, after the kubelet's expansion
    assert secret["kvdb-userpwd"] == "root:p&ss=w%rd"
    assert secret["token"] == TYPED["t"] and secret["acltoken"] == TYPED["acl"]
    control_plane = one(docs, "DaemonSet", "portworx-control-plane")  # mas with z
    assert "tolerations" in control_plane["spec"]["template"]["spec"]
    assert "-z" in container(control_plane)["args"]

    # The download button: the browser saves the same YAML as portworx.yaml.
    browser.click("#download")
    saved = tmp_path / "downloads" / "portworx.yaml"
    deadline = time.monotonic() + 60
    while not saved.exists():  # wait for the browser to finish writing (not a timed assertion)
        if time.monotonic() > deadline:
            pytest.fail(f"no download: {sorted(saved.parent.iterdir())}", pytrace=False)
        time.sleep(0.1)
    assert saved.read_text() == manifest
    assert browser.url() == specgen.base + "/"  # still on the result page
    command = browser.text_content("#command")
    assert command.startswith("pxhostctl spec --cluster browser-cluster")
    assert not any(v in command for v in _secret_values())
    assert '--etcd-userpwd "$ETCD_USERPWD"' in command

    # "Change parameters" comes back to the form with every value kept, secrets included,
    # and still nothing in a URL.
    browser.click("#change")
    browser.find("#specform")  # waits for the form page (the result page has no form of that id)
    assert browser.url() == specgen.base + "/form"
    for short, text in TYPED.items():
        assert browser.prop(f"#f-{short}", "value") == text, short
    for short, option in CHOSEN.items():
        assert browser.prop(f"#f-{short}", "value") == option, short
    for short in TICKED:
        assert browser.prop(f"#f-{short}", "checked") is True, short

    # Submitting the kept values again gives the same manifest.
    browser.click("#submit")
    assert browser.text_content("#manifest") == manifest


def test_bad_input_shows_the_form_with_the_reason(
    browser: WebDriver, specgen: ServerProcess
) -> None:
    browser.s("POST", "/url", {"url": specgen.base + "/"})
    browser.type("#f-c", "<b>bad name</b>")
    browser.type("#f-j", "relative/dev")
    browser.type("#f-t", "s3cret")
    browser.click("#submit")
    alert = browser.text_content("[role=alert]")
    assert "j: expected an absolute path" in alert, alert
    # Each error stands next to its field; every value is kept for correcting.
    assert browser.text_content("#f-c-error").startswith("c: expected a cluster name")
    assert browser.text_content("#f-j-error").startswith("j: expected an absolute path")
    assert browser.prop("#f-c", "value") == "<b>bad name</b>"
    assert browser.prop("#f-j", "value") == "relative/dev"
    assert browser.prop("#f-t", "value") == "s3cret"
    assert "s3cret" not in browser.url()

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

    def start(self, binary: str, user_data_dir: Path) -> None:
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"],
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
        wd.start(chromium, tmp_path / "profile")
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


def test_fill_the_form_submit_and_get_valid_yaml(
    browser: WebDriver, specgen: ServerProcess
) -> None:
    browser.s("POST", "/url", {"url": specgen.base + "/"})
    assert browser.s("GET", "/title") == "pxhostd manifest generator"
    browser.type("#f-c", "browser-cluster")
    browser.type("#f-k", "etcd://10.1.0.1:2379,etcd://10.1.0.2:2379")
    browser.type("#f-s", "/dev/sdb,/dev/sdc")
    browser.type("#f-d", "eth1")
    browser.click("#f-kbver option[value='1.31']")
    browser.type("#f-pwd", "root:p&ss=w%rd")
    browser.type("#f-e", 'PX_HTTP_PROXY=http://proxy:3128,"NOTE=a, b {{x}} $(y)"')
    browser.click("#f-mas")
    browser.click("#f-f")
    browser.click("#submit")

    manifest = browser.text_content("#manifest")
    assert "?" in str(browser.s("GET", "/url"))  # the form went out as a GET query
    docs = load_docs(manifest)
    validate_all(docs)
    ds = one(docs, "DaemonSet")
    args = container(ds)["args"]
    assert arg_after(args, "-c") == ["browser-cluster"]
    assert arg_after(args, "-k") == ["etcd://10.1.0.1:2379,etcd://10.1.0.2:2379"]
    assert arg_after(args, "-s") == ["/dev/sdb", "/dev/sdc"] and "-f" in args
    assert arg_after(args, "-d") == ["eth1"]
    env = container_as_run(container(ds), one(docs, "Secret")["stringData"])["env"]
    assert env["NOTE"] == "a, b {{x}} $(y)"  # as the pod gets it, after the kubelet's expansion
    assert one(docs, "Secret")["stringData"]["kvdb-userpwd"] == "root:p&ss=w%rd"
    assert "tolerations" in ds["spec"]["template"]["spec"]

    # The download link: the same YAML as an attachment.
    href = browser.s("GET", f"/element/{browser.find('#download')}/property/href")
    with urllib.request.urlopen(str(href), timeout=30) as resp:
        assert resp.headers["Content-Disposition"] == 'attachment; filename="portworx.yaml"'
        assert resp.read().decode() == manifest
    command = browser.text_content("#command")
    assert command.startswith("pxhostctl spec --cluster browser-cluster")
    assert "p&ss" not in command and '--etcd-userpwd "$ETCD_USERPWD"' in command

    # "Change parameters" comes back to the form with every value kept (secrets excepted:
    # the page never fills those in again).
    browser.click("#change")
    def value(css: str) -> object:
        return browser.s("GET", f"/element/{browser.find(css)}/property/value")
    assert value("#f-c") == "browser-cluster"
    assert value("#f-k") == "etcd://10.1.0.1:2379,etcd://10.1.0.2:2379"
    assert value("#f-s") == "/dev/sdb,/dev/sdc" and value("#f-d") == "eth1"
    assert value("#f-kbver") == "1.31"
    assert value("#f-e") == 'PX_HTTP_PROXY=http://proxy:3128,"NOTE=a, b {{x}} $(y)"'
    assert browser.s("GET", f"/element/{browser.find('#f-mas')}/property/checked") is True
    assert value("#f-pwd") == ""


def test_bad_input_shows_the_form_with_the_reason(
    browser: WebDriver, specgen: ServerProcess
) -> None:
    browser.s("POST", "/url", {"url": specgen.base + "/"})
    browser.type("#f-c", "<b>x</b>")
    browser.type("#f-j", "relative/dev")
    browser.click("#submit")
    alert = browser.text_content("[role=alert]")
    assert "j: expected an absolute path" in alert, alert
    value = browser.s("GET", f"/element/{browser.find('#f-c')}/property/value")
    assert value == "<b>x</b>"

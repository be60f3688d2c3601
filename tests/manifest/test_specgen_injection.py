"""Injection attempts in every parameter: the YAML parses to the intended objects, values intact,
or the request is refused with a message naming the parameter (when the type forbids the value).
Container values are compared as the process gets them, after the kubelet's expansion; the
HTML pages (jinja2 templates) keep their structure and give every value back intact.
"""

from __future__ import annotations

import csv
import html.parser
import io
import posixpath
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kubelet_expand import container_as_run
from specgen_helpers import ServerProcess, arg_after, by_kind, container, env_entry, load_docs, one

from pxhostd.errors import InvalidSpec
from pxhostd.manifest.model import build_objects, render_for_platform, render_yaml
from pxhostd.manifest.model import names as n
from pxhostd.manifest.params import PARAMS, InvalidParams, parse_params
from pxhostd.manifest.routes import respond

PAYLOADS = {
    "newline": "a\nb: c",
    "doc-separator": "a\n---\nkind: Evil\n...",
    "quotes": "a'b\"c",
    "template": "{{ .Cluster }}{% raw %}${X}",
    "template-tight": "{{.Cluster}}",
    "percent": "100%s%n%%",
    "shell": "$(reboot)`id`;rm -rf /",
    "shell-tight": "$(reboot)",
    "kubelet-ref": "$(PXHOSTD_NODE_NAME)",
    "kubelet-escape": "$$(X)$$",
    "dollar-end": "a$",
    "comment": "a #b",
    "hash-tight": "#b",
    "unicode": "ünï©ødé ☃ \u202e",
    "unicode-tight": "ünï©ødé☃",
    "yaml-syntax": "&a *a !!python/object:os.system [x] {y: z}",
    "backslash": "a\\nb\\",
    "leading-dash": "- item",
    "query": "a&c=evil=1",
    "yaml-bool": "yes",
    "yaml-number": "0o17",
    "html": "\"><script>alert(1)</script><b x='",
    "html-tight": "</pre><script>alert(1)</script>&amp;",
}

Docs = list[dict[str, Any]]


def _csv_item(text: str) -> str:
    """`text` as one CSV field, quoted if it needs to be (the documented way to pass commas)."""
    out = io.StringIO()
    csv.writer(out).writerow([text])  # "\r\n" terminator: fields holding newlines get quoted
    return out.getvalue().removesuffix("\r\n")


def _secret(key: str) -> Callable[[Docs], str]:
    return lambda docs: str(one(docs, "Secret", n.SECRET)["stringData"][key])


def _as_run(docs: Docs) -> dict[str, Any]:
    secrets = by_kind(docs, "Secret")
    data = secrets[0]["stringData"] if secrets else {}
    return container_as_run(container(one(docs, "DaemonSet")), data)


def _arg(flag: str) -> Callable[[Docs], str]:
    def find(docs: Docs) -> str:
        values = arg_after(_as_run(docs)["args"], flag)
        assert len(values) == 1, values
        return values[0]

    return find


def _env(name: str) -> Callable[[Docs], str]:
    return lambda docs: str(_as_run(docs)["env"][name])


ANYTHING = "anything"  # every payload must arrive intact
NO_CONTROL = "no-control"  # intact unless it holds a control character (newline)
NO_SPACE = "no-space"  # intact unless it holds whitespace (paths, URLs)
HOST_DIR = "host-dir"  # as NO_SPACE, and no ':' or '%' (a spec mount cannot carry them)
CLUSTER_NAME = "cluster-name"  # intact only if ASCII letters, digits and '._-' (ending alnum)
WORD = "word"  # names (interface, image, namespace): intact only if letters and digits
TYPED = "typed"  # booleans, versions, choices: every payload is refused


# short name -> (build the raw value from a payload, expectation, where the value lands)
CASES: dict[str, tuple[Callable[[str], str], str, Callable[[Docs], str] | None]] = {
    "c": (lambda x: "px" + x, CLUSTER_NAME, _arg("-c")),
    "k": (lambda x: _csv_item("etcd://h:2379/" + x), NO_SPACE, _arg("-k")),
    "s": (lambda x: _csv_item("/dev/" + x), NO_SPACE, _arg("-s")),
    "d": (lambda x: "eth0" + x, WORD, _arg("-d")),
    "m": (lambda x: "eth1" + x, WORD, _arg("-m")),
    "j": (lambda x: "/dev/" + x, NO_SPACE, _arg("-j")),
    "kbver": (lambda x: "1.30" + x, TYPED, None),
    "mas": (lambda x: "true" + x, TYPED, None),
    "z": (lambda x: "true" + x, TYPED, None),
    "f": (lambda x: "false" + x, TYPED, None),
    "pwd": (lambda x: "user:" + x, ANYTHING, _secret(n.KEY_KVDB_USERPWD)),
    "ca": (lambda x: "/etc/pwx/" + x, NO_SPACE, _arg("-ca")),
    "cert": (lambda x: "/etc/pwx/" + x, NO_SPACE, _arg("-cert")),
    "key": (lambda x: "/etc/pwx/" + x, NO_SPACE, _arg("-key")),
    "acl": (lambda x: x, ANYTHING, _secret(n.KEY_ACL_TOKEN)),
    "t": (lambda x: x, ANYTHING, _secret(n.KEY_TOKEN)),
    "e": (lambda x: _csv_item("INJ=" + x), ANYTHING, _env("INJ")),
    "osft": (lambda x: "1" + x, TYPED, None),
    "px": (lambda x: "px/pxhostd" + x, WORD, lambda d: container(one(d, "DaemonSet"))["image"]),
    "st": (lambda x: "k8s" + x, WORD, _arg("-secret_type")),
    "ns": (lambda x: "px" + x, WORD, lambda d: one(d, "DaemonSet")["metadata"]["namespace"]),
    "kubelet": (lambda x: "/k/" + x, HOST_DIR,
                lambda d: _as_run(d)["env"][n.ENV_SERVICE_MOUNTS].split(":")[0]),
    "type": (lambda x: "oci" + x, TYPED, None),
    "stork": (lambda x: "false" + x, TYPED, None),
    "coreos": (lambda x: "no" + x, TYPED, None),
    "platform": (lambda x: "kubernetes" + x, TYPED, None),
}

# The value as it must land (list parameters are CSV-quoted on the way in).
LANDED: dict[str, Callable[[str], str]] = {
    "k": lambda x: "etcd://h:2379/" + x,
    "s": lambda x: "/dev/" + x,
    "e": lambda x: x,
}


def test_every_parameter_is_covered() -> None:
    assert set(CASES) == {p.short for p in PARAMS}


def _expect_intact(rule: str, payload: str) -> bool:
    if rule == ANYTHING:
        return True
    if rule == NO_CONTROL:
        return not any(unicodedata.category(ch) == "Cc" for ch in payload)
    if rule == NO_SPACE:
        return not any(ch.isspace() for ch in payload)
    if rule == HOST_DIR:
        path = "/k/" + payload
        return not any(ch.isspace() or ch in ":%" for ch in payload) and (
            posixpath.normpath(path) == path
        )
    if rule == CLUSTER_NAME:
        return (payload.isascii() and all(ch.isalnum() or ch in "._-" for ch in payload)
                and payload[-1:].isalnum())
    if rule == WORD:
        return payload.isascii() and payload.isalnum() and payload.islower()
    return False


def _check_generated(short: str, payload: str, docs: Docs) -> None:
    _, _, where = CASES[short]
    assert where is not None
    intended = LANDED.get(short, CASES[short][0])(payload)
    assert where(docs) == intended
    kinds = sorted(d["kind"] for d in docs)
    assert "Evil" not in kinds
    assert kinds.count("DaemonSet") == 1 and kinds.count("ServiceAccount") == 1


@pytest.mark.parametrize("payload_name", sorted(PAYLOADS))
@pytest.mark.parametrize("short", sorted(CASES))
def test_injection_in_process(short: str, payload_name: str) -> None:
    payload = PAYLOADS[payload_name]
    make, rule, _ = CASES[short]
    pairs = [(short, make(payload))]
    if short == "j":
        pairs.append(("s", "/dev/sdb"))
    if _expect_intact(rule, payload):
        params = parse_params(pairs)
        text = render_yaml(params)
        docs = load_docs(text)
        assert docs == build_objects(params)
        _check_generated(short, payload, docs)
    else:
        with pytest.raises(InvalidParams) as info:
            parse_params(pairs)
        assert f"\n  {short}: " in str(info.value)
        field = next(p.field for p in PARAMS if p.short == short)
        assert list(info.value.by_field) == [field]  # the form shows it next to that field
        if short == "c":
            assert any(f"\n  c: {why}" in str(info.value)
                       for why in ("expected a cluster name (letters, digits", "control character"))


@pytest.mark.parametrize("short", sorted(CASES))
def test_injection_over_http(specgen: ServerProcess, short: str) -> None:
    make, rule, _ = CASES[short]
    for payload in PAYLOADS.values():
        query = urlencode([(short, make(payload))])
        resp = specgen.get("/?" + query)
        if _expect_intact(rule, payload):
            assert resp.status == 200, resp.body
            assert resp.headers["Content-Type"] == "application/yaml; charset=utf-8"
            assert resp.body == render_yaml(parse_params([(short, make(payload))]))
            _check_generated(short, payload, load_docs(resp.body))
        else:
            assert resp.status == 400
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert f"\n  {short}: " in resp.body


#: A page's elements as (tag, attribute names, id).
Shape = list[tuple[str, tuple[str, ...], str]]


class _PageShape(html.parser.HTMLParser):
    """A page's element structure (tag, attribute names, id), its field values and texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: Shape = []
        self.values: dict[str, list[str]] = {}  # input name -> values (visible and hidden)
        self.texts: dict[str, str] = {}  # element id -> its text
        self.selected: list[str] = []  # values of the selected options
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        # Which attributes an element has (not their values): a value that broke out of
        # its attribute or text would add attributes or elements.
        self.shape.append((tag, tuple(sorted(k for k in a if k not in _VARYING)), a.get("id", "")))
        if tag == "input" and a.get("type") != "checkbox":
            self.values.setdefault(a["name"], []).append(a.get("value", ""))
        if tag == "option" and "selected" in a:
            self.selected.append(a["value"])
        if "id" in a and tag in ("pre", "p", "div"):
            self._open.append(a["id"])
            self.texts[a["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("pre", "p", "div") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[self._open[-1]] += data


#: Attributes whose presence depends on the input, not on an injection.
_VARYING = frozenset({"aria-invalid", "checked", "selected", "placeholder"})


def _page(method: str, pairs: list[tuple[str, str]]) -> tuple[int, str]:
    encoded = urlencode(pairs)
    if method == "POST":
        reply = respond("POST", "/", "", accept="text/html", body=encoded.encode(),
                        content_type="application/x-www-form-urlencoded")
    else:
        reply = respond("GET", "/", encoded, accept="text/html")
    assert reply.html and reply.content_type == "text/html"
    return reply.status, reply.body


def _without(shape: Shape, skip: set[str]) -> Shape:
    """The shape without the elements of the given ids or tags."""
    return [e for e in shape if e[2] not in skip and e[0] not in skip]


def _valid(short: str, value: str) -> bool:
    try:
        parse_params([(short, value)])
    except InvalidSpec:
        return False
    return True


def _shape(text: str) -> _PageShape:
    page = _PageShape()
    page.feed(text)
    page.close()
    return page


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("short", sorted(CASES))
def test_injection_into_the_pages_is_escaped_by_the_templates(method: str, short: str) -> None:
    """Every payload in every field, through the jinja2 pages: the result page (value valid)
    or the form with its errors (value refused). The page keeps the structure it has for a
    harmless value, and the value comes back intact from the HTML, wherever it is shown."""
    make, rule, _ = CASES[short]
    extra = [("s", "/dev/sdb")] if short == "j" else []
    benign = next(v for v in (make(""), make("x1"), make("x1/")[:-1]) if v and _valid(short, v))
    status, page = _page(method, [(short, benign), *extra])
    assert status == 200
    result_shape = _shape(page).shape
    refused_status, refused_page = _page(method, [(short, benign), ("colour", "1"), *extra])
    assert refused_status == 400
    form_shape = _shape(refused_page).shape
    for payload in PAYLOADS.values():
        value = make(payload)
        pairs = [(short, value), *extra]
        if _expect_intact(rule, payload):
            status, text = _page(method, pairs)
            assert status == 200, text
            got = _shape(text)
            assert got.shape == result_shape, payload
            assert got.values[short] == [value, value]  # download and change forms
            assert got.texts["manifest"] == render_for_platform(parse_params(pairs))
        else:
            status, text = _page(method, pairs)
            assert status == 400, text
            got = _shape(text)
            # The refused field gets its error paragraph; nothing else changes shape.
            error_id = f"f-{short}-error"
            skip = {error_id, "option"} if short == "kbver" else {error_id}
            assert _without(got.shape, skip) == _without(form_shape, skip), payload
            param = next(p for p in PARAMS if p.short == short)
            # Next to the field when the form has one; always in the alert above the form.
            shown_at = error_id if param.form else "error"
            assert got.texts[shown_at].startswith(f"{short}: ") or (
                f"\n  {short}: " in got.texts[shown_at]), got.texts
            if short == "kbver":
                assert value in got.selected  # kept as one more option of the list
            elif param.form and not param.is_bool and not param.choices:
                assert got.values[short] == [value]  # kept in its field, intact
        for raw in ("<script>", "<b x="):
            assert raw not in text


def test_secret_looking_env_names_go_to_the_secret_intact() -> None:
    for payload in PAYLOADS.values():
        params = parse_params([("e", _csv_item("INJ_TOKEN=" + payload))])
        docs = load_docs(render_yaml(params))
        assert one(docs, "Secret")["stringData"]["env.INJ_TOKEN"] == payload
        entry = env_entry(one(docs, "DaemonSet"), "INJ_TOKEN")
        assert "value" not in entry


_printable = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn"),
                  blacklist_characters="\u2028\u2029"),
    min_size=1, max_size=80,
)
_CLUSTER_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


@settings(max_examples=150, deadline=None)
@given(secret=st.text(
    st.characters(blacklist_categories=("Cs", "Co", "Cn"), blacklist_characters="\x00"),
    min_size=1, max_size=80,
))
@example(secret="\u2028")
@example(secret="pw\x1b[0m")
def test_arbitrary_secret_text_round_trips(secret: str) -> None:
    try:
        params = parse_params([("c", "px1"), ("t", secret)])
    except InvalidSpec as exc:
        # Only control characters other than newline/tab, and the Unicode line and
        # paragraph separators, may be refused in a secret, each by its name.
        refused = [ch for ch in secret if ch in "\u2028\u2029"
                   or (unicodedata.category(ch) == "Cc" and ch not in "\n\t")]
        assert refused, secret
        assert f"character U+{ord(refused[0]):04X}" in str(exc)
        return
    docs = load_docs(render_yaml(params))
    assert _arg("-c")(docs) == "px1"
    assert _secret(n.KEY_TOKEN)(docs) == secret


@settings(max_examples=150, deadline=None)
@given(cluster=st.one_of(_printable, st.text(st.sampled_from(_CLUSTER_CHARS), min_size=1,
                                              max_size=70)))
def test_arbitrary_cluster_text_is_kept_intact_or_refused_by_name(cluster: str) -> None:
    well_formed = (
        len(cluster) <= 63 and all(ch in _CLUSTER_CHARS for ch in cluster)
        and cluster[0].isalnum() and cluster[-1].isalnum()
    )
    try:
        params = parse_params([("c", cluster)])
    except InvalidParams as exc:
        assert not well_formed, cluster
        assert str(exc).startswith(("invalid parameters:\n  c: expected a cluster name",
                                    "invalid parameters:\n  c: control character"))
        assert list(exc.by_field) == ["cluster"]
        return
    assert well_formed, cluster
    assert _arg("-c")(load_docs(render_yaml(params))) == cluster

"""Helpers for the manifest tests: HTTP calls, schema validation, finding values in objects."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

from pxhostd.manifest.params import MIN_KUBE_VERSION

Obj = dict[str, Any]


def schema_versions() -> list[str]:
    """The three newest Kubernetes minors kubernetes-validate ships, plus the oldest we support."""
    minors = sorted({tuple(int(x) for x in v.split(".")[:2]) for v in all_versions()})
    wanted = [*minors[-3:]]
    if MIN_KUBE_VERSION in minors and MIN_KUBE_VERSION not in wanted:
        wanted.insert(0, MIN_KUBE_VERSION)
    assert len(minors[-3:]) == 3, f"kubernetes-validate ships too few versions: {minors}"
    return [f"{major}.{minor}" for major, minor in wanted]


def validate_all(docs: list[Obj]) -> None:
    """Every object against the strict OpenAPI schema of every version in schema_versions()."""
    assert docs, "no objects"
    for version in schema_versions():
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def load_docs(text: str) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def by_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(ds: Obj) -> Obj:
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


def arg_after(args: list[str], flag: str) -> list[str]:
    """Every value that follows `flag` in an argument list."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def env_entry(ds: Obj, name: str) -> Obj:
    entries = [e for e in container(ds).get("env", []) if e["name"] == name]
    assert len(entries) == 1, f"env {name}: {entries}"
    result: Obj = entries[0]
    return result


@dataclass
class Response:
    status: int
    headers: Any
    body: str


@dataclass
class ServerProcess:
    base: str
    proc: subprocess.Popen[str]

    def get(
        self,
        path: str,
        *,
        accept: str = "*/*",
        method: str = "GET",
        data: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> Response:
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, resp.headers, resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.headers, err.read().decode("utf-8"))

    def post(self, path: str, pairs: list[tuple[str, str]], *, accept: str = "*/*") -> Response:
        """A form submission: the pairs URL-encoded in the body, as a browser sends them."""
        return self.get(path, accept=accept, method="POST", data=urlencode(pairs).encode())

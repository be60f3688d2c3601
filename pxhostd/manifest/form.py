"""HTML pages of the web service: the parameter form (also with errors) and the result page.

The pages are jinja2 templates (package data in `templates/`) rendered with autoescape on, so
every value that came from a request is HTML-escaped by the template engine, never by hand.
Values travel between the pages only in POST bodies, never in a URL (docs/manifest-generator.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import jinja2

from pxhostd.manifest.params import (
    BY_FIELD,
    DEFAULT_CLUSTER,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    MIN_KUBE_VERSION,
    PARAMS,
    ParamDef,
)
from pxhostd.manifest.values import parse_bool

#: Form sections: (legend, parameter fields); what nearly every cluster sets comes first.
_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Essentials", ("platform", "cluster", "kvdb", "drives", "kube_version")),
    ("Cluster", ("namespace", "image", "secret_type")),
    ("Storage and network", ("force", "journal", "data_iface", "mgmt_iface")),
    ("Control-plane nodes", ("masters", "zero_storage")),
    ("Authentication (secrets go into a Kubernetes Secret)",
     ("etcd_userpwd", "etcd_ca", "etcd_cert", "etcd_key", "acl_token", "token")),
    ("Other", ("env", "kubelet_root", "openshift")),
)

#: Field labels as a person reads them.
_LABELS = {
    "platform": "Platform",
    "cluster": "Cluster name", "kvdb": "Kvdb endpoints", "kube_version": "Kubernetes version",
    "namespace": "Namespace", "image": "Pod image", "drives": "Drives",
    "force": "Force use of drives", "journal": "Journal device",
    "data_iface": "Data network interface", "mgmt_iface": "Management network interface",
    "masters": "Run on control-plane nodes",
    "zero_storage": "Control-plane nodes without storage", "etcd_userpwd": "etcd user:password",
    "etcd_ca": "etcd CA certificate (path on host)",
    "etcd_cert": "etcd client certificate (path on host)",
    "etcd_key": "etcd client key (path on host)", "acl_token": "Consul ACL token",
    "token": "Join token", "secret_type": "Secret store type", "env": "Environment",
    "openshift": "OpenShift", "kubelet_root": "Kubelet root directory (on the nodes)",
}

#: What an empty field means, shown inside it (the defaults are the generator's own).
_PLACEHOLDERS = {
    "cluster": DEFAULT_CLUSTER,
    "kvdb": "empty: Portworx's built-in kvdb; e.g. etcd://10.0.0.1:2379",
    "drives": "empty: all unused drives; e.g. /dev/sdb,/dev/sdc",
    "namespace": DEFAULT_NAMESPACE,
    "image": DEFAULT_IMAGE,
    "journal": "none; auto or /dev/sdd",
    "data_iface": "the default route's interface",
    "mgmt_iface": "the default route's interface",
    "secret_type": "k8s",
    "env": "NAME=VALUE,NAME=VALUE",
    "etcd_ca": "/etc/pwx/etcd-ca.crt",
    "etcd_cert": "/etc/pwx/etcd.crt",
    "etcd_key": "/etc/pwx/etcd.key",
}

#: Newest Kubernetes minor the form offers (the manifests are validated up to it).
NEWEST_KUBE_MINOR = (1, 37)


def kube_minors() -> list[str]:
    """The supported Kubernetes minors, newest first, as the form's list offers them."""
    major, oldest = MIN_KUBE_VERSION
    return [f"{major}.{m}" for m in range(NEWEST_KUBE_MINOR[1], oldest - 1, -1)]


#: CSP: no scripts at all; the form posts back to this service only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@cache
def _templates() -> jinja2.Environment:
    """The page templates, shipped inside the package (installed wherever pxhostd is)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pxhostd.manifest", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, **context: Any) -> str:
    return _templates().get_template(template).render(**context)


def _is_true(value: str) -> bool:
    """A box is ticked for every word the parameter parser reads as true."""
    try:
        return parse_bool("", value)
    except ValueError:
        return False


def _field(param: ParamDef, prefill: Mapping[str, str], errors: Sequence[str]) -> dict[str, Any]:
    """What the template needs to draw one parameter's field."""
    value = prefill.get(param.short, "")
    field: dict[str, Any] = {
        "id": f"f-{param.short}", "name": param.short, "label": _LABELS[param.field],
        "help": param.help, "errors": list(errors), "value": value, "placeholder": "",
    }
    if param.is_bool:
        return {**field, "kind": "check", "checked": _is_true(value)}
    if param.choices:
        chosen = value or param.choices[0]
        options = [(c, c, c == chosen) for c in param.choices]
        return {**field, "kind": "select", "options": options}
    if param.field == "kube_version":
        minors = kube_minors()
        options = [("", "not given", not value)]
        if value and value not in minors:
            options.append((value, value, True))  # what was sent, kept even if not listed
        options += [(m, m, m == value) for m in minors]
        return {**field, "kind": "select", "options": options}
    kind = "password" if param.secret else "text"
    return {**field, "kind": kind, "placeholder": _PLACEHOLDERS.get(param.field, "")}


def form_page(
    prefill: Mapping[str, str] | None = None,
    error: str | None = None,
    field_errors: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The parameter form (POSTed to /), filled with `prefill` (by short name, secrets too).

    `error` goes into an alert above the form; `field_errors` (by ManifestParams field) next
    to the field each is about.
    """
    values = prefill or {}
    problems = field_errors or {}
    sections = [
        {"legend": legend,
         "fields": [_field(BY_FIELD[name], values, problems.get(name, ())) for name in names]}
        for legend, names in _SECTIONS
    ]
    return _render("form.html.j2", title="pxhostd manifest generator", sections=sections,
                   error=error)


def equivalent_command(pairs: Sequence[tuple[str, str]]) -> str:
    """`pxhostctl spec ...` giving the same manifests; secret values stay out of it."""
    by_name = {name: p for p in PARAMS for name in p.names}
    words = ["pxhostctl", "spec"]
    for name, value in pairs:
        param = by_name.get(name)
        if param is None or value == "":
            continue
        option = f"--{param.cli}"
        if param.choices and value == param.choices[0]:
            continue  # the default, which the form always sends
        if param.is_bool:
            if _is_true(value):
                words.append(option)
            else:
                words.append(f"{param.short}={shlex.quote(value)}")
        elif param.secret:
            words += [option, f'"${_secret_var(param)}"']
        else:
            words += [option, shlex.quote(value)]
    return " ".join(words)


def _secret_var(param: ParamDef) -> str:
    return param.cli.upper().replace("-", "_")


def result_page(
    manifest: str,
    warnings: Sequence[str],
    platform: str = "kubernetes",
    pairs: Sequence[tuple[str, str]] = (),
) -> str:
    """What a browser gets instead of raw YAML: the YAML (wrapped), how to get it again.

    Download and "Change parameters" send `pairs` back as POST forms, so every value (secrets
    included) comes back without ever appearing in a URL.
    """
    given = [(k, v) for k, v in pairs if v != ""]
    secrets = [p for p in PARAMS if p.secret and any(k in p.names for k, _ in given)]
    return _render(
        "result.html.j2", title="pxhostd manifest", manifest=manifest, warnings=list(warnings),
        platform=platform, pairs=given, command=equivalent_command(pairs),
        secret_vars=[_secret_var(p) for p in secrets],
    )

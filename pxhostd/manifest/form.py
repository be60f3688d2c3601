"""HTML pages of the web service: the parameter form, the result page and the error page.

Everything that came from a request is passed through html.escape before it reaches a page;
secret fields are never echoed back.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import urlencode

from pxhostd.manifest.params import (
    DEFAULT_CLUSTER,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    MIN_KUBE_VERSION,
    PARAMS,
    ParamDef,
)

_STYLE = """
body{font-family:sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;line-height:1.4}
fieldset{margin:0 0 1rem;border:1px solid #888}
label{display:block;font-weight:bold;margin-top:.6rem}
.check label{display:inline;font-weight:normal}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.3rem}
.help{font-size:.9rem;color:#333;margin:.1rem 0}
pre{background:#f4f4f4;padding:.6rem;white-space:pre-wrap;overflow-wrap:anywhere}
select{padding:.3rem}
.actions a{margin-right:1rem}
button{margin:1rem 0;padding:.4rem 1.2rem;font-size:1rem}
[role=alert]{border:2px solid #a00;padding:.5rem;white-space:pre-wrap}
"""

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


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _field(param: ParamDef, prefill: Mapping[str, str]) -> str:
    ident = f"f-{param.short}"
    help_id = f"{ident}-help"
    help_text = (
        f'<p class="help" id="{help_id}">{escape(param.help)} '
        f"<small>(parameter <code>{escape(param.short)}</code>)</small></p>"
    )
    if param.is_bool:
        checked = " checked" if prefill.get(param.short, "") in ("true", "on", "1", "yes") else ""
        return (
            f'<div class="check"><input type="checkbox" id="{ident}" name="{param.short}" '
            f'value="true" aria-describedby="{help_id}"{checked}> '
            f'<label for="{ident}">{escape(_LABELS[param.field])}</label>{help_text}</div>'
        )
    if param.choices:
        chosen = prefill.get(param.short, "") or param.choices[0]
        options = "".join(
            f'<option value="{escape(c)}"{" selected" if c == chosen else ""}>{escape(c)}</option>'
            for c in param.choices
        )
        return (
            f'<label for="{ident}">{escape(_LABELS[param.field])}</label>'
            f'<select id="{ident}" name="{param.short}" aria-describedby="{help_id}">'
            f"{options}</select>{help_text}"
        )
    value = "" if param.secret else prefill.get(param.short, "")
    label = f'<label for="{ident}">{escape(_LABELS[param.field])}</label>'
    if param.field == "kube_version":
        minors = kube_minors()
        items = [f'<option value=""{"" if value else " selected"}>not given</option>']
        if value and value not in minors:
            items.append(f'<option value="{escape(value)}" selected>{escape(value)}</option>')
        items += [
            f'<option value="{m}"{" selected" if m == value else ""}>{m}</option>' for m in minors
        ]
        return (
            f'{label}<select id="{ident}" name="{param.short}" aria-describedby="{help_id}">'
            f'{"".join(items)}</select>{help_text}'
        )
    kind = "password" if param.secret else "text"
    placeholder = _PLACEHOLDERS.get(param.field, "")
    shown = f' placeholder="{escape(placeholder)}"' if placeholder else ""
    return (
        f'{label}<input type="{kind}" id="{ident}" name="{param.short}" value="{escape(value)}"'
        f'{shown} aria-describedby="{help_id}" autocomplete="off" spellcheck="false">'
        f"{help_text}"
    )


def form_page(prefill: Mapping[str, str] | None = None, error: str | None = None) -> str:
    """The parameter form (submitted with GET to /); optionally with an error above it."""
    values = prefill or {}
    by_field = {p.field: p for p in PARAMS}
    parts = ["<h1>pxhostd manifest generator</h1>"]
    if error is not None:
        parts.append(f'<div role="alert" id="error">{escape(error)}</div>')
    parts.append(
        "<p>Fill in what your cluster needs and submit: the answer is the Kubernetes YAML for "
        "pxhostd's node pod (ServiceAccount, RBAC, Secret, Service, DaemonSet). Empty fields "
        "keep their defaults (shown greyed inside them). Secret fields are never filled in "
        "again by this page: enter them each time. The same parameters work as a query string "
        "(<code>curl 'http://HOST/?c=NAME&amp;k=etcd://HOST:2379'</code>) and with "
        "<code>pxhostctl spec</code>.</p>"
    )
    parts.append('<form method="get" action="/" id="specform">')
    for legend, fields in _SECTIONS:
        parts.append(f"<fieldset><legend>{escape(legend)}</legend>")
        parts.extend(_field(by_field[name], values) for name in fields)
        parts.append("</fieldset>")
    parts.append('<button type="submit" id="submit">Generate YAML</button></form>')
    return _page("pxhostd manifest generator", "".join(parts))


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
            if value.lower() in ("true", "on", "1", "yes"):
                words.append(option)
            else:
                words.append(f"{param.short}={shlex.quote(value)}")
        elif param.secret:
            words += [option, f'"${param.cli.upper().replace("-", "_")}"']
        else:
            words += [option, shlex.quote(value)]
    return " ".join(words)


def result_page(
    manifest: str,
    warnings: Sequence[str],
    platform: str = "kubernetes",
    pairs: Sequence[tuple[str, str]] = (),
) -> str:
    """What a browser gets instead of raw YAML: the YAML (wrapped), how to get it again."""
    query = urlencode([(k, v) for k, v in pairs if v != ""])
    secret_names = {n for p in PARAMS if p.secret for n in p.names}
    # The form never fills secrets in again, so the link does not carry them either.
    editable = urlencode([(k, v) for k, v in pairs if v != "" and k not in secret_names])
    parts = ["<h1>Generated manifest</h1>"]
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        parts.append(f'<h2>Warnings</h2><ul id="warnings">{items}</ul>')
    deploy = (
        "<code>docker stack deploy -c portworx.yaml portworx</code> (install the pxhostd "
        "package on every node first)"
        if platform == "swarm"
        else "<code>kubectl apply --server-side -f portworx.yaml</code>"
    )
    parts.append(
        '<p class="actions">'
        f'<a id="download" href="/download?{escape(query)}" download="portworx.yaml">'
        "Download portworx.yaml</a>"
        f'<a id="change" href="/form?{escape(editable)}">Change parameters</a></p>'
        f"<p>Apply it with {deploy}.</p>"
    )
    secrets = [p for p in PARAMS if p.secret and any(k in p.names and v for k, v in pairs)]
    note = (
        " (set " + ", ".join(f"<code>{p.cli.upper().replace('-', '_')}</code>"
                             for p in secrets) + " first)"
        if secrets else ""
    )
    parts.append(
        f"<p>The same on the command line{note}:</p>"
        f'<pre id="command">{escape(equivalent_command(pairs))}</pre>'
    )
    parts.append(f'<pre id="manifest">{escape(manifest)}</pre>')
    return _page("pxhostd manifest", "".join(parts))

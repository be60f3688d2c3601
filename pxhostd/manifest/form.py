"""HTML pages of the web service: the parameter form, the result page and the error page.

Everything that came from a request is passed through html.escape before it reaches a page;
secret fields are never echoed back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from pxhostd.manifest.params import PARAMS, ParamDef

_STYLE = """
body{font-family:sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;line-height:1.4}
fieldset{margin:0 0 1rem;border:1px solid #888}
label{display:block;font-weight:bold;margin-top:.6rem}
.check label{display:inline;font-weight:normal}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.3rem}
.help{font-size:.9rem;color:#333;margin:.1rem 0}
pre{background:#f4f4f4;padding:.6rem;overflow:auto}
button{margin:1rem 0;padding:.4rem 1.2rem;font-size:1rem}
[role=alert]{border:2px solid #a00;padding:.5rem;white-space:pre-wrap}
"""

#: Form sections: (legend, parameter fields).
_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Cluster", ("platform", "cluster", "kvdb", "kube_version", "namespace", "image")),
    ("Storage and network", ("drives", "force", "journal", "data_iface", "mgmt_iface")),
    ("Control-plane nodes", ("masters", "zero_storage")),
    ("Authentication (secrets go into a Kubernetes Secret)",
     ("etcd_userpwd", "etcd_ca", "etcd_cert", "etcd_key", "acl_token", "token", "secret_type")),
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
    kind = "password" if param.secret else "text"
    value = "" if param.secret else prefill.get(param.short, "")
    return (
        f'<label for="{ident}">{escape(_LABELS[param.field])}</label>'
        f'<input type="{kind}" id="{ident}" name="{param.short}" value="{escape(value)}" '
        f'aria-describedby="{help_id}" autocomplete="off" spellcheck="false">{help_text}'
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
        "keep their defaults. The same parameters work as a query string "
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


def result_page(manifest: str, warnings: Sequence[str], platform: str = "kubernetes") -> str:
    """What a browser gets instead of raw YAML: the YAML in a <pre>, warnings above it."""
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
        f"<p>Save it as <code>portworx.yaml</code> and apply it with {deploy}. "
        '<a href="/">Back to the form</a>.</p>'
    )
    parts.append(f'<pre id="manifest">{escape(manifest)}</pre>')
    return _page("pxhostd manifest", "".join(parts))

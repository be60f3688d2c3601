"""Render the service units from jinja2 templates: a pure function of spec and manifest.

The unit never names the payload version or release directory: ExecStart runs the program
through the `current` release link, so an upgrade is a link switch and the unit text changes
only when something in it matters (args, env, mounts, type, program path).
"""

from __future__ import annotations

import functools
import posixpath
from pathlib import Path

import jinja2

from pxhostd.errors import Failed, InvalidSpec
from pxhostd.paths import Paths
from pxhostd.payload.manifest import Manifest
from pxhostd.render.escape import FILTERS, UnitText
from pxhostd.spec import rules
from pxhostd.spec.model import Spec

SERVICE_TEMPLATE = "portworx.service.j2"
REBOOT_TEMPLATE = "portworx-reboot.service.j2"


def _only_escaped(value: object) -> object:
    """jinja2 `finalize`: every `{{ }}` must have gone through a systemd filter."""
    if isinstance(value, UnitText):
        return value
    raise Failed(
        f"render: template emitted an unescaped value of type {type(value).__name__}; "
        "pass it through an sd_* filter"
    )


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_only_escaped,
    )
    env.filters.update(FILTERS)
    return env


def reboot_unit_name(service: str) -> str:
    return f"{service}-reboot.service"


def _render(paths: Paths, template: str, context: dict[str, object]) -> str:
    try:
        tmpl = _environment(str(paths.templates_dir)).get_template(template)
        text = tmpl.render(context)
    except jinja2.TemplateNotFound as exc:
        raise Failed(f"render: template {exc.name} not found in {paths.templates_dir}") from None
    except jinja2.UndefinedError as exc:
        raise Failed(f"render: template {template} uses an undefined value: {exc}") from None
    if not text.endswith("\n"):
        text += "\n"
    return text


def _check_release_root(release_root: str) -> str:
    root = rules.check_abs_path("render: release_root", release_root, InvalidSpec)
    if root == "/":
        raise InvalidSpec("render: release_root must not be '/'")
    return root


def render_units(spec: Spec, manifest: Manifest, release_root: str, paths: Paths) -> dict[str, str]:
    """Unit file name -> text for the service (and its reboot hook if the payload asks)."""
    root = _check_release_root(release_root)
    common: dict[str, object] = {
        "spec_file": str(paths.spec_file),
        "service_unit": spec.unit_name,
    }
    units: dict[str, str] = {}
    units[spec.unit_name] = _render(paths, SERVICE_TEMPLATE, {
        **common,
        "description": f"{manifest.name} (managed by pxhostd)",
        "service_type": "notify" if manifest.notify else "exec",
        "exec_words": [posixpath.join(root, manifest.exec[0]), *manifest.exec[1:], *spec.args],
        "env": list(spec.env),
        "mounts": list(spec.mounts),
    })
    if manifest.reboot_unit and manifest.reboot_exec:
        program, *fixed = manifest.reboot_exec
        units[reboot_unit_name(spec.service)] = _render(paths, REBOOT_TEMPLATE, {
            **common,
            "description": f"{manifest.name} shutdown hook (managed by pxhostd)",
            "reboot_words": [posixpath.join(root, program), *fixed],
        })
    return units


def templates_present(templates_dir: Path) -> bool:
    """True if both templates exist (a packaging check for the daemon's start-up)."""
    return all((templates_dir / t).is_file() for t in (SERVICE_TEMPLATE, REBOOT_TEMPLATE))

"""dbus-fast's message codec without its event-loop buses, for short-lived commands.

Importing the `dbus_fast` package runs its `__init__`, which imports asyncio, the aio and
GLib buses, introspection and the service machinery: about 50 ms on a node, more than
everything else `pxhostctl status` does. The codec a blocking client needs (`Message`, the
unmarshaller, the EXTERNAL authenticator, the address parser) lives in submodules that
import none of it.

`load_codec` registers the package without running its `__init__`, so those submodules
import on their own. Nothing else changes for the rest of the process: the first time
anything asks the package for a name it exports (`from dbus_fast import BusType`,
`dbus_fast.Variant`), the real `__init__` runs in full, once, into the same module.
"""

from __future__ import annotations

import importlib.util
import sys

PACKAGE = "dbus_fast"


def load_codec() -> None:
    """Make dbus-fast's submodules importable without its package `__init__` (a no-op
    when the package is already imported)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{PACKAGE} is not installed")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(name: str) -> object:
        """The first lookup of a name the package itself defines: run its `__init__`."""
        if name.startswith("__"):  # probes such as __all__ or __wrapped__ find nothing
            raise AttributeError(name)
        del package.__getattr__
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package

"""Stop signals of the pod entrypoint: SIGTERM/SIGINT set an asyncio Event.

The Swarm prototype's monitor ignored signals and left orphans; the kubelet then had to
SIGKILL it. Here a stop signal only sets an asyncio Event (the entrypoint decides how to
wind down, never stopping the storage service). Orphans are not ours to reap: the image's
entrypoint is tini as a child subreaper (`tini -s -- pxhostd-pod`; under hostPID the pod is
not PID 1), which reaps whatever is re-parented to it and forwards SIGTERM to us, so
asyncio's child watchers are the only ones waiting on our own children.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_log = logging.getLogger(__name__)


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    signals: Iterable[signal.Signals] = STOP_SIGNALS,
) -> Callable[[], None]:
    """Make each of `signals` set `stop`; return a function that removes the handlers.

    No TTY needed, nothing else done in the handler: the program awaits `stop` and
    winds down itself (within the kubelet's grace period).
    """
    installed = list(signals)

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            _log.info("%s received; stopping (the storage service keeps running)", signum.name)
        stop.set()

    for signum in installed:
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return remove


def ignore_stop_signals(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
    """Once stopping, a further stop signal changes nothing (and must not kill us).

    Under tini the runtime's SIGTERM can arrive twice: tini forwards the one it gets, and
    podman and others signal every process of a container without a PID namespace of its
    own (hostPID). A second one after the handlers are gone would turn exit 0 into 143.
    """
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)

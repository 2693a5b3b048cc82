"""systemd's readiness protocol (``sd_notify``) over ``$NOTIFY_SOCKET``, stdlib only.

With ``Type=notify`` systemd waits for ``READY=1`` before it calls the service started;
``STOPPING=1`` says a stop is under way, ``RELOADING=1`` (with ``MONOTONIC_USEC``) a
reload, ``STATUS=...`` sets the line ``systemctl status`` shows. Outside systemd (no
``$NOTIFY_SOCKET``) every call does nothing. A notification never raises: a daemon must
not fail because its supervisor went away. Messages are at most 4 KiB and one datagram.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
MAX_MESSAGE = 4096
_STATUS_MAX = 200


class Notifier:
    """Sends state changes to the service manager named by ``$NOTIFY_SOCKET``.

    The address is read once, when the notifier is made (never at import): a path, or
    ``@name`` for the abstract namespace. ``vsock:`` addresses are not supported and
    disable notifications with a warning.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get(ENV, "")
        self._address: str | bytes | None = None
        if raw.startswith("@"):
            self._address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self._address = raw
        elif raw:
            logger.warning("unsupported %s address %r; not notifying systemd", ENV, raw,
                           extra={"event": "sdnotify.unsupported"})

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="...")``). True if sent."""
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            if key == "STATUS":
                text = text[:_STATUS_MAX]
            lines.append(f"{key}={text}")
        data = ("\n".join(lines) + "\n").encode("utf-8")[:MAX_MESSAGE]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.settimeout(1.0)
                s.sendto(data, self._address)
        except OSError as e:
            logger.warning("cannot notify systemd: %s", e.strerror or e,
                           extra={"event": "sdnotify.failed"})
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def reloading(self) -> bool:
        # MONOTONIC_USEC is what Type=notify-reload (systemd 253+) expects with RELOADING=1
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.monotonic_ns() // 1000)

    def reloaded(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def stopping(self, status: str = "stopping: finishing the current file or deletion") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds within which systemd's watchdog wants ``WATCHDOG=1`` (``WatchdogSec=``: it
    sets ``$WATCHDOG_USEC``, and ``$WATCHDOG_PID`` to the process it means); None when
    there is no watchdog for this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid.strip() != str(os.getpid())):
        return None
    return usec / 1_000_000

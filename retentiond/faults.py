"""Crash points for the kill -9 tests, hang points for the watchdog tests.

``crashpoint("ingest.after_vault")`` kills the process with SIGKILL, exactly as an
operator's ``kill -9`` or a power cut would, when the environment variable
``RETENTIOND_CRASH_AT`` names that point. Unset (always, in production) it does nothing.
The environment is read at call time, never at import.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "RETENTIOND_CRASH_AT"
HANG_ENV = "RETENTIOND_HANG_AT"


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def hangpoint(name: str) -> None:
    """Block the calling thread for good when ``RETENTIOND_HANG_AT`` names this point, as
    a system call on a dead mount would. Unset (always, in production) it does nothing."""
    if os.environ.get(HANG_ENV) == name:
        threading.Event().wait()

"""Crash points for the kill -9 tests.

``crashpoint("ingest.after_vault")`` kills the process with SIGKILL, exactly as an
operator's ``kill -9`` or a power cut would, when the environment variable
``RETENTIOND_CRASH_AT`` names that point. Unset (always, in production) it does nothing.
The environment is read at call time, never at import.
"""

from __future__ import annotations

import os
import signal

ENV = "RETENTIOND_CRASH_AT"


def crashpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

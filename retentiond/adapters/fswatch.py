"""Filesystem events (watchdog) for drop folders: they only wake the daemon loop, which
then scans; a missed event therefore never means a missed recording (the loop also scans
at start-up and at least every minute)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

logger = logging.getLogger(__name__)


class _Wake(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[], object]) -> None:
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("created", "modified", "moved", "closed"):
            self._on_change()


class InboxWatcher:
    """Watches inbox folders recursively and calls ``on_change`` on any new or changed file."""

    def __init__(self, folders: list[Path], *, on_change: Callable[[], object]) -> None:
        self._folders = [f for f in folders if f.is_dir()]
        self._handler = _Wake(on_change)
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        observer = Observer()
        for folder in self._folders:
            observer.schedule(self._handler, str(folder), recursive=True)
        observer.daemon = True
        try:
            observer.start()
        except OSError as e:  # e.g. inotify watch limit: scanning still finds everything
            logger.warning("filesystem events unavailable (%s); relying on periodic scans", e,
                           extra={"event": "watch.unavailable"})
            return
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

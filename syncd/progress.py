"""Progress of a large transfer (a reconcile of a big tree): a bar on a terminal, structured
log events otherwise (JSON logs, CI). Small pushes show nothing: they take milliseconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import structlog
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from syncd.pack import PackReport

log = structlog.get_logger("syncd")

MIN_FILES = 500  # below both thresholds a push needs no progress report
MIN_BYTES = 20 << 20
LOG_EVERY = 1.0  # seconds between structured progress events


class Sink(Protocol):
    def update(self, files: int, nbytes: int) -> None: ...

    def close(self) -> None: ...


class LogSink:
    """One `progress` event per second (and a last one): what a JSON-log reader sees."""

    def __init__(self, label: str, files: int, nbytes: int) -> None:
        self.label, self.files, self.bytes = label, files, nbytes
        self._last = 0.0
        self._done = (0, 0)

    def update(self, files: int, nbytes: int) -> None:
        self._done = (files, nbytes)
        now = time.monotonic()
        if now - self._last >= LOG_EVERY:
            self._last = now
            self._emit()

    def _emit(self) -> None:
        files, nbytes = self._done
        pct = min(100.0, round(100 * nbytes / self.bytes, 1)) if self.bytes else 100.0
        log.info("progress", container=self.label, files=files, files_total=self.files,
                 bytes=nbytes, bytes_total=self.bytes, percent=pct)

    def close(self) -> None:
        self._emit()


class BarSink:
    """A rich progress bar on stderr (files and bytes)."""

    def __init__(self, label: str, files: int, nbytes: int, console: Console) -> None:
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("files"), DownloadColumn(), TimeRemainingColumn(), console=console,
                                  transient=False)
        self._files = self._progress.add_task(f"{label} files", total=files)
        self._bytes = self._progress.add_task(f"{label} bytes", total=nbytes, visible=False)
        self._progress.start()

    def update(self, files: int, nbytes: int) -> None:
        self._progress.update(self._files, completed=files)
        self._progress.update(self._bytes, completed=nbytes)

    def close(self) -> None:
        self._progress.stop()


class Reporter:
    """Chooses the sink: a bar when stderr is a terminal and logs are for people."""

    def __init__(self, log_format: str = "console") -> None:
        self.bar = log_format == "console" and sys.stderr.isatty()
        self._console = Console(stderr=True) if self.bar else None

    def sink(self, label: str, files: int, nbytes: int) -> Sink | None:
        if files < MIN_FILES and nbytes < MIN_BYTES:
            return None
        if self._console is not None:
            return BarSink(label, files, nbytes, self._console)
        return LogSink(label, files, nbytes)


def tracked(chunks: Iterator[bytes], report: PackReport, sink: Sink) -> Iterator[bytes]:
    """Pass the tar stream through, telling `sink` how far the packer got (≤ 10 times/s)."""
    last = 0.0
    try:
        for chunk in chunks:
            yield chunk
            now = time.monotonic()
            if now - last >= 0.1:
                last = now
                sink.update(report.files, report.bytes)
        sink.update(report.files, report.bytes)
    finally:
        sink.close()

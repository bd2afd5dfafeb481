"""Per-batch trace records: one JSON object per line, one span per step (the span names and
their order: docs/ARCHITECTURE.md, "The trace").

The file is bounded: when a record would take it past `daemon.trace_max_mb` it is renamed
`trace.jsonl.1` (the older ones shift to `.2` …, the oldest beyond `daemon.trace_keep` is
removed) and a new one begins. Readers (`read_trace`) go across the rotated files, oldest first.
More than one process may append (the daemon, `syncd trigger --standalone`): each append and
each rotation happens under an exclusive flock(2) on the current file, and a reader opens all
the files under a shared one, so no record is lost, doubled or read out of order by a rotation.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from syncd.model import Span

if TYPE_CHECKING:
    from syncd.config import Config

MB = 1024 * 1024

# The order steps happen in a batch (span names are `<step>` or `<step>:<what>`): tables
# and the status list steps in this order.
STEP_ORDER = ("detect", "coalesce", "plan", "build", "scan", "manifest", "pack", "push", "run", "restart",
              "fallback", "ready", "action")


def step_kind(span_name: str) -> str:
    """`push:backend/app-1` -> `push:backend` (one per target); `build:api`, `plan` as they are."""
    return span_name.split("/", 1)[0]


def step_order(kind: str) -> tuple:
    """Sort key: known steps in batch order, unknown ones after them, `total` last."""
    if kind == "total":
        return (2, 0, kind)
    step = kind.split(":", 1)[0]
    if step in STEP_ORDER:
        return (0, STEP_ORDER.index(step), kind)
    return (1, 0, kind)


@dataclass
class BatchTrace:
    batch_id: int
    started: float  # earliest known moment of the change (file mtime, else first event)
    spans: list[Span] = field(default_factory=list)
    paths: int = 0
    reconcile: bool = False
    errors: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    services: list[str] = field(default_factory=list)  # the services the batch touched

    def add(self, name: str, start: float, end: float, ok: bool = True, detail: dict | str | None = None) -> Span:
        span = Span(name, start, end, ok, detail)
        self.spans.append(span)
        return span

    def finish(self, end: float) -> dict:
        ok = not self.errors and all(s.ok for s in self.spans)
        end = max([end, *(s.end for s in self.spans)])
        # A step that began before this batch's change (a build already running when the
        # edit was made, whose outcome the batch waited for) counts only from the change on:
        # no span may claim more than the record's total. The part before is kept in detail.
        self.spans = [_clipped(s, self.started) if s.start < self.started else s for s in self.spans]
        self.spans.sort(key=lambda s: (s.start, s.end))
        total = Span("total", self.started, end, ok, {"paths": self.paths, **self.stats})
        return {
            "batch": self.batch_id,
            "reconcile": self.reconcile,
            "ok": ok,
            "errors": self.errors,
            "services": sorted(set(self.services)),
            "spans": [s.as_dict() for s in self.spans] + [total.as_dict()],
        }


def _clipped(span: Span, start: float) -> Span:
    before = round((min(span.end, start) - span.start) * 1000.0, 3)
    detail = span.detail if isinstance(span.detail, dict) else ({"text": span.detail} if span.detail else {})
    return Span(span.name, start, max(span.end, start), span.ok, {**detail, "began_before_batch_ms": before})


class TraceWriter:
    """Appends records to the trace file (one line each, written whole: other tools tail it),
    rotating it at `max_bytes` (None: never) and keeping `keep` rotated files."""

    def __init__(self, path: Path | None, max_bytes: int | None = None, keep: int = 2) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.records: list[dict] = []  # the last few, for the console and tests
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        self.records.append(record)
        del self.records[:-200]
        if self.path is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        append(self.path, line.encode(), self.max_bytes, self.keep)


def trace_writer(cfg: Config) -> TraceWriter:
    """The writer of a config's `daemon.trace`, bounded by `trace_max_mb` and `trace_keep`."""
    return TraceWriter(cfg.resolve(cfg.daemon.trace), int(cfg.daemon.trace_max_mb * MB), cfg.daemon.trace_keep)


def rotated(path: Path, n: int) -> Path:
    """The n-th rotated file of `path` (1: the newest)."""
    return path.with_name(f"{path.name}.{n}")


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of `path` there are, oldest first."""
    found = []
    with suppress(OSError):
        for p in path.parent.iterdir():
            suffix = p.name[len(path.name) + 1:]
            if p.name.startswith(path.name + ".") and suffix.isdigit():
                found.append((int(suffix), p))
    return [p for _, p in sorted(found, reverse=True)]


def append(path: Path, data: bytes, max_bytes: int | None, keep: int) -> None:
    """Append `data` (whole lines) to `path`, first rotating it if `data` would take it past
    `max_bytes` (a record larger than that still gets a file of its own)."""
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _flock(fd, fcntl.LOCK_EX)
            if not _is_current(fd, path):
                continue  # another writer rotated it while this one waited: append to the new file
            size = os.fstat(fd).st_size
            if max_bytes is not None and size > 0 and size + len(data) > max_bytes:
                _rotate(path, keep)
                continue
            os.write(fd, data)
            return
        finally:
            os.close(fd)  # drops the lock


def _rotate(path: Path, keep: int) -> None:
    """`path` -> `.1`, `.1` -> `.2` …; the oldest, and any a larger `keep` left behind, removed.
    Called under the current file's exclusive lock."""
    for old in rotated_files(path):
        if int(old.name.rpartition(".")[2]) >= keep:
            with suppress(FileNotFoundError):
                old.unlink()
    for n in range(keep - 1, 0, -1):
        with suppress(FileNotFoundError):
            os.replace(rotated(path, n), rotated(path, n + 1))
    os.replace(path, rotated(path, 1))


def _flock(fd: int, how: int) -> None:
    # On a file system without flock(2) appends still land as whole lines; only two rotations
    # racing each other could then misorder files.
    with suppress(OSError):
        fcntl.flock(fd, how)


def _is_current(fd: int, path: Path) -> bool:
    """The open file is still the one at `path` (not rotated away since it was opened)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextmanager
def _opened(path: Path) -> Iterator[list[tuple[Path, IO[str]]]]:
    """The trace file and its rotated files, opened oldest first while no rotation can run
    (a shared lock on the current file). FileNotFoundError when there is none of them."""
    current: IO[str] | None = None
    older: list[tuple[Path, IO[str]]] = []
    try:
        while current is None:
            try:
                current = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                break  # only rotated files (if any): nothing to rotate them meanwhile
            _flock(current.fileno(), fcntl.LOCK_SH)
            if not _is_current(current.fileno(), path):
                current.close()  # rotated between the open and the lock: take the new one
                current = None
        for old in rotated_files(path):
            with suppress(FileNotFoundError):
                older.append((old, open(old, encoding="utf-8")))  # noqa: SIM115 - closed below
        if current is not None:
            _flock(current.fileno(), fcntl.LOCK_UN)
        files = older + ([(path, current)] if current is not None else [])
        if not files:
            raise FileNotFoundError(errno.ENOENT, "no trace file", str(path))
        yield files
    finally:
        for _, f in older:
            f.close()
        if current is not None:
            current.close()


def read_trace(path: Path) -> list[dict]:
    """Every record of the trace file and its rotated files, oldest first. A torn last line
    (no newline, not JSON: a record being written, or cut by a crash) is left out."""
    records = []
    with _opened(path) as files:
        for name, f in files:
            for n, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                try:
                    records.append(json.loads(text))
                except json.JSONDecodeError as e:
                    if not line.endswith("\n"):
                        break
                    raise ValueError(f"{name}:{n}: not a JSON trace record ({e.msg})") from None
    return records


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def span_step(span_name: str) -> str:
    """`push:web/app-1` -> `push`: the step, whatever the container or service."""
    return span_name.split(":", 1)[0]

"""Per-batch trace records: one JSON object per line, one span per step (the span names and
their order: docs/ARCHITECTURE.md, "The trace")."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from syncd.model import Span

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
    """Appends records to the trace file (one line each, flushed: other tools tail it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict] = []  # the last few, for the console and tests
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        self.records.append(record)
        del self.records[:-200]
        if self.path is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read_trace(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON trace record ({e.msg})") from None
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

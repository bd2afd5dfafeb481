"""Prometheus metrics from trace records (docs/ARCHITECTURE.md, "The trace"), for the control API's `/metrics`.

Each `Metrics` has its own `CollectorRegistry` (never the process-global one), so several
engines or tests in one process do not collide. Feed it every record the `TraceWriter`
writes (`observe`), serve `render()`.

    syncd_span_seconds{span, target}          histogram, 1 ms .. 60 s
    syncd_batches_total{kind, ok}             kind = batch | reconcile | action, ok = true | false
    syncd_bytes_sent_total{target}            from the push spans' detail
    syncd_files_sent_total{target}
    syncd_errors_total                        error lines in records (a failed record without one counts 1)
    syncd_fallbacks_total{service}            fallback:<service> spans

`span` is the step (`detect`, `plan`, `build`, `push`, `total`...); `target` is the target of
`push:`/`manifest:` spans (the part up to '/'), the target of the pushed container for `pack`,
the name after `build:`/`run:`/`restart:`/`fallback:` (the service's step) and `action:` (the
action), and "" for the rest.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NAMED_STEPS = ("build", "run", "restart", "fallback", "action")  # `<step>:<name>`
CONTAINER_STEPS = ("push", "manifest")  # `<step>:<target>/<container>`


def span_labels(span: dict) -> tuple[str, str]:
    """(span, target) labels of one span: `push:backend/app-1` -> ("push", "backend")."""
    name = str(span.get("name", ""))
    step, _, rest = name.partition(":")
    if step in CONTAINER_STEPS:
        return step, rest.split("/", 1)[0]
    if step in NAMED_STEPS:
        return step, rest
    if step == "pack" and isinstance(span.get("detail"), dict):
        return step, str(span["detail"].get("container", "")).split("/", 1)[0]
    return step, ""


def record_kind(record: dict) -> str:
    if record.get("action") is not None:
        return "action"
    return "reconcile" if record.get("reconcile") else "batch"


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.span_seconds = Histogram("syncd_span_seconds", "Duration of trace spans (steps of a batch), seconds",
                                      ["span", "target"], buckets=BUCKETS, registry=r)
        self.batches = Counter("syncd_batches_total", "Trace records: sync batches, reconcile passes, manual actions",
                               ["kind", "ok"], registry=r)
        self.bytes_sent = Counter("syncd_bytes_sent_total", "Bytes pushed to containers, per target", ["target"], registry=r)
        self.files_sent = Counter("syncd_files_sent_total", "Files pushed to containers, per target", ["target"], registry=r)
        self.errors = Counter("syncd_errors_total", "Errors recorded in trace records", registry=r)
        self.fallbacks = Counter("syncd_fallbacks_total", "Fallbacks run (the service's full sync/rebuild)", ["service"],
                                 registry=r)
        self._gauges: dict[str, tuple[Gauge, tuple[str, ...]]] = {}

    def observe(self, record: dict) -> None:
        """Account one trace record. Never raises on a malformed one (it is skipped, in part or whole)."""
        if not isinstance(record, dict) or not isinstance(record.get("spans"), list):
            return
        for span in record["spans"]:
            if not isinstance(span, dict):
                continue
            step, target = span_labels(span)
            start, end = span.get("start"), span.get("end")
            if isinstance(start, (int, float)) and isinstance(end, (int, float)):
                seconds = float(end) - float(start)
            else:
                seconds = _number(span.get("ms")) / 1000
            self.span_seconds.labels(span=step, target=target).observe(max(0.0, seconds))
            raw = span.get("detail")
            detail: dict = raw if isinstance(raw, dict) else {}
            if step == "push":
                self.bytes_sent.labels(target=target).inc(max(0.0, _number(detail.get("bytes"))))
                self.files_sent.labels(target=target).inc(max(0.0, _number(detail.get("files"))))
            elif step == "fallback":
                self.fallbacks.labels(service=target).inc()
        ok = bool(record.get("ok", True))
        self.batches.labels(kind=record_kind(record), ok="true" if ok else "false").inc()
        errors = record.get("errors")
        n = len(errors) if isinstance(errors, list) else 0
        if n or not ok:
            self.errors.inc(max(n, 1))

    def set_state(self, name: str, value: float, **labels: str) -> None:
        """A gauge `syncd_<name>` (made on first use, its label names fixed then): e.g.
        `set_state("containers", 3, target="backend")`, `set_state("queue_paths", 12)`."""
        names = tuple(sorted(labels))
        if name not in self._gauges:
            self._gauges[name] = (Gauge(f"syncd_{name}", f"syncd state: {name}", names, registry=self.registry), names)
        gauge, known = self._gauges[name]
        if known != names:
            raise ValueError(f"gauge syncd_{name} has labels {list(known)}, not {list(names)}")
        (gauge.labels(**labels) if names else gauge).set(value)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for a `/metrics` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

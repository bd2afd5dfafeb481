"""Optional OpenTelemetry export of trace records (docs/ARCHITECTURE.md, "The trace"): one record, one trace.

Off unless the SDK is installed (`pip install 'syncd[otel]'`) and the environment asks for it
with the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP over HTTP/protobuf, e.g. http://localhost:4318),
or `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`; comma-separated). The exporter reads the
other OTEL_EXPORTER_OTLP_* variables itself (headers, timeout, compression, certificates),
the resource comes from OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME (service.name defaults
to "syncd"), and OTEL_SDK_DISABLED=true turns it all off.

A record becomes a root span `batch N` (`reconcile`, `action NAME`) from the `total` span's
start to its end, with one child per other span at that span's own start and end. Span
details become attributes `syncd.<key>` (nested keys joined by '.', lists of plain values
joined by ','; only str/int/float/bool are kept); a span that is not ok has status ERROR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from syncd import __version__

log = structlog.get_logger("syncd.otel")

Scalar = str | int | float | bool


def to_ns(t: float) -> int:
    """Unix seconds (float) -> integer nanoseconds, without the float error of `t * 1e9`."""
    whole = int(t // 1)
    return whole * 1_000_000_000 + round((t - whole) * 1e9)


def flatten(detail: Any, prefix: str = "syncd") -> dict[str, Scalar]:
    """Span detail -> OpenTelemetry attributes: plain values only, nested keys dotted."""
    out: dict[str, Scalar] = {}
    if detail is None:
        return out
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            out.update(flatten(value, f"{prefix}.{key}"))
    elif isinstance(detail, (str, bool, int, float)):
        out[prefix if prefix != "syncd" else "syncd.detail"] = detail
    elif isinstance(detail, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in detail):
        out[prefix] = ",".join(str(v) for v in detail)
    return out


def root_name(record: dict) -> str:
    if record.get("action") is not None:
        return f"action {record['action']}"
    if record.get("reconcile"):
        return "reconcile"
    return f"batch {record.get('batch')}"


def _total(record: dict) -> dict | None:
    spans = record.get("spans") or []
    if spans and spans[-1].get("name") == "total":
        return spans[-1]
    return next((s for s in spans if s.get("name") == "total"), None)


def build_callback(provider: Any) -> Callable[[dict], None]:
    """A callback turning one trace record into one trace on `provider` (a TracerProvider)."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = provider.get_tracer("syncd", __version__)

    def export(record: dict) -> None:
        total = _total(record)
        if total is None:
            return
        errors = [str(e) for e in record.get("errors") or []]
        attrs: dict[str, Any] = {
            "syncd.kind": "action" if record.get("action") is not None else
                          "reconcile" if record.get("reconcile") else "batch",
            "syncd.ok": bool(record.get("ok", True)),
            **flatten(total.get("detail")),
        }
        if record.get("batch") is not None:
            attrs["syncd.batch"] = int(record["batch"])
        if record.get("action") is not None:
            attrs["syncd.action"] = str(record["action"])
        if record.get("services"):
            attrs["syncd.services"] = ",".join(record["services"])
        if errors:
            attrs["syncd.errors"] = "\n".join(errors)
        root = tracer.start_span(root_name(record), context=otel_context.Context(), kind=SpanKind.INTERNAL,
                                 attributes=attrs, start_time=to_ns(float(total["start"])))
        if not record.get("ok", True) or not total.get("ok", True):
            root.set_status(Status(StatusCode.ERROR, errors[0].splitlines()[0] if errors else "failed"))
        parent = trace.set_span_in_context(root)
        for span in record.get("spans") or []:
            if span is total:
                continue
            name = str(span["name"])
            step, _, rest = name.partition(":")
            child_attrs: dict[str, Any] = {"syncd.step": step, **flatten(span.get("detail"))}
            if rest:
                child_attrs["syncd.target"] = rest
            child = tracer.start_span(name, context=parent, kind=SpanKind.INTERNAL, attributes=child_attrs,
                                      start_time=to_ns(float(span["start"])))
            if not span.get("ok", True):
                detail = span.get("detail")
                why = detail.get("error") if isinstance(detail, dict) else None
                child.set_status(Status(StatusCode.ERROR, str(why).splitlines()[0] if why else "failed"))
            child.end(end_time=to_ns(float(span["end"])))
        root.end(end_time=to_ns(float(total["end"])))

    return export


class RecordExporter:
    """The callback `otel_exporter` returns: call it with each record; `shutdown()` flushes."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._export = build_callback(provider)

    def __call__(self, record: dict) -> None:
        try:
            self._export(record)
        except Exception as e:
            log.warning("OpenTelemetry export failed", error=str(e), batch=record.get("batch"))

    def force_flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


def otel_exporter() -> Callable[[dict], None] | None:
    """A record callback exporting to OpenTelemetry, or None when not installed or not asked for."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    wanted = [x.strip().lower() for x in env.get("OTEL_TRACES_EXPORTER", "").split(",") if x.strip()]
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not wanted:
        if not endpoint:
            return None
        wanted = ["otlp"]
    wanted = [w for w in wanted if w != "none"]
    if not wanted:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        log.warning("OTEL_* is set but the OpenTelemetry SDK is not installed; not exporting traces",
                    hint="pip install 'syncd[otel]'")
        return None
    exporters: list[SpanExporter] = []
    for kind in wanted:
        if kind == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning("the OTLP HTTP exporter is not installed; not exporting traces",
                            hint="pip install 'syncd[otel]'")
                return None
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
            if protocol and protocol != "http/protobuf":
                log.warning("syncd exports OTLP over HTTP/protobuf only", protocol=protocol)
            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout... from OTEL_EXPORTER_OTLP_*
        elif kind == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER; expected otlp, console or none", exporter=kind)
    if not exporters:
        return None
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "syncd"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("exporting traces to OpenTelemetry", exporters=wanted, endpoint=endpoint or "(default)",
             service=resource.attributes.get("service.name"))
    return RecordExporter(provider)

"""Exporters built on trace records: Prometheus `/metrics` (syncd/metrics.py) and
OpenTelemetry (syncd/otel.py), on records of a real engine run and hand-written ones."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.metrics import BUCKETS, Metrics, span_labels
from syncd.otel import build_callback, flatten, otel_exporter, to_ns
from tests.test_report import T0, hand_records, real_trace


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    return real_trace(tmp_path_factory)


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of the rendered body, parsed like Prometheus does."""
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(found: dict, name: str, **labels: str) -> list[float]:
    return [v for (n, ls), v in found.items() if n == name and all((k, v2) in ls for k, v2 in labels.items())]


# --- Prometheus ----------------------------------------------------------------------------


def test_span_labels() -> None:
    assert span_labels({"name": "push:backend/api-1"}) == ("push", "backend")
    assert span_labels({"name": "manifest:db/local"}) == ("manifest", "db")
    assert span_labels({"name": "build:backend"}) == ("build", "backend")
    assert span_labels({"name": "fallback:frontend"}) == ("fallback", "frontend")
    assert span_labels({"name": "run:migrate"}) == ("run", "migrate")
    assert span_labels({"name": "restart:api"}) == ("restart", "api")
    assert span_labels({"name": "action:db-reset"}) == ("action", "db-reset")
    assert span_labels({"name": "pack", "detail": {"container": "web/app-1"}}) == ("pack", "web")
    assert span_labels({"name": "detect"}) == ("detect", "") and span_labels({"name": "total"}) == ("total", "")


def test_metrics_of_a_real_run(real: tuple[list[dict], Path]) -> None:
    records, _ = real
    m = Metrics()
    for r in records:
        m.observe(r)
    body, ctype = m.render()
    assert ctype == prometheus_client.CONTENT_TYPE_LATEST and body.startswith(b"# HELP")
    found = samples(m)
    assert pick(found, "syncd_span_seconds_count", span="total") == [len(records)]
    assert pick(found, "syncd_span_seconds_bucket", span="total", le="+Inf") == [len(records)]
    total_s = sum(s["end"] - s["start"] for r in records for s in r["spans"] if s["name"] == "total")
    assert pick(found, "syncd_span_seconds_sum", span="total")[0] == pytest.approx(total_s)
    pushes = [s for r in records for s in r["spans"] if s["name"].startswith("push:")]
    assert pushes and all(s["name"] == "push:box/local" for s in pushes)
    assert pick(found, "syncd_bytes_sent_total", target="box") == [sum(s["detail"]["bytes"] for s in pushes)]
    assert pick(found, "syncd_files_sent_total", target="box") == [sum(s["detail"]["files"] for s in pushes)]
    assert pick(found, "syncd_span_seconds_count", span="push", target="box") == [len(pushes)]
    assert pick(found, "syncd_span_seconds_count", span="build", target="api") == [
        sum(1 for r in records for s in r["spans"] if s["name"] == "build:api")]
    # one failed batch (the run step) and one failed action, each with one error line
    assert pick(found, "syncd_batches_total", kind="batch", ok="false") == [1]
    assert pick(found, "syncd_batches_total", kind="action", ok="false") == [1]
    assert pick(found, "syncd_batches_total", kind="action", ok="true") == [1]
    assert sum(pick(found, "syncd_batches_total")) == len(records)
    assert pick(found, "syncd_errors_total") == [2]


def test_metrics_of_hand_records() -> None:
    recs = hand_records()
    m = Metrics()
    for r in recs:
        m.observe(r)
    found = samples(m)
    assert sum(pick(found, "syncd_span_seconds_count", span="total")) == len(recs)
    assert pick(found, "syncd_bytes_sent_total", target="backend") == [3000 + 1024 + 1024]
    assert pick(found, "syncd_bytes_sent_total", target="frontend") == [2048]
    assert pick(found, "syncd_files_sent_total", target="backend") == [3 + 1 + 1]
    assert pick(found, "syncd_fallbacks_total", service="frontend") == [1]
    assert pick(found, "syncd_batches_total", kind="reconcile", ok="true") == [1]
    assert pick(found, "syncd_batches_total", kind="batch", ok="true") == [2]
    assert pick(found, "syncd_batches_total", kind="batch", ok="false") == [1]
    assert pick(found, "syncd_batches_total", kind="action", ok="false") == [1]
    # batch 2 has one error line; the failed action none, but counts as one
    assert pick(found, "syncd_errors_total") == [2]
    # builds of backend: 100 ms, 300 ms, 500 ms (cumulative buckets; edges aside, float times)
    le = {dict(ls)["le"]: v for (n, ls), v in found.items()
          if n == "syncd_span_seconds_bucket" and ("span", "build") in ls and ("target", "backend") in ls}
    assert (le["0.05"], le["0.25"], le["1.0"], le["+Inf"]) == (0, 1, 3, 3)
    assert [float(k) for k in le if k != "+Inf"] == list(BUCKETS)
    assert BUCKETS[0] == 0.001 and BUCKETS[-1] == 60.0


def test_metrics_have_their_own_registry() -> None:
    a, b = Metrics(), Metrics()  # no "Duplicated timeseries" from a shared registry
    a.observe(hand_records()[1])
    assert pick(samples(a), "syncd_span_seconds_count", span="total") == [1]
    assert pick(samples(b), "syncd_span_seconds_count", span="total") == []
    assert b"syncd_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_metrics_skip_malformed_records() -> None:
    m = Metrics()
    for bad in (None, 5, {}, {"spans": "x"}, {"spans": [None, {"name": "detect"}, {"name": "push:x/y", "ms": "fast"}]}):
        m.observe(bad)  # type: ignore[arg-type]
    found = samples(m)
    assert pick(found, "syncd_span_seconds_count", span="detect") == [1]  # no times: counted as 0 s
    assert pick(found, "syncd_bytes_sent_total", target="x") == [0]
    assert sum(pick(found, "syncd_batches_total")) == 1  # only the one with a list of spans


def test_set_state_gauges() -> None:
    m = Metrics()
    m.set_state("containers", 3, target="backend")
    m.set_state("containers", 1, target="db")
    m.set_state("queue_paths", 12)
    found = samples(m)
    assert pick(found, "syncd_containers", target="backend") == [3] and pick(found, "syncd_containers", target="db") == [1]
    assert pick(found, "syncd_queue_paths") == [12]
    with pytest.raises(ValueError, match="labels"):
        m.set_state("containers", 2, service="x")


# --- OpenTelemetry ------------------------------------------------------------------------


@pytest.fixture
def memory():  # noqa: ANN201
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield build_callback(provider), exporter
    provider.shutdown()


def check_trace(spans: list, rec: dict) -> None:
    """One record = one trace: the root over `total`, one child per other span, times equal."""
    from opentelemetry.trace import StatusCode

    assert len(spans) == len(rec["spans"])
    assert len({s.context.trace_id for s in spans}) == 1
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    root = roots[0]
    total = rec["spans"][-1]
    assert (root.start_time, root.end_time) == (to_ns(total["start"]), to_ns(total["end"]))
    assert abs(root.start_time / 1e9 - total["start"]) < 1e-6
    children = [s for s in spans if s is not root]
    for child, want in zip(sorted(children, key=lambda s: (s.start_time, s.name)),
                           sorted(rec["spans"][:-1], key=lambda s: (to_ns(s["start"]), s["name"])), strict=True):
        assert child.name == want["name"]
        assert child.parent.span_id == root.context.span_id and child.parent.trace_id == root.context.trace_id
        assert (child.start_time, child.end_time) == (to_ns(want["start"]), to_ns(want["end"]))
        assert (child.status.status_code == StatusCode.ERROR) == (not want["ok"])
        for value in child.attributes.values():
            assert isinstance(value, (str, int, float, bool))
    assert (root.status.status_code == StatusCode.ERROR) == (not rec["ok"])


def test_otel_one_record_one_trace(memory, real: tuple[list[dict], Path]) -> None:  # noqa: ANN001
    export, exporter = memory
    records, _ = real
    rec = next(r for r in records if any(s["name"] == "build:api" for s in r["spans"]) and r["ok"])
    export(rec)
    spans = exporter.get_finished_spans()
    check_trace(list(spans), rec)
    root = next(s for s in spans if s.parent is None)
    assert root.name == f"batch {rec['batch']}" and root.attributes["syncd.batch"] == rec["batch"]
    assert root.attributes["syncd.services"] == "api" and root.attributes["syncd.kind"] == "batch"
    push = next(s for s in spans if s.name == "push:box/local")
    detail = next(s for s in rec["spans"] if s["name"] == "push:box/local")["detail"]
    assert push.attributes["syncd.bytes"] == detail["bytes"] and push.attributes["syncd.files"] == detail["files"]
    assert push.attributes["syncd.step"] == "push" and push.attributes["syncd.target"] == "box/local"


def test_otel_every_real_record_is_its_own_trace(memory, real: tuple[list[dict], Path]) -> None:  # noqa: ANN001
    export, exporter = memory
    records, _ = real
    for rec in records:
        exporter.clear()
        export(rec)
        check_trace(list(exporter.get_finished_spans()), rec)
    exporter.clear()
    for rec in records:
        export(rec)
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == len(records)


def test_otel_names_and_failures(memory) -> None:  # noqa: ANN001
    export, exporter = memory
    recs = hand_records()
    names = []
    for rec in recs:
        exporter.clear()
        export(rec)
        spans = list(exporter.get_finished_spans())
        check_trace(spans, rec)
        root = next(s for s in spans if s.parent is None)
        names.append(root.name)
        if not rec["ok"]:
            assert root.attributes["syncd.ok"] is False
    assert names == ["reconcile", "batch 1", "batch 2", "batch 3", "action db-reset", "action broken"]
    exporter.clear()
    export(recs[2])  # the failed build
    spans = list(exporter.get_finished_spans())
    root = next(s for s in spans if s.parent is None)
    assert root.status.description.startswith("build:backend failed (exit 101)")
    assert "src/main.rs:3:5" in root.attributes["syncd.errors"]
    build = next(s for s in spans if s.name == "build:backend")
    assert build.status.description == "error[E0308]" and build.attributes["syncd.exit"] == 101


def test_flatten_keeps_plain_values() -> None:
    assert flatten({"files": 1, "ok": True, "ms": 1.5, "where": "db", "targets": ["a", "b"], "none": None,
                    "nested": {"x": 1, "deep": {"y": "z"}}, "objs": [{"a": 1}]}) == {
        "syncd.files": 1, "syncd.ok": True, "syncd.ms": 1.5, "syncd.where": "db", "syncd.targets": "a,b",
        "syncd.nested.x": 1, "syncd.nested.deep.y": "z"}
    assert flatten("just text") == {"syncd.detail": "just text"} and flatten(None) == {}
    assert abs(to_ns(1795710105.0573814) - 1795710105057381400) < 500  # float seconds hold ~240 ns here
    assert to_ns(T0 + 0.5) == int(T0) * 10**9 + 500_000_000


OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
             "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_PROTOCOL")


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_otel_exporter_is_off_unless_asked(otel_env: pytest.MonkeyPatch) -> None:
    assert otel_exporter() is None
    otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otel_exporter() is None
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    otel_env.setenv("OTEL_SDK_DISABLED", "true")
    assert otel_exporter() is None


def test_otel_exporter_without_the_sdk(otel_env: pytest.MonkeyPatch) -> None:
    import sys

    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    otel_env.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    assert otel_exporter() is None


def test_otel_exporter_console(otel_env: pytest.MonkeyPatch) -> None:
    import io

    from opentelemetry.sdk.trace import export as export_module

    buf = io.StringIO()

    class ToBuffer(export_module.ConsoleSpanExporter):
        def __init__(self) -> None:
            super().__init__(out=buf)

    otel_env.setattr(export_module, "ConsoleSpanExporter", ToBuffer)
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    export = otel_exporter()
    assert export is not None
    try:
        assert export.provider.resource.attributes["service.name"] == "syncd"  # type: ignore[attr-defined]
        export(hand_records()[1])
        export.force_flush()  # type: ignore[attr-defined]
    finally:
        export.shutdown()  # type: ignore[attr-defined]
    assert '"name": "batch 1"' in buf.getvalue() and '"name": "build:backend"' in buf.getvalue()
    otel_env.setenv("OTEL_SERVICE_NAME", "my-dev-env")
    export = otel_exporter()
    assert export.provider.resource.attributes["service.name"] == "my-dev-env"  # type: ignore[union-attr]
    export.shutdown()  # type: ignore[union-attr]
    # a record that cannot be exported is logged, never raised into the engine
    export({"spans": [{"name": "total", "start": "soon"}]})


def test_otel_exporter_sends_otlp_http(otel_env: pytest.MonkeyPatch, real: tuple[list[dict], Path]) -> None:
    """End to end with the `otel` extra: OTLP/HTTP protobuf to a collector at OTEL_EXPORTER_OTLP_ENDPOINT."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    got: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        export = otel_exporter()
        assert export is not None
        records, _ = real
        rec = next(r for r in records if r.get("action") == "broken")
        export(rec)
        export.shutdown()  # type: ignore[attr-defined]  # flushes the batch processor
    finally:
        server.shutdown()
    assert got and got[0][0] == "/v1/traces"
    req = ExportTraceServiceRequest()
    req.ParseFromString(b"".join(body for _, body in got))
    attrs = {a.key: a.value.string_value for rs in req.resource_spans for a in rs.resource.attributes}
    assert attrs["service.name"] == "syncd" and attrs["deployment.environment"] == "test"
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["action broken", "action:broken"]
    root = next(s for s in spans if s.name == "action broken")
    child = next(s for s in spans if s.name == "action:broken")
    assert child.parent_span_id == root.span_id and child.trace_id == root.trace_id
    assert root.start_time_unix_nano == to_ns(rec["spans"][-1]["start"]) and root.status.code == 2  # ERROR
    assert json.dumps(rec)  # the record itself is untouched

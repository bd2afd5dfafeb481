"""`Transport.patch` over every kind (the subjects of tests/test_transport_contract.py): Docker
and Kubernetes (the API-server fixture) rebuild a file from a block delta, through the session
and through one exec per request; a wrong base is refused with the file untouched; local and
in-memory targets answer `Unsupported` (a file is written whole there)."""

from __future__ import annotations

import hashlib
import os

import pytest
from engine_harness import wait_until
from test_delta import elf_like
from test_transport_contract import Subject, _tar, subject  # noqa: F401 - the fixture

from syncd.config import DockerTarget, KubernetesTarget
from syncd.core.delta import encode
from syncd.transports.base import ApplyRequest, PatchRequest, Transport, Unsupported
from syncd.transports.patch import patch_args, patch_stream

pytestmark = pytest.mark.anyio


def _request(base: bytes, new: bytes, claimed: bytes | None = None) -> PatchRequest:
    e = encode(base, new)
    args = patch_args("/app", "bin/api", e.block, hashlib.sha1(claimed if claimed is not None else base).hexdigest(),
                      hashlib.sha1(new).hexdigest(), 0o755, 1_700_000_000)
    return PatchRequest("/app", "bin/api", args, patch_stream(e, ["bin"], gzip_level=1))


async def _digest(t: Transport, ref, path: str) -> str:  # noqa: ANN001
    return (await t.hash(ref, [path])).get(path) or (await t.manifest(ref, [path]))[path].digest


def _per_exec(s: Subject) -> Transport | None:
    """The same container reached with one exec per request (no session)."""
    from syncd.transports.docker import DockerTransport
    from syncd.transports.kube import KubeTransport

    t = s.transport
    if isinstance(t, DockerTransport):
        return DockerTransport("t", DockerTarget(kind="docker", container=s.ref.name), sessions=False)
    if isinstance(t, KubeTransport):
        return KubeTransport("t", KubernetesTarget(kind="kubernetes", namespace="dev", selector="app=web"), sessions=False)
    return None


async def test_a_large_file_is_patched_from_its_base(subject: Subject) -> None:  # noqa: F811
    t, ref = subject.transport, subject.ref
    base = elf_like(3 << 20)
    new = base[:1_500_000] + os.urandom(10_000) + base[1_500_000:]
    await t.apply(ref, ApplyRequest("/app", [], ["bin/api"], iter([_tar({"bin/api": base}, dirs=("bin",))])))
    try:
        result = await t.patch(ref, _request(base, new))
    except Unsupported:
        assert type(t).__name__ in ("LocalTransport", "RecordingTransport")
        return
    assert result.applied, result.why
    assert result.bytes_sent < 100_000  # the insertion, compressed, and a few ops
    assert await _digest(t, ref, "/app/bin/api") == hashlib.sha1(new).hexdigest()
    refused = await t.patch(ref, _request(base, new + b"!"))  # the container holds `new`, not `base`
    assert not refused.applied and "not the base" in refused.why
    assert await _digest(t, ref, "/app/bin/api") == hashlib.sha1(new).hexdigest()
    per_exec = _per_exec(subject)
    assert per_exec is not None
    try:
        [ref2] = [r for r in await per_exec.containers() if r.id == ref.id]
        newer = new[:100] + b"per-exec" + new[100:]
        done = await per_exec.patch(ref2, _request(new, newer))
        assert done.applied and per_exec.mode(ref2).startswith("per-exec"), done.why
        assert await _digest(t, ref, "/app/bin/api") == hashlib.sha1(newer).hexdigest()
        assert not (await per_exec.patch(ref2, _request(new, newer))).applied  # base is now `newer`
        text = {"bin/notes.txt": b"compressible " * 40_000}
        for via, r in ((t, ref), (per_exec, ref2)):  # a gzip-compressed batch, session and per-exec
            done_apply = await via.apply(r, ApplyRequest("/app", [], ["bin/notes.txt"], iter([_tar(text)]), gzip=1))
            assert done_apply.bytes_sent < 100_000
            assert await _digest(t, ref, "/app/bin/notes.txt") == hashlib.sha1(text["bin/notes.txt"]).hexdigest()
            text = {"bin/notes.txt": text["bin/notes.txt"] + b"more"}
    finally:
        await per_exec.close()
    listing = await t.manifest(ref, ["/app/bin"])
    assert sorted(listing) == ["/app/bin", "/app/bin/api", "/app/bin/notes.txt"]  # nothing left beside the file


@pytest.mark.parametrize("protocol", ["v5", "v4"])
async def test_replicas_get_deltas_through_the_engine(cluster, tmp_path, protocol: str) -> None:  # noqa: ANN001
    """Kubernetes (the fixture), two replicas, through the engine: a changed large file reaches
    both as a block delta; a replica whose copy was changed behind syncd's back gets it whole.
    Over both exec protocols (v4 cannot close stdin: the patch script ends on its `E` op)."""
    from engine_harness import running, settle
    from test_delta_faults import edited, pushes
    from test_kube import assert_pods_equal, kube_config

    if protocol == "v4":
        cluster.only_v4()
    for pod in ("web-0", "web-1"):
        cluster.create_pod(pod, {"app": "web"})
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(elf_like(3 << 20))
    cfg = kube_config(tmp_path, extra='delta = "always"\ncompress = "always"')
    async with running(cfg) as engine:
        await settle(engine, src)
        large = engine.pusher.large
        assert large is not None
        digest = hashlib.sha1(big.read_bytes()).hexdigest()
        await wait_until(lambda: large.cache.has(digest), what="the base to be kept")
        n = len(engine.trace.records)
        big.write_bytes(edited(big.read_bytes(), 1_000_000, b"CONST=2"))
        await settle(engine, src)
        methods = sorted(d.get("method", "") for d in pushes(engine, n) if d.get("files"))
        assert methods.count("delta") == 2, pushes(engine, n)
        [web0] = [w for w in engine.targets["web"].workers.values() if w.ref.name == "web-0"]
        await engine.targets["web"].transport.run(web0.ref, ["sh", "-c", "printf X >> /app/src/big.bin"])
        await wait_until(lambda: large.cache.has(hashlib.sha1(big.read_bytes()).hexdigest()), what="the new base")
        n = len(engine.trace.records)
        big.write_bytes(edited(big.read_bytes(), 2_000_000, b"CONST=3"))
        await settle(engine, src)
        refused = sum(d.get("delta", {}).get("refused", 0) for d in pushes(engine, n))
        assert refused == 1, pushes(engine, n)
    assert_pods_equal(cluster, src, ["web-0", "web-1"])

"""Is a change live? The two checks `syncd smoke` makes after an edit, run by the engine that
synced it (smoke's own, or the running daemon's, asked through the control API):

- `verify`: every file of the service changed since a moment holds the local content in every
  container of its target (sha1 computed by the container itself), and paths removed locally
  are gone there;
- `probe`: the service's `ready` probe passes (an HTTP GET from here, or a command in every
  container), `{marker}` in its `expect` standing for the smoke edit's current marker.
"""

from __future__ import annotations

import hashlib
import urllib.request
from typing import TYPE_CHECKING

import anyio

from syncd.model import Kind
from syncd.reconcile import desired_state
from syncd.steps import argv_of
from syncd.transports.base import ContainerRef, Transport

if TYPE_CHECKING:
    from syncd.engine import Engine


async def verify(engine: Engine, service: str, since: float, gone: list[str] | None = None) -> str | None:
    """None when the service's files changed since `since` (and the local paths `gone`) are as
    they are here in every container; else what differs, in words."""
    svc = engine.cfg.service(service)
    target = engine.targets[svc.target]
    errors: list[tuple[str, str]] = []
    desired = await anyio.to_thread.run_sync(desired_state, target, {service}, engine.hashes, errors)
    check: dict[str, str | None] = {}
    for dest, lf in desired.items():
        if lf is not None and lf.entry.kind is Kind.FILE and max(lf.mtime, lf.ctime) >= since - 1:
            check[dest] = lf.entry.digest
    runtime = next(s for s in engine.services if s.cfg.name == service)
    for path in gone or []:
        mapping = next((m for m in runtime.mappings if m.contains(path)), None)
        if mapping is not None:
            check[mapping.dest_of(path)] = None  # must be absent
    if not check:
        return None
    if not target.workers:
        return f"target {svc.target} has no running container"
    for worker in list(target.workers.values()):
        found = await hashes(target.transport, worker.ref, list(check))
        for dest, digest in check.items():
            if found.get(dest, "missing") != digest:
                return f"{worker.ref.label}:{dest} is {found.get(dest, 'unreadable')}, local {digest or 'absent'}"
    return None


async def hashes(transport: Transport, ref: ContainerRef, dests: list[str]) -> dict[str, str | None]:
    """sha1 of each container path (None: absent), read by the container itself; a local
    target's "container" is a directory, read directly."""
    host_path = getattr(transport, "host_path", None)
    if host_path is not None:
        out: dict[str, str | None] = {}
        for dest in dests:
            p = host_path(dest)
            out[dest] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
        return out
    script = 'for p; do if [ -e "$p" ]; then sha1sum "$p"; else echo "- $p"; fi; done'
    res = await transport.run(ref, ["sh", "-c", script, "smoke", *dests])
    found: dict[str, str | None] = {}
    for line in res.output.splitlines():
        digest, _, path = line.partition("  ") if "  " in line else line.partition(" ")
        found[path.strip()] = None if digest == "-" else digest.lstrip("\\")
    return found


def expected(expect: str, marker: str | None) -> str:
    """A probe's `expect` with `{marker}` filled in."""
    return expect.replace("{marker}", marker) if marker is not None else expect


async def probe_url(url: str, expect: str) -> tuple[bool, str]:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode("utf-8", "replace")

    try:
        body = await anyio.to_thread.run_sync(get)
    except OSError as e:
        return False, str(e)
    return expect in body, body


async def probe(engine: Engine, service: str, marker: str | None = None) -> tuple[bool, str]:
    """(passed, the answer) of the service's ready probe; (True, "") when it has none."""
    svc = engine.cfg.service(service)
    ready = svc.ready
    if ready is None:
        return True, ""
    expect = expected(ready.expect, marker)
    if ready.url is not None:
        return await probe_url(ready.url, expect)
    target = engine.targets[svc.target]
    if not target.workers:
        return False, "no running container"
    outputs = []
    for worker in list(target.workers.values()):
        res = await target.transport.run(worker.ref, argv_of(ready.cmd or ""))
        outputs.append(res.output)
        if res.exit != 0 or expect not in res.output:
            return False, res.output
    return True, "\n".join(outputs)

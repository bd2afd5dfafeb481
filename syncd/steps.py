"""Commands syncd runs around a push: local builds before it, container steps after it.

A local command's output is streamed line by line to the log under the step's name (a
developer watching `syncd run` sees cargo's progress as it happens) and kept for the
trace: the tail, and on failure the compiler's first error with its location.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from syncd.core.steps import first_error

log = structlog.get_logger("syncd.steps")

TAIL_LINES = 20

Command = str | list[str]


def argv_of(cmd: Command) -> list[str]:
    """A string runs with `sh -c` (pipes, &&, globs); a list is argv as given."""
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


@dataclass
class StepResult:
    name: str
    ok: bool
    exit: int | None  # None: could not start (the reason is in `output`)
    start: float
    end: float
    output: str = ""  # the last lines
    error: list[str] = field(default_factory=list)  # the first error block, on failure
    where: str = "local"

    @property
    def ms(self) -> float:
        return round((self.end - self.start) * 1000, 1)

    def detail(self) -> dict:
        d: dict = {"exit": self.exit, "where": self.where}
        if not self.ok:
            d["error"] = "\n".join(self.error)
        if self.output:
            d["output"] = self.output
        return d

    def summary(self) -> str:
        """One line for errors lists: what failed, how, and the first error line(s)."""
        how = f"exit {self.exit}" if self.exit is not None else "did not start"
        first = "; ".join(line.strip() for line in self.error[:3] if line.strip())
        return f"{self.name} failed ({how}){': ' + first if first else ''}"


async def run_local(
    name: str,
    cmd: Command,
    cwd: Path,
    env: dict[str, str] | None = None,
    kind: str = "build",
    on_line: Callable[[str], None] | None = None,
) -> StepResult:
    """Run a local command, streaming its merged stdout/stderr to the log line by line."""
    argv = argv_of(cmd)
    start = time.time()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    head: list[str] = []  # enough of the start to find the first error in
    try:
        process = await anyio.open_process(
            argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    except OSError as e:
        msg = f"cannot run {argv[0]!r} in {cwd}: {e.strerror or e}"
        log.error(f"{kind} could not start", step=name, error=msg, hint=f"is {argv[0]!r} installed and on PATH?")
        return StepResult(name, False, None, start, time.time(), msg, [msg])
    try:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                _keep(raw, head, tail, name, kind, on_line)
        if buffer:
            _keep(buffer, head, tail, name, kind, on_line)
        code = await process.wait()
    finally:
        if process.returncode is None:  # cancelled (daemon stopping): don't leave it running
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
    end = time.time()
    ok = code == 0
    output = "\n".join(tail)
    error = [] if ok else (first_error("\n".join(head)) or [x for x in tail if x.strip()][-8:])
    return StepResult(name, ok, code, start, end, output, error)


def _keep(raw: bytes, head: list[str], tail: deque[str], name: str, kind: str,
          on_line: Callable[[str], None] | None) -> None:
    line = raw.decode("utf-8", "replace").rstrip("\r")
    if len(head) < 2000:
        head.append(line)
    tail.append(line)
    if on_line is not None:
        on_line(line)
    else:
        log.info(kind, step=name, line=line)


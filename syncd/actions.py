"""Manual actions (`[actions.NAME]`): one-command development operations.

An action runs its `deps` first (each once, in dependency order), then its own `cmd`:
locally in the config's directory, or — with `target` — in every running container of that
target, in parallel. The first failure stops the chain. Every action is a span in the trace
(`action:<name>`, one record per trigger), so `syncd trace` shows how long tests or a
migration took next to the syncs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog

from syncd.config import Action, Config
from syncd.core.steps import action_order
from syncd.steps import StepResult, argv_of, run_local
from syncd.trace import BatchTrace, TraceWriter
from syncd.transports.base import ContainerRef, Transport, TransportError

log = structlog.get_logger("syncd.action")

Line = Callable[[str, str], None]  # on_line(action, line): live output of local actions


class UnknownAction(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return f"no action named '{self.name}' (known: {', '.join(self.known) or 'none defined'})"


class NeedsConfirmation(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names

    def __str__(self) -> str:
        which = ", ".join(self.names)
        return f"{which} {'is' if len(self.names) == 1 else 'are'} destructive and asks for confirmation: rerun with --yes"


@dataclass
class ActionReport:
    name: str
    order: list[str]
    results: list[StepResult] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return len(self.results) > 0 and all(r.ok for r in self.results) and \
            {r.name for r in self.results} >= set(self.order)

    @property
    def exit(self) -> int:
        return next((r.exit if r.exit else 1 for r in self.results if not r.ok), 0)

    def as_dict(self) -> dict:
        return {
            "action": self.name,
            "ok": self.ok,
            "order": self.order,
            "results": [
                {"action": r.name, "where": r.where, "ok": r.ok, "exit": r.exit, "ms": r.ms,
                 "output": r.output, "error": r.error}
                for r in self.results
            ],
        }


class ActionRunner:
    def __init__(self, cfg: Config, transports: dict[str, Transport], trace: TraceWriter | None = None) -> None:
        self.cfg = cfg
        self.transports = transports
        self.trace = trace or TraceWriter(None)
        self.on_record: Callable[[dict], None] | None = None  # the control API's live feed

    def plan(self, name: str, confirmed: bool = False) -> list[str]:
        """The actions `name` runs, dependencies first. Raises UnknownAction / NeedsConfirmation."""
        actions = self.cfg.actions
        if name not in actions:
            raise UnknownAction(name, sorted(actions))
        order = action_order({n: a.deps for n, a in actions.items()}, name)
        unconfirmed = [n for n in order if actions[n].confirm]
        if unconfirmed and not confirmed:
            raise NeedsConfirmation(unconfirmed)
        return order

    async def trigger(self, name: str, confirmed: bool = False, on_line: Line | None = None) -> ActionReport:
        order = self.plan(name, confirmed)
        report = ActionReport(name, order)
        trace = BatchTrace(0, time.time())
        for step in order:
            action = self.cfg.actions[step]
            if action.cmd is None:  # a group: its deps ran
                now = time.time()
                report.results.append(StepResult(step, True, 0, now, now, "", where="(group)"))
                continue
            log.info("action started", action=step, where=action.target or "local")
            results = await self._one(step, action, on_line)
            report.results += results
            for r in results:
                trace.add(f"action:{r.name}", r.start, r.end, ok=r.ok, detail=r.detail())
            if not all(r.ok for r in results):
                bad = next(r for r in results if not r.ok)
                trace.errors.append(f"action {bad.summary()} in {bad.where}")
                log.error("action failed", action=step, where=bad.where, exit=bad.exit, error="\n".join(bad.error))
                break
            log.info("action done", action=step, ms=round(sum(r.ms for r in results), 1))
        record = trace.finish(time.time())
        record["batch"] = None
        record["action"] = name
        report.record = record
        self.trace.write(record)
        if self.on_record is not None:
            self.on_record(record)
        return report

    async def _one(self, name: str, action: Action, on_line: Line | None) -> list[StepResult]:
        if action.target is None:
            cwd = self.cfg.resolve(action.cwd) if action.cwd else self.cfg.root
            line = (lambda text: on_line(name, text)) if on_line else None
            return [await run_local(name, action.cmd or "", cwd, action.env, kind="action", on_line=line)]
        transport = self.transports[action.target]
        start = time.time()
        try:
            refs = await transport.containers()
        except TransportError as e:
            return [StepResult(name, False, None, start, time.time(), str(e), [str(e)], where=action.target)]
        if not refs:
            why = f"target '{action.target}' has no running container"
            return [StepResult(name, False, None, start, time.time(), why, [why], where=action.target)]
        results: list[StepResult] = []
        argv = argv_of(action.cmd or "")
        if action.env:  # containers get the env through `env`, which every image with sh has
            argv = ["env", *(f"{k}={v}" for k, v in action.env.items()), *argv]

        async def in_container(ref: ContainerRef) -> None:
            t0 = time.time()
            try:
                res = await transport.run(ref, argv)
            except TransportError as e:
                results.append(StepResult(name, False, None, t0, time.time(), str(e), [str(e)], where=ref.label))
                return
            lines = res.output.rstrip().splitlines()
            if on_line:
                for text in lines:
                    on_line(f"{name}@{ref.name}", text)
            results.append(StepResult(name, res.exit == 0, res.exit, t0, time.time(), "\n".join(lines[-20:]),
                                      [] if res.exit == 0 else lines[-8:], where=ref.label))

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(in_container, ref)
        return sorted(results, key=lambda r: r.where)

"""A service's local builds: they run before its changes go out, one at a time.

While a build runs (or after one failed) the service's changes are *held* here, not sent:
the container keeps the last good state until a build succeeds, and then receives
everything held plus whatever the build wrote (outputs listed in `sync`). Changes that
arrive during a build ask for one follow-up build, however many there are; a build that fails
while its sources change again is not reported (the follow-up decides). Each service has
its own gate, so builds of different services run in parallel. (A change that sets off an
idle gate's build is cut from the coalescer at once: Engine._sets_off_a_build.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio
import structlog

from syncd.config import BuildStep, Service
from syncd.core.manifest import merge_pending
from syncd.core.steps import step_name
from syncd.jobs import BatchJob
from syncd.model import Desired
from syncd.steps import StepResult, run_local

log = structlog.get_logger("syncd.build")

# What arrived while a good build's outputs were being found (see BuildGate.late).
Late = Callable[[], tuple[Desired, list[BatchJob]]]
# release(service, desired, jobs, late): send what a good build let through (the engine's
# dispatch: it rescans the service's tree for the outputs, then takes `late()` along)
Release = Callable[[str, Desired, list[BatchJob], Late], Awaitable[None]]


def build_names(svc: Service) -> list[str]:
    return [step_name(svc.name, b.name, i, len(svc.build)) for i, b in enumerate(svc.build)]


class BuildGate:
    def __init__(self, svc: Service, root: Path, release: Release) -> None:
        self.svc = svc
        self.root = root
        self._release = release
        self.names = build_names(svc)
        self.held: Desired = {}
        self.jobs: list[BatchJob] = []
        self.wanted: set[int] = set()
        self.running: str = ""  # the step running now
        self.failed: StepResult | None = None  # the last build failed: hold until one succeeds
        self.builds_run = 0
        self.releasing = False  # a good build's outputs are being found and sent
        self._late_jobs: list[BatchJob] = []
        self._wake = anyio.Event()

    @property
    def busy(self) -> bool:
        """Must the service's changes wait here? (A build runs or is due, the last failed, or a
        good build's outputs are being found: their own events, arriving then, join that batch.)"""
        return bool(self.running or self.wanted or self.failed or self.releasing)

    @property
    def state(self) -> str:
        if self.running:
            return f"building ({self.running})"
        if self.wanted:
            return "build queued"
        if self.failed:
            return f"last build failed: {self.failed.summary()}"
        return "idle"

    def offer(self, desired: Desired, steps: Iterable[int], job: BatchJob | None) -> None:
        """Hold a batch's share for this service; `steps` are the builds it sets off."""
        merge_pending(self.held, desired)
        self.wanted.update(steps)
        if job is not None:
            if self.wanted or self.running or self.releasing:
                job.expect()
                self.jobs.append(job)
            elif self.failed is not None:
                job.trace.errors.append(
                    f"service '{self.svc.name}': held until a build succeeds ({self.failed.summary()})")
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self.wanted:
                await self._round()

    async def build(self, steps: list[int]) -> list[StepResult]:
        """Run `steps` in config order; stop at the first failure."""
        results: list[StepResult] = []
        for i in sorted(steps):
            step: BuildStep = self.svc.build[i]
            self.running = self.names[i]
            try:
                cwd = self.root / step.cwd if step.cwd else self.root
                log.info("build started", service=self.svc.name, step=self.names[i])
                result = await run_local(self.names[i], step.cmd, cwd, step.env, kind="build")
            finally:
                self.running = ""
            self.builds_run += 1
            results.append(result)
            if result.ok:
                log.info("build done", service=self.svc.name, step=result.name, ms=result.ms)
            else:
                log.error("build failed", service=self.svc.name, step=result.name, exit=result.exit,
                          error="\n".join(result.error), hint="fix the error; the next change builds again")
                break
        return results

    async def _round(self) -> None:
        steps, self.wanted = sorted(self.wanted), set()
        jobs, self.jobs = self.jobs, []
        results = await self.build(steps)
        jobs, self.jobs = jobs + self.jobs, []  # batches held while it ran share its outcome
        for r in results:
            for job in jobs:
                job.trace.add(f"build:{r.name}", r.start, r.end, ok=r.ok, detail=r.detail())
        bad = next((r for r in results if not r.ok), None)
        if bad is not None and self.wanted:
            # Its sources changed while it ran (e.g. the rest of a multi-file save): not worth
            # reporting, the follow-up build decides and carries these batches.
            log.info("build failed, but its sources changed meanwhile: building again",
                     service=self.svc.name, step=bad.name)
            self.jobs = jobs
            return
        if bad is not None:
            self.failed = bad
            for job in jobs:
                job.trace.errors.append(f"service '{self.svc.name}': build {bad.summary()}; container left as it was")
                job.finish_one()
            return
        if self.wanted:
            # Changed again while building: this output is already stale. The follow-up
            # build carries these batches too.
            self.jobs = jobs
            return
        self.failed = None
        held, self.held = self.held, {}
        self.releasing = True
        try:
            await self._release(self.svc.name, held, jobs, self.late)
        finally:
            self.releasing = False
        late_jobs, self._late_jobs = self._late_jobs, []
        for job in jobs + late_jobs:
            job.finish_one()  # the gate's own hold; the containers hold theirs

    def late(self) -> tuple[Desired, list[BatchJob]]:
        """What was held while the release looked for the build's outputs — mostly those
        outputs' own events, which would otherwise race the build's batch to the container and
        carry its push and restart — to be sent with it. Left here when it asks for a build."""
        if self.wanted:
            return {}, []
        late, self.held = self.held, {}
        jobs, self.jobs = self.jobs, []
        self._late_jobs.extend(jobs)
        return late, jobs

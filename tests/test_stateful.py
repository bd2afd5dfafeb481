"""Randomized *stateful* convergence: hypothesis interleaves file operations on the local tree
(create, edit, same-bytes rewrite, delete, rename, mkdir, rm -r, chmod +x, symlinks incl.
dangling ones, file <-> directory swaps; names with spaces, unicode, a leading dash, `$(x)`,
a newline) with daemon events (batch cut, session drop, container restart, Docker engine
restart, pod replacement, API-server outage, daemon stop/start) and, at every quiescence, compares the whole container
tree with the local tree (tests/trees.py: content hash, exec bit, symlink target, directories).

Each hypothesis example is one sequence: a fresh local tree and a fresh engine (running in a
background thread with its own event loop, driven through an anyio blocking portal) against
the one container / pod of the test, which the engine's startup reconcile wipes of the previous
sequence's leftovers (checked too: the first quiescence is right after the start).

Seeded and reproducible. Environment overrides:
    SYNCD_STATEFUL_EXAMPLES  sequences per test (default local 25, docker 15, fixture 8; soak 40)
    SYNCD_STATEFUL_STEPS     steps per sequence (default local 30, docker 25, fixture 20; soak 60)
    SYNCD_STATEFUL_SEED      the seed (default 20251126; soak: random, printed in the outcome)
    SYNCD_STATEFUL_SHRINK=0  report the first failing sequence without shrinking it
    SYNCD_STATEFUL_ENGINE_RESTARTS  Docker engine restarts per docker test run (default 2)
A failure prints hypothesis' minimal sequence (`state.create(...)` steps) and, in the
assertion message, the operations it resolved to on disk and the tree differences.
The soak variants (`pytest -m soak`, scripts/soak.sh) run the same machine longer.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from dockerd import local_dockerd, restart_dockerd
from engine_harness import running, settle, wait_until, write_config
from trees import Tree, container_tree, diff_trees, local_tree

CONFIG = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.t]
{target}
[[services]]
name = "app"
target = "t"
sync = [{{ src = "src", dest = "/app/src" }}]
"""

NAMES = ["a", "b c", "ü名", "-rf", "$(x)", "new\nline"]
# relative (existing or not), into a directory, escaping the mapping, absolute, dangling, loops
LINK_TARGETS = ["a", "b c/ü名", "../a", "nowhere/$(x)", "/etc/hostname", ".", ".."]
SIZES = [0, 1, 100, 5000, 70000]
MARKER = ".settle-marker"  # engine_harness.settle's marker: never touched by the rules
OUTAGE_SECONDS = 2.0  # an API-server outage lasts at least this long
DEEP = [f"{a}/{b}" for a in NAMES for b in NAMES]
PATH = st.one_of(st.sampled_from(NAMES), st.sampled_from(DEEP))  # half top-level, half one level down


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


# (sequences, steps) per target: about 15 s, 30 s and 60 s on a 2-core machine
BUDGET = {"local": (25, 30), "docker": (15, 25), "fixture": (8, 20)}
SOAK_BUDGET = (40, 60)
# Docker engine restarts per test run (~6 s each: dockerd stops its containers, then starts)
ENGINE_RESTARTS = _int_env("SYNCD_STATEFUL_ENGINE_RESTARTS", 2)


def budget(kind: str, soak: bool = False) -> tuple[int, int]:
    examples, steps = SOAK_BUDGET if soak else BUDGET[kind]
    return _int_env("SYNCD_STATEFUL_EXAMPLES", examples), _int_env("SYNCD_STATEFUL_STEPS", steps)


SEED = _int_env("SYNCD_STATEFUL_SEED", 20251126)
SHRINK = os.environ.get("SYNCD_STATEFUL_SHRINK", "1") != "0"


# --- what a test runs against -------------------------------------------------------------


@dataclass
class Stats:
    """Counted across every sequence of one test (shrinking included)."""

    examples: int = 0
    ops: int = 0
    events: int = 0
    noops: int = 0
    quiesces: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)

    def summary(self) -> str:
        events = ", ".join(f"{n} {k}" for k, n in sorted(self.rules.items()) if k.startswith("event:"))
        return (f"{self.examples} sequences, {self.ops} operations + {self.events} daemon events "
                f"({events.replace('event:', '') or 'none'}); {self.quiesces} quiescences")


@dataclass
class Env:
    kind: str  # local | docker | fixture
    src: Path
    cfg: object  # syncd.config.Config
    observe: Callable[[], Tree]  # the container tree, read independently of syncd
    stats: Stats
    sessions: bool = False  # the transport has a session pool (docker, kubernetes)
    restart: Callable[[], None] | None = None  # the container restarts
    replace: Callable[[], None] | None = None  # the pod is deleted and created again
    outage: tuple[Callable[[], None], Callable[[], None]] | None = None  # API server down(), up()
    engine_restart: Callable[[], None] | None = None  # the Docker engine stops and starts again
    restarts_done: int = 0  # engine restarts so far in this test run
    wait_noticed: bool = False  # after restart/replace: wait until the daemon follows the new container
    settle_timeout: float = 30.0


def _step(event: bool) -> Callable[[Callable[..., str | None]], Callable[..., None]]:
    """A rule's body returns what it did (None: it did not apply to the tree): logged for the
    failure message and counted. `clean` stays False if it raised (teardown then only cleans up)."""
    def wrap(fn: Callable[..., str | None]) -> Callable[..., None]:
        @wraps(fn)
        def step(self: StatefulSync, **kwargs: object) -> None:
            self.clean = False
            did = fn(self, **kwargs)
            self._count(fn.__name__, did, event)
            self.clean = True
        return step
    return wrap


_op, _event = _step(event=False), _step(event=True)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def _kind(p: Path) -> str | None:
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return None
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"


def _notes(notes: list[str]) -> str:
    return f" ({'; '.join(notes)})" if notes else ""


class StatefulSync(RuleBasedStateMachine):
    """Subclassed per test with `env` set (see _run)."""

    env: Env

    def __init__(self) -> None:
        super().__init__()
        env = self.env
        env.stats.examples += 1
        self.log: list[str] = []  # what the steps did on disk, for the failure message
        self.writes = 0
        self.clean = True  # no step raised: teardown compares the trees once more
        self.down_since: float | None = None
        self.engine = None
        self._run_cm = None
        if env.src.exists() or env.src.is_symlink():
            _remove(env.src)
        env.src.mkdir()
        (env.src / "seed.txt").write_text("seed\n")
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        try:
            self._daemon_up()
            self._check("start (the previous sequence's leftovers reconciled away)")
        except BaseException:
            self._shutdown(quiet=True)
            raise

    # --- the tree -----------------------------------------------------------------------

    @property
    def src(self) -> Path:
        return self.env.src

    def _entries(self, *kinds: str) -> list[str]:
        """Relative paths of the current entries of these kinds ("file", "link", "dir")."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self.src):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(self.src).as_posix()
                if rel == MARKER:
                    continue
                if _kind(full) in kinds:
                    out.append(rel)
        return sorted(out)

    def _near(self, near: str, *kinds: str) -> str:
        """The entry of these kinds at or after `near` in sorted order (wrapping around)."""
        entries = self._entries(*kinds)
        return next((e for e in entries if e >= near), entries[0])

    def _parents(self, rel: str) -> list[str]:
        """mkdir -p the parents of `rel`; a file or symlink in the way becomes a directory."""
        notes = []
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            p = self.src.joinpath(*parts[: i + 1])
            kind = _kind(p)
            if kind == "dir":
                continue
            if kind is not None:
                _remove(p)
                notes.append(f"the {kind} {'/'.join(parts[: i + 1])!r} made a directory")
            p.mkdir()
        return notes

    def _content(self, size: int) -> bytes:
        self.writes += 1
        return random.Random(self.writes).randbytes(size)

    def _count(self, rule_name: str, did: str | None, event: bool) -> None:
        stats = self.env.stats
        if did is None:
            stats.noops += 1
            return
        self.log.append(did)
        if event:
            stats.events += 1
            stats.rules[f"event:{rule_name}"] += 1
        else:
            stats.ops += 1
            stats.rules[rule_name] += 1

    # --- file operations ----------------------------------------------------------------
    # `path`: where to create (missing parents are made; a file or symlink in the way of a
    # parent becomes a directory). `near`: the existing entry of the right kind at or after
    # this path in sorted order (wrapping around), so a step keeps meaning the same entry when
    # hypothesis deletes unrelated steps while shrinking.

    @rule(path=PATH, size=st.sampled_from(SIZES))
    @_op
    def create(self, path: str, size: int) -> str | None:
        notes = self._parents(path)
        p = self.src / path
        was = _kind(p)
        if was:
            _remove(p)
            notes.append(f"over a {was}")
        p.write_bytes(self._content(size))
        return f"write {path!r} ({size} B)" + _notes(notes)

    @precondition(lambda self: self._entries("file"))
    @rule(near=PATH)
    @_op
    def edit(self, near: str) -> str | None:
        rel = self._near(near, "file")
        with open(self.src / rel, "ab") as f:
            f.write(b"edit %d\n" % self.writes)
        self.writes += 1
        return f"append to {rel!r}"

    @precondition(lambda self: self._entries("file"))
    @rule(near=PATH)
    @_op
    def rewrite_same(self, near: str) -> str | None:
        rel = self._near(near, "file")
        p = self.src / rel
        p.write_bytes(p.read_bytes())
        return f"rewrite {rel!r} with the same bytes"

    @precondition(lambda self: self._entries("file", "link"))
    @rule(near=PATH)
    @_op
    def delete(self, near: str) -> str | None:
        rel = self._near(near, "file", "link")
        (self.src / rel).unlink()
        return f"rm {rel!r}"

    @precondition(lambda self: self._entries("file", "link", "dir"))
    @rule(near=PATH, to=PATH)
    @_op
    def rename(self, near: str, to: str) -> str | None:
        rel = self._near(near, "file", "link", "dir")
        if to == rel or to.startswith(rel + "/") or rel.startswith(to + "/"):
            return None  # onto itself, into itself, or onto one of its own parents
        notes = self._parents(to)
        dest = self.src / to
        was = _kind(dest)
        if was:
            _remove(dest)
            notes.append(f"replacing a {was}")
        os.rename(self.src / rel, dest)
        return f"mv {rel!r} {to!r}" + _notes(notes)

    @rule(path=PATH)
    @_op
    def mkdir(self, path: str) -> str | None:
        notes = self._parents(path)
        p = self.src / path
        was = _kind(p)
        if was:
            _remove(p)
            notes.append(f"rm -rf of a {was} first")
        p.mkdir()
        return f"mkdir {path!r}" + _notes(notes)

    @precondition(lambda self: self._entries("dir"))
    @rule(near=PATH)
    @_op
    def rmtree(self, near: str) -> str | None:
        rel = self._near(near, "dir")
        shutil.rmtree(self.src / rel)
        return f"rm -r {rel!r}"

    @precondition(lambda self: self._entries("file"))
    @rule(near=PATH)
    @_op
    def chmod_x(self, near: str) -> str | None:
        rel = self._near(near, "file")
        p = self.src / rel
        mode = p.stat().st_mode ^ 0o111
        p.chmod(mode)
        return f"chmod {'+' if mode & 0o100 else '-'}x {rel!r}"

    @rule(path=PATH, points_to=st.sampled_from(LINK_TARGETS))
    @_op
    def symlink(self, path: str, points_to: str) -> str | None:
        notes = self._parents(path)
        p = self.src / path
        was = _kind(p)
        if was:
            _remove(p)
            notes.append(f"over a {was}")
        p.symlink_to(points_to)
        if not p.exists():
            notes.append("dangling")
        elif p.is_dir():
            notes.append("to a directory")
        return f"ln -s {points_to!r} {path!r}" + _notes(notes)

    @precondition(lambda self: self._entries("file", "link", "dir"))
    @rule(near=PATH)
    @_op
    def swap_kind(self, near: str) -> str | None:
        rel = self._near(near, "file", "link", "dir")
        p = self.src / rel
        was = _kind(p)
        _remove(p)
        if was == "dir":
            p.write_bytes(self._content(100))
            return f"dir {rel!r} -> file"
        p.mkdir()
        (p / "inside").write_bytes(self._content(10))
        return f"{was} {rel!r} -> dir with 'inside'"

    # --- daemon events ------------------------------------------------------------------

    def _running(self) -> bool:
        return self.engine is not None

    def _api_up(self) -> bool:
        return self.down_since is None

    @precondition(lambda self: self._running())
    @rule()
    @_event
    def cut(self) -> str | None:
        """Let the coalescer cut the batch now (the next steps land in a new batch)."""
        engine = self.engine

        async def cut_now() -> None:
            await anyio.sleep(0.03)  # the watcher's own step (5 ms) and a margin
            await wait_until(lambda: engine.coalescer.pending == 0, 10, "the coalescer to cut the batch")

        self.portal.call(cut_now)
        return "batch cut"

    @precondition(lambda self: self._running() and self.env.sessions)
    @rule()
    @_event
    def drop_session(self) -> str | None:
        engine = self.engine
        # Read the workers in the engine's thread; drop from this one (the pool has its lock),
        # at whatever point the engine has reached.
        refs = self.portal.call(lambda: [(t.transport, w.ref) for t in engine.targets.values()
                                         for w in t.workers.values()])
        for transport, ref in refs:
            transport.drop_session(ref, "test")  # (the session pool has its own lock)
        return f"session dropped ({len(refs)} containers)" if refs else None

    def _generations(self) -> set[tuple[str, str]]:
        engine = self.engine
        return self.portal.call(lambda: {(w.ref.id, w.ref.generation) for t in engine.targets.values()
                                         for w in t.workers.values()})

    def _disrupt(self, action: Callable[[], None], what: str) -> None:
        before = self._generations() if self._running() else set()
        action()
        if self._running() and self.env.wait_noticed:
            # The pod watch tells the daemon at once; wait for it, so a quiescence right after
            # is not judged against the old container's (now lost) state.
            engine = self.engine

            def noticed() -> bool:
                now = {(w.ref.id, w.ref.generation) for t in engine.targets.values() for w in t.workers.values()}
                return bool(now) and not (now & before)

            self.portal.call(wait_until, noticed, 60, f"the daemon to follow the {what}")

    @precondition(lambda self: self.env.restart is not None and self._api_up())
    @rule()
    @_event
    def restart_container(self) -> str | None:
        assert self.env.restart is not None
        self._disrupt(self.env.restart, "restarted container")
        return "container restarted" + ("" if self._running() else " (daemon stopped)")

    @precondition(lambda self: self.env.replace is not None and self._api_up())
    @rule()
    @_event
    def replace_pod(self) -> str | None:
        assert self.env.replace is not None
        self._disrupt(self.env.replace, "new pod")
        return "pod replaced" + ("" if self._running() else " (daemon stopped)")

    @precondition(lambda self: self.env.engine_restart is not None)
    @rule()
    @_event
    def engine_restart(self) -> str | None:
        """dockerd stopped and started again: the container is stopped with it and brought back
        by its restart policy. A few seconds each, so at most ENGINE_RESTARTS per test run; past
        that the step is a no-op (not a precondition: hypothesis needs the same rules on replay)."""
        assert self.env.engine_restart is not None
        if self.env.restarts_done >= ENGINE_RESTARTS:
            return None
        self.env.restarts_done += 1
        self.env.engine_restart()
        return "Docker engine restarted" + ("" if self._running() else " (daemon stopped)")

    @precondition(lambda self: self.env.outage is not None and self._api_up())
    @rule()
    @_event
    def api_down(self) -> str | None:
        assert self.env.outage is not None
        self.env.outage[0]()
        self.down_since = time.monotonic()
        return "API server down"

    @precondition(lambda self: not self._api_up())
    @rule()
    @_event
    def api_up(self) -> str | None:
        return self._end_outage()

    def _end_outage(self) -> str:
        assert self.env.outage is not None and self.down_since is not None
        left = OUTAGE_SECONDS - (time.monotonic() - self.down_since)
        if left > 0:
            time.sleep(left)
        self.env.outage[1]()
        down_for = time.monotonic() - self.down_since
        self.down_since = None
        return f"API server up again after {down_for:.1f} s"

    @precondition(lambda self: self._running())
    @rule()
    @_event
    def daemon_stop(self) -> str | None:
        self._daemon_down()
        return "daemon stopped"

    @precondition(lambda self: not self._running())
    @rule()
    @_event
    def daemon_start(self) -> str | None:
        self._daemon_up()
        return "daemon started"

    @rule()
    @_event
    def quiesce(self) -> str | None:
        self._check("quiesce")
        return "quiesce: trees equal"

    # --- engine lifecycle and the check -------------------------------------------------

    def _daemon_up(self) -> None:
        self._run_cm = self.portal.wrap_async_context_manager(running(self.env.cfg))
        self.engine = self._run_cm.__enter__()

    def _daemon_down(self) -> None:
        cm, self._run_cm, self.engine = self._run_cm, None, None
        if cm is not None:
            cm.__exit__(None, None, None)

    def _check(self, when: str) -> None:
        """Quiescence: the API server back, the daemon running, everything written so far
        applied (engine_harness.settle); then the whole trees must be equal."""
        if not self._api_up():
            self.log.append(self._end_outage())
        if not self._running():
            self._daemon_up()
            self.log.append("daemon started")
        try:
            self.portal.call(settle, self.engine, self.src, self.env.settle_timeout)
            problems = diff_trees(local_tree(self.src), self.env.observe())
            stuck = ""
        except AssertionError as e:  # settle timed out: report the differences at that moment
            problems = diff_trees(local_tree(self.src), self.env.observe())
            stuck = f"{e}; "
        if problems or stuck:
            self.env.stats.lost = ([stuck.rstrip("; ")] if stuck else []) + problems
            steps = "\n".join(f"  {i + 1:3}. {s}" for i, s in enumerate(self.log))
            raise AssertionError(f"{self.env.kind}: {stuck}trees differ at {when} ({len(problems)} paths):\n"
                                 + "\n".join(problems[:30]) + f"\nthe sequence so far:\n{steps}")
        self.env.stats.quiesces += 1

    def teardown(self) -> None:
        try:
            if self.clean:  # the final invariant: quiet trees are equal
                self._check("the end of the sequence")
        finally:
            self._shutdown(quiet=not self.clean)

    def _shutdown(self, quiet: bool) -> None:
        try:
            if not self._api_up() and self.env.outage is not None:
                self.env.outage[1]()
                self.down_since = None
            try:
                self._daemon_down()
            except BaseException:
                if not quiet:
                    raise
        finally:
            self._portal_cm.__exit__(None, None, None)


# --- running one test ---------------------------------------------------------------------


def _run(env: Env, reliability, soak: bool = False) -> None:  # noqa: ANN001
    examples, steps = budget(env.kind, soak)
    seed_ = SOAK_SEED if soak else SEED
    machine = type(f"StatefulSync_{env.kind}", (StatefulSync,), {"env": env, "__module__": __name__})
    machine = seed(seed_)(machine)
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    t0 = time.monotonic()
    failed = True
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            phases=phases, print_blob=True, report_multiple_bugs=False, verbosity=Verbosity.normal,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                   HealthCheck.large_base_example]))
        failed = False
    finally:
        stats = env.stats
        if reliability is not None:
            reliability.tried(stats.ops + stats.events)
            lost = stats.lost if failed else []
            reliability.lost = lost[:50] + ([f"(+{len(lost) - 50} more)"] if len(lost) > 50 else [])
            verdict = ("equal trees after every quiescence" if not failed
                       else f"trees differed ({len(stats.lost)} lines; see lost)" if stats.lost else "failed (see the test)")
            shrunk = " (counts include hypothesis' shrinking)" if failed and SHRINK else ""
            reliability.outcome = (f"{examples} sequences x {steps} steps asked: {stats.summary()}{shrunk}; {verdict}; "
                                   f"seed {seed_}, {time.monotonic() - t0:.0f} s")
        line = (f"{env.kind}: {'FAILED' if failed else 'passed'}; {examples} x {steps} steps asked; {stats.summary()}, "
                f"{stats.noops} no-op steps, seed {seed_}, {time.monotonic() - t0:.1f} s; "
                f"per rule: {dict(sorted(stats.rules.items()))}")
        print("\n" + line)
        report = os.environ.get("SYNCD_STATEFUL_REPORT")  # scripts/soak.sh collects the summaries
        if report:
            with open(report, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def _local_env(tmp_path: Path) -> Env:
    (tmp_path / "src").mkdir()
    cfg = write_config(tmp_path, CONFIG.format(target='kind = "local"\npath = "sandbox"'))
    sandbox = tmp_path / "sandbox" / "app" / "src"
    return Env("local", tmp_path / "src", cfg, lambda: local_tree(sandbox), Stats(), settle_timeout=15)  # (deep renames: each re-adds many watches)


def _docker_env(tmp_path: Path, make_container, docker_client) -> Env:  # noqa: ANN001
    # `always`: the engine brings it back after its own restart; SIGKILL: stopped at once
    container = make_container(restart_policy={"Name": "always"}, stop_signal="SIGKILL")
    (tmp_path / "src").mkdir()
    cfg = write_config(tmp_path, CONFIG.format(target=f'kind = "docker"\ncontainer = "{container.name}"'))
    engine = (lambda: restart_dockerd(docker_client)) if local_dockerd() is not None else None
    return Env("docker", tmp_path / "src", cfg, lambda: container_tree(container, "/app/src"), Stats(),
               sessions=True, restart=lambda: container.restart(timeout=1), engine_restart=engine, settle_timeout=30)


def _fixture_env(tmp_path: Path, cluster) -> Env:  # noqa: ANN001
    if cluster.real:
        pytest.skip("pod replacement, container restarts and API outages are driven through the fixture")
    pod = "stateful-0"
    cluster.create_pod(pod, {"app": "stateful"})
    (tmp_path / "src").mkdir()
    cfg = write_config(tmp_path, CONFIG.format(target='kind = "kubernetes"\nnamespace = "dev"\nselector = "app=stateful"'))
    fx = cluster.fx
    outage = (fx.down, fx.up) if hasattr(fx, "down") and hasattr(fx, "up") else None
    return Env("fixture", tmp_path / "src", cfg, lambda: cluster.tree(pod, "/app/src"), Stats(), sessions=True,
               restart=lambda: cluster.restart_container(pod), replace=lambda: cluster.replace_pod(pod),
               outage=outage, wait_noticed=True, settle_timeout=60)


# --- the tests ----------------------------------------------------------------------------

# generation (<= ~1 min) + hypothesis' shrinking (at most 300 s) + the final replay
FAIL_BUDGET = pytest.mark.timeout(900)


@FAIL_BUDGET
@pytest.mark.reliability("randomized file operations + daemon events (local)", kind="fault")
def test_stateful_local(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    _run(_local_env(tmp_path), reliability)


@FAIL_BUDGET
@pytest.mark.docker
@pytest.mark.reliability("randomized file operations + daemon events (docker)", kind="fault")
def test_stateful_docker(tmp_path: Path, make_container, docker_client, reliability) -> None:  # noqa: ANN001
    _run(_docker_env(tmp_path, make_container, docker_client), reliability)


@FAIL_BUDGET
@pytest.mark.docker
@pytest.mark.reliability("randomized file operations + daemon events (fixture)", kind="fault")
def test_stateful_fixture(tmp_path: Path, cluster, reliability) -> None:  # noqa: ANN001
    _run(_fixture_env(tmp_path, cluster), reliability)


# --- soak: the same machine, longer (pytest -m soak; scripts/soak.sh) -----------------------

SOAK_SEED = _int_env("SYNCD_STATEFUL_SEED", random.SystemRandom().randrange(1 << 32))


SOAKED = pytest.mark.reliability("randomized file operations + daemon events, long", kind="soak")


@pytest.mark.soak
@pytest.mark.timeout(_int_env("SYNCD_STATEFUL_TIMEOUT", 6 * 3600))
@pytest.mark.parametrize("kind", [pytest.param("local", marks=SOAKED),
                                  pytest.param("docker", marks=[pytest.mark.docker, SOAKED]),
                                  pytest.param("fixture", marks=[pytest.mark.docker, SOAKED])])
def test_stateful_soak(kind: str, tmp_path: Path, request, reliability) -> None:  # noqa: ANN001
    """scripts/soak.sh runs it; `python scripts/reliability.py --soak` records it in docs/RELIABILITY.md."""
    if kind == "local":
        env = _local_env(tmp_path)
    elif kind == "docker":
        env = _docker_env(tmp_path, request.getfixturevalue("make_container"), request.getfixturevalue("docker_client"))
    else:
        env = _fixture_env(tmp_path, request.getfixturevalue("cluster"))
    _run(env, reliability, soak=True)

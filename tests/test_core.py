"""The pure core, table-driven with explicit time: coalescing, mapping, manifest diff, plan."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest

from syncd.core.coalesce import Coalescer
from syncd.core.manifest import apply_delta, diff, merge_pending, prune_nested, rewritten_dirs, share, unlisted_below
from syncd.core.mapping import ResolvedMapping, UnsafePath, check_within, common_root, most_specific, relative_name
from syncd.core.plan import ServicePlanInput, plan_batch
from syncd.model import Entry, Kind, LocalFile

# --- coalescing -----------------------------------------------------------------------------


def drive(events: list[tuple[float, str]], debounce: float, max_wait: float, until: float) -> list[list[str]]:
    """Feed events at their times, ticking every millisecond; return the batches cut."""
    c = Coalescer(debounce, max_wait)
    batches: list[list[str]] = []
    pending = sorted(events)
    t = 0.0
    while t <= until:
        while pending and pending[0][0] <= t:
            c.add({pending.pop(0)[1]}, t)
        batch = c.cut(t)
        if batch:
            batches.append(sorted(batch.paths))
        t = round(t + 0.001, 6)
    return batches


@pytest.mark.parametrize(
    "events, expected",
    [
        ([(0.0, "a")], [["a"]]),
        ([(0.0, "a"), (0.010, "b")], [["a", "b"]]),  # within the quiet period: one batch
        ([(0.0, "a"), (0.050, "b")], [["a"], ["b"]]),  # quiet period passed: two batches
        ([(0.0, "a"), (0.0, "a"), (0.005, "a")], [["a"]]),  # repeats collapse
    ],
)
def test_quiet_period_closes_batches(events, expected) -> None:  # noqa: ANN001
    assert drive(events, debounce=0.020, max_wait=2.0, until=1.0) == expected


def test_max_wait_cuts_a_never_quiet_stream() -> None:
    # An event every 10 ms for 1 s never leaves 20 ms of quiet: max_wait (200 ms) cuts it.
    events = [(i * 0.010, f"f{i}") for i in range(100)]
    batches = drive(events, debounce=0.020, max_wait=0.200, until=2.0)
    assert 5 <= len(batches) <= 6
    assert sorted(p for b in batches for p in b) == sorted(p for _, p in events)  # nothing lost


def test_git_checkout_of_5000_files_is_a_handful_of_batches() -> None:
    events = [(i * 0.0002, f"src/f{i}") for i in range(5000)]  # 5,000 files in one second
    batches = drive(events, debounce=0.020, max_wait=2.0, until=3.0)
    assert len(batches) <= 3
    assert sum(len(b) for b in batches) == 5000


def test_events_during_a_push_go_to_the_next_batch() -> None:
    c = Coalescer(0.020, 2.0)
    c.add({"a"}, 0.0)
    first = c.cut(0.030)
    c.add({"b"}, 0.031)  # arrives while `first` is being pushed
    assert c.cut(0.040) is None
    second = c.cut(0.060)
    assert first is not None and second is not None
    assert (first.paths, second.paths) == ({"a"}, {"b"})
    assert second.id == first.id + 1


def test_reconcile_request_is_carried_by_the_next_batch() -> None:
    c = Coalescer(0.020, 2.0)
    c.request_reconcile(0.0)
    batch = c.cut(0.020)
    assert batch is not None and batch.reconcile and not batch.paths
    c.add({"x"}, 1.0)
    assert not c.cut(1.1).reconcile  # type: ignore[union-attr]


def test_hurry_cuts_at_once_and_only_the_open_batch() -> None:
    c = Coalescer(0.020, 2.0)
    c.hurry()  # nothing pending: no effect on what comes next
    c.add({"a"}, 1.0)
    assert c.cut(1.001) is None
    c.add({"src/main.rs"}, 1.002)
    c.hurry()  # it sets off a build: no quiet period
    batch = c.cut(1.002)
    assert batch is not None and batch.paths == {"a", "src/main.rs"}
    c.add({"b"}, 1.003)
    assert c.cut(1.004) is None  # the next batch waits for its quiet period again
    assert c.cut(1.023) is not None


# --- mapping ----------------------------------------------------------------------------------

M_SRC = ResolvedMapping(Path("/w/backend/src"), "/app/src", "svc", "t")
M_STATIC = ResolvedMapping(Path("/w/backend/src/static"), "/srv/static", "svc", "t")
M_BIN = ResolvedMapping(Path("/w/backend/target/debug/api"), "/app/bin/api", "svc", "t")


@pytest.mark.parametrize(
    "path, dest",
    [
        ("/w/backend/src/main.rs", "/app/src/main.rs"),
        ("/w/backend/src/static/app.css", "/srv/static/app.css"),  # most specific wins
        ("/w/backend/src/static", "/srv/static"),
        ("/w/backend/target/debug/api", "/app/bin/api"),  # a file mapping
        ("/w/backend/target/debug/other", None),
        ("/w/backend/srcx/main.rs", None),  # a prefix of the name is not containment
    ],
)
def test_most_specific_mapping(path: str, dest: str | None) -> None:
    m = most_specific([M_SRC, M_STATIC, M_BIN], Path(path))
    assert (m.dest_of(Path(path)) if m else None) == dest


@pytest.mark.parametrize("rest", ["main.rs", "a/b/c.txt", "a b/ü.rs", ".env", "a/.git/x", "..", "a/../..", "a//b",
                                  "a/./b", "a\0b", "x/", "-x", "a\\b", "...", "a/..b"])
@pytest.mark.parametrize("mapping", [M_SRC, ResolvedMapping(Path("/w"), "/", "svc", "t")])
def test_dest_of_fast_path_agrees_with_the_checked_one(mapping: ResolvedMapping, rest: str) -> None:
    """A reconcile maps every path through dest_of's fast path; anything odd takes the checked
    one, which refuses what would leave the destination. Both give the same answer."""
    path = f"{mapping.src}/{rest}"
    try:
        checked: str | None = posixpath.join(mapping.dest, rest)
        check_within(checked, mapping.dest)
    except UnsafePath:
        checked = None
    try:
        got: str | None = mapping.dest_of(path)
    except UnsafePath:
        got = None
    assert got == checked


@pytest.mark.parametrize("dest", ["/app/../etc/passwd", "relative", "/app2/x", "/etc"])
def test_check_within_refuses_escapes(dest: str) -> None:
    with pytest.raises(UnsafePath):
        check_within(dest, "/app")


def test_relative_names_and_root() -> None:
    assert common_root(["/app/src", "/app/bin/api"]) == "/app"
    assert common_root(["/app/src"]) == "/app"
    assert common_root(["/app", "/app/static"]) == "/"
    assert relative_name("/app/src/a b", "/app") == "src/a b"
    with pytest.raises(UnsafePath):
        relative_name("/app", "/app")


# --- manifest diff ------------------------------------------------------------------------------


def lf(kind: Kind = Kind.FILE, digest: str = "h1", exec_: bool = False, link: str = "") -> LocalFile:
    return LocalFile("/local/x", Entry(kind, digest, exec_, link))


def test_unchanged_content_is_not_sent() -> None:
    remote = {"/app/a": Entry(Kind.FILE, "h1")}
    assert not diff({"/app/a": lf(digest="h1")}, remote)
    assert [p.dest for p in diff({"/app/a": lf(digest="h2")}, remote).puts] == ["/app/a"]
    assert [p.dest for p in diff({"/app/a": lf(digest="h1", exec_=True)}, remote).puts] == ["/app/a"]


def test_kind_changes_delete_first() -> None:
    remote = {"/app/d": Entry(Kind.DIR), "/app/d/x": Entry(Kind.FILE, "h"), "/app/f": Entry(Kind.FILE, "h")}
    delta = diff({"/app/d": lf(), "/app/f/inner": lf()}, remote)
    assert delta.deletes == ("/app/d", "/app/f")  # a dir that became a file; a file in the way of a dir
    assert [p.dest for p in delta.puts] == ["/app/d", "/app/f/inner"]


def test_deletes_only_what_the_container_has_and_prunes_nested() -> None:
    remote = {"/app/d": Entry(Kind.DIR), "/app/d/x": Entry(Kind.FILE, "h")}
    delta = diff({"/app/d": None, "/app/d/x": None, "/app/never": None}, remote)
    assert delta.deletes == ("/app/d",)
    assert prune_nested(["/a/b", "/a", "/ab", "/a/b/c"]) == ("/a", "/ab")


def test_full_reconcile_deletes_only_owned_paths() -> None:
    remote = {"/app/old": Entry(Kind.FILE, "h"), "/app/node_modules": Entry(Kind.DIR), "/app/keep": Entry(Kind.FILE, "h")}
    delta = diff({"/app/keep": lf(digest="h")}, remote, full=True, owned=lambda d: "node_modules" not in d)
    assert delta.deletes == ("/app/old",) and not delta.puts


def test_apply_delta_tracks_the_container() -> None:
    remote = {"/app/d": Entry(Kind.DIR), "/app/d/x": Entry(Kind.FILE, "h"), "/app/dx": Entry(Kind.FILE, "h")}
    apply_delta(remote, ["/app/d"], {"/app/n/new": Entry(Kind.FILE, "h2")})
    # parents created by tar are tracked too, so a later delete of them is known
    assert remote == {
        "/app": Entry(Kind.DIR),
        "/app/dx": Entry(Kind.FILE, "h"),
        "/app/n": Entry(Kind.DIR),
        "/app/n/new": Entry(Kind.FILE, "h2"),
    }



def test_a_directory_described_whole_names_what_is_stale_below_it() -> None:
    # `mv d elsewhere; mkdir d; echo > d/y`: the batch names d (now a new directory) and d/y,
    # never the old d/x and d/sub/z that the container still has.
    remote = {"/app/d": Entry(Kind.DIR), "/app/d/x": Entry(Kind.FILE, "h"), "/app/d/sub": Entry(Kind.DIR),
              "/app/d/sub/z": Entry(Kind.FILE, "h"), "/app/dx": Entry(Kind.FILE, "h"), "/app/e": Entry(Kind.DIR)}
    desired = {"/app/d": lf(Kind.DIR), "/app/d/y": lf(), "/app/new": lf(Kind.DIR), "/app/e/f": lf()}
    dirs = rewritten_dirs(desired, remote)
    assert dirs == ("/app/d",)  # a new directory has nothing below it; /app/e is not described
    assert sorted(unlisted_below(dirs, desired, remote)) == ["/app/d/sub", "/app/d/sub/z", "/app/d/x"]
    delta = diff(desired, remote, gone=["/app/d/x", "/app/d/sub", "/app/d/sub/z", "/app/never"])
    assert delta.deletes == ("/app/d/sub", "/app/d/x")  # nested pruned, unknown paths dropped
    assert [p.dest for p in delta.puts] == ["/app/d/y", "/app/e/f", "/app/new"]


def test_a_newer_batch_supersedes_older_puts_below_what_it_describes() -> None:
    pending = {"/app/d/x": lf(), "/app/d/gone": None, "/app/g/x": lf(), "/app/k": lf()}
    merge_pending(pending, {"/app/d": lf(Kind.DIR), "/app/d/y": lf(), "/app/g": None})
    # d/x was a file of the old d (moved away): dropped; the delete stays; g is gone whole
    assert sorted(pending) == ["/app/d", "/app/d/gone", "/app/d/y", "/app/g", "/app/k"]


# --- plan ---------------------------------------------------------------------------------------

SVC = ServicePlanInput("backend", "t", (M_SRC, M_STATIC), ("backend/Cargo.toml",), "tilt trigger backend")
WEB = ServicePlanInput("web", "w", (ResolvedMapping(Path("/w/web"), "/site", "web", "w"),), (), None)


def _never(*_: object) -> bool:
    return False


def test_plan_resolves_paths_per_target() -> None:
    local = {"/w/backend/src/a.rs": lf(), "/w/backend/src/gone.rs": None, "/w/web/i.js": lf(), "/w/README": lf()}
    plan = plan_batch(7, local, [SVC, WEB], Path("/w"), _never)
    assert set(plan.targets["t"].desired) == {"/app/src/a.rs", "/app/src/gone.rs"}
    assert plan.targets["t"].desired["/app/src/gone.rs"] is None
    assert set(plan.targets["w"].desired) == {"/site/i.js"}
    assert [(s.path, s.reason) for s in plan.skipped] == [("/w/README", "outside every mapping")]


def test_plan_fallback_stops_sync_for_that_service_only() -> None:
    local = {"/w/backend/src/a.rs": lf(), "/w/backend/Cargo.toml": lf(), "/w/web/i.js": lf()}
    plan = plan_batch(1, local, [SVC, WEB], Path("/w"), _never)
    assert "t" not in plan.targets and "w" in plan.targets
    (fb,) = plan.fallbacks
    assert fb.service == "backend" and fb.command == "tilt trigger backend"
    assert "backend/Cargo.toml matches fall_back_on" in fb.reason


def test_plan_skips_ignored_paths() -> None:
    local = {"/w/backend/src/a.rs": lf(), "/w/backend/src/a.rs.swp": lf()}
    plan = plan_batch(1, local, [SVC], Path("/w"), lambda svc, p, d, s: str(p).endswith(".swp"))
    assert set(plan.targets["t"].desired) == {"/app/src/a.rs"}
    assert plan.skipped[0].reason == "ignored by service 'backend'"


# --- core/chunking.py: a long reconcile's chunks ---------------------------------------------


def test_chunk_end_fills_the_budget_and_takes_at_least_one() -> None:
    from syncd.core.chunking import chunk_end

    sizes = [100, 200, 300, 5000, 50]
    assert chunk_end(sizes, 0, 300) == 2  # 100 + 200 fit, + 300 does not
    assert chunk_end(sizes, 2, 300) == 3
    assert chunk_end(sizes, 3, 300) == 4  # larger than the budget alone: still sent, by itself
    assert chunk_end(sizes, 4, 10_000) == 5
    assert chunk_end(sizes, 0, 10**9) == len(sizes)


def test_next_chunk_follows_the_link_within_bounds() -> None:
    from syncd.core.chunking import next_chunk_bytes

    lo, hi = 256 << 10, 64 << 20
    # 1 MiB in 0.8 s (10 Mbit/s): half a second's worth next
    assert next_chunk_bytes(1 << 20, 0.8, 0.5, lo, hi) == int((1 << 20) / 0.8 * 0.5)
    assert next_chunk_bytes(1 << 20, 0.005, 0.5, lo, hi) == hi  # a LAN: the ceiling
    assert next_chunk_bytes(1 << 20, 60.0, 0.5, lo, hi) == lo  # a crawl: the floor
    assert next_chunk_bytes(1 << 20, 0.0, 0.5, lo, hi) == hi


def test_share_keeps_one_copy_of_what_replicas_and_the_local_tree_hold() -> None:
    """Two replicas' manifests, parsed apart: after `share` with one pool they hold the same
    entry objects, their digests are the local entries' strings, and nothing compares
    differently than before (a differing entry stays that replica's own)."""
    digest = "a" * 40
    local_digest = "".join(["a"] * 40)  # equal, another object (as the hash cache's string is)
    assert local_digest is not digest
    desired = {"/app/x": LocalFile("/src/x", Entry(Kind.FILE, local_digest)), "/app/d": LocalFile("/src/d", Entry(Kind.DIR)),
               "/app/y": LocalFile("/src/y", Entry(Kind.FILE, "b" * 40))}

    def parsed(y: str) -> dict:
        return {"/app/x": Entry(Kind.FILE, "".join(["a"] * 40), size=3, mtime=7), "/app/d": Entry(Kind.DIR),
                "/app/y": Entry(Kind.FILE, y, size=3, mtime=7), "/app/extra": Entry(Kind.LINK, link="x")}

    one, two = parsed("b" * 40), parsed("c" * 40)
    before = (dict(one), dict(two))
    pool: dict = {}
    share(one, desired, pool)
    share(two, desired, pool)
    assert (one, two) == before
    assert one["/app/x"] is two["/app/x"] and one["/app/x"].digest is local_digest
    assert one["/app/d"] is two["/app/d"] and one["/app/extra"] is two["/app/extra"]
    assert one["/app/y"] is not two["/app/y"] and two["/app/y"].digest == "c" * 40
    assert one["/app/y"].digest is desired["/app/y"].entry.digest


def test_a_container_that_holds_nothing_gets_what_the_general_comparison_would_send() -> None:
    """`diff` into an empty manifest takes a shortcut (everything goes, nothing in the way): the
    same delta as the general comparison against a manifest holding only unrelated paths."""
    desired: dict[str, LocalFile | None] = {"/app/src": LocalFile("/s", Entry(Kind.DIR))}
    for d in range(3):
        desired[f"/app/src/d{d}"] = LocalFile(f"/s/d{d}", Entry(Kind.DIR))
        for f in range(4):
            desired[f"/app/src/d{d}/f{f}"] = LocalFile(f"/s/d{d}/f{f}", Entry(Kind.FILE, f"{d}{f}" * 20), size=f)
    desired["/app/src/l"] = LocalFile("/s/l", Entry(Kind.LINK, link="d0"))
    desired["/app/src/gone"] = None  # gone locally, not there either: nothing to do
    shuffled = dict(reversed(list(desired.items())))  # (the walk's order is not sorted)
    fast = diff(shuffled, {}, full=True, owned=lambda d: True)
    general = diff(shuffled, {"/elsewhere/x": Entry(Kind.DIR)}, owned=lambda d: True)
    assert fast == general and not fast.deletes
    assert [p.dest for p in fast.puts] == sorted(d for d, lf in desired.items() if lf is not None)

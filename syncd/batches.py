"""From a cut batch (changed paths) to a plan: each path read as it is now, a directory with
everything below it, then `core.plan.plan_batch` decides per service and target. Blocking (it
reads the tree): the engine calls `plan` in a worker thread."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from syncd.core.mapping import most_specific
from syncd.core.plan import plan_batch
from syncd.dirlinks import through_link
from syncd.model import Batch, Kind, LocalFile, Plan
from syncd.scan import HashCache, read_entry, walk
from syncd.services import ServiceRuntime


def expand(paths: frozenset[str], services: Sequence[ServiceRuntime], hashes: HashCache,
           errors: list[tuple[str, str]]) -> dict[str, LocalFile | None]:
    """Each changed path as it is now (None: gone); a directory brings everything below it."""
    local: dict[str, LocalFile | None] = {}
    memo: dict[str, str | None] = {}
    for raw in sorted(not_through_links(paths, services, memo)):
        if raw in local:
            continue  # read already, by the walk of a new directory above it (sorted: it came first)
        try:
            lf = read_entry(raw, hashes)
        except OSError as e:
            errors.append((raw, e.strerror or str(e)))
            continue
        local[raw] = lf
        if lf is not None and lf.entry.kind is Kind.DIR:
            for svc in services:
                m = most_specific(svc.mappings, Path(raw))
                if m is None:
                    continue
                for child in walk(raw, str(m.src), svc.rules, hashes, errors):
                    local[child.path] = child
    return local


def not_through_links(paths: frozenset[str], services: Sequence[ServiceRuntime], memo: dict[str, str | None]) -> set[str]:
    """The paths, each one reached through a symlinked directory below its mapping's src
    replaced by that symlink: syncd syncs the link, never what it points to."""
    out: set[str] = set()
    for raw in paths:
        link = None
        for svc in services:
            m = most_specific(svc.mappings, raw)
            if m is not None:
                link = through_link(raw, str(m.src), memo)
                if link is not None:
                    break
        out.add(link or raw)
    return out


def plan(batch: Batch, services: Sequence[ServiceRuntime], root: Path, hashes: HashCache,
         errors: list[tuple[str, str]]) -> tuple[Plan, float | None]:
    """The batch's plan, and when its first change happened (see detect_start)."""
    rules = {s.cfg.name: s.rules for s in services}
    local = expand(batch.paths, services, hashes, errors)
    planned = plan_batch(
        batch.id,
        local,
        [s.plan_input for s in services],
        root,
        lambda service, path, is_dir, src: rules[service].ignored(path, is_dir, src),
        lambda service, path, src: rules[service].open_below(path, src),
    )
    return planned, detect_start(batch, local.values())


def detect_start(batch: Batch, changed: Iterable[LocalFile | None]) -> float | None:
    """The earliest change behind the batch, from inode change times (a write, rename or chmod
    sets it; mtime would miss renames) of every changed path, build triggers included. Times
    older than a second before the first event (files inside a moved tree) say nothing about
    detection delay and are left out."""
    times = [lf.ctime for lf in changed
             if lf is not None and lf.entry.kind is not Kind.DIR and batch.first_event - 1.0 < lf.ctime <= batch.first_event]
    return min(times) if times else None

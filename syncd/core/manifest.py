"""What a container has (a manifest of container path -> Entry) versus what it should have.

Pure. `diff` turns desired state into the minimal Delta (unchanged bytes are not sent),
`apply_delta` updates a manifest to what the container holds after a Delta was applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from syncd.model import Delta, DestPath, Entry, Kind, LocalFile, Put, parent_dirs

Manifest = dict[DestPath, Entry]


def _under(path: DestPath, ancestor: DestPath) -> bool:
    return path.startswith(ancestor.rstrip("/") + "/")


def prune_nested(deletes: Iterable[DestPath]) -> tuple[DestPath, ...]:
    """Drop deletes already covered by deleting an ancestor (`rm -rf` takes the subtree)."""
    kept: list[DestPath] = []
    for d in sorted(set(deletes)):
        if kept and (_under(d, kept[-1]) or d == kept[-1]):
            continue
        kept.append(d)
    return tuple(kept)


def diff(
    desired: Mapping[DestPath, LocalFile | None],
    remote: Manifest,
    *,
    full: bool = False,
    owned: Callable[[DestPath], bool] | None = None,
) -> Delta:
    """Puts and deletes that make `remote` equal `desired` for the touched paths.

    `full`: `desired` lists every owned path (a reconcile), so owned remote paths missing
    from it are deleted too. `owned` says which remote paths syncd manages (inside a
    mapping's destination and not ignored); others are never touched.
    """
    deletes: set[DestPath] = set()
    puts: list[Put] = []
    for dest, local in desired.items():
        current = remote.get(dest)
        if local is None:
            if current is not None:
                deletes.add(dest)
            continue
        if local.entry.same_as(current):
            continue
        if current is not None and current.kind != local.entry.kind:
            deletes.add(dest)  # kind change: tar cannot turn a directory into a file
        for ancestor in parent_dirs(dest):
            above = remote.get(ancestor)
            if above is not None and above.kind is not Kind.DIR:
                deletes.add(ancestor)  # a file or symlink stands where a directory must be
        puts.append(Put(dest, local))
    if full:
        for dest in remote:
            if dest not in desired and (owned is None or owned(dest)):
                deletes.add(dest)
    puts.sort(key=lambda p: p.dest)
    return Delta(deletes=prune_nested(deletes), puts=tuple(puts))


def apply_delta(remote: Manifest, deletes: Iterable[DestPath], sent: Mapping[DestPath, Entry]) -> None:
    """Record in `remote` what the container holds after `deletes` then `sent` were applied."""
    for d in deletes:
        gone = remote.pop(d, None)
        if gone is None or gone.kind is Kind.DIR:
            for key in [k for k in remote if _under(k, d)]:
                del remote[key]
    for dest, entry in sent.items():
        for ancestor in parent_dirs(dest):
            remote.setdefault(ancestor, Entry(Kind.DIR))
        remote[dest] = entry

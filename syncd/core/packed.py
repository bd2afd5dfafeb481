"""A long-lived manifest kept in columns instead of one `Entry` object per path.

A worker keeps what its container holds (`ContainerWorker.manifest`) for as long as the daemon
runs. As a dict of `Entry` objects that is ~300 bytes a path: the dict's slot, the path string,
the entry, its 40-character digest string, an int for its mtime. `PackedManifest` keeps the
same content in a few big buffers: the sorted paths as one string with their offsets, one kind
byte, 20 digest bytes and two 8-byte numbers a path (~70 bytes a path with a 25-character name).
Big buffers are their own allocations (mmap), so nothing of a manifest stays behind in the
heap pages the reconcile's listing, scan and records freed: 100,000 small path strings did, and
kept those pages resident (idle at 100,000 files into two containers, 3 restarts alternated:
113-125 MiB with them, 104.5-104.8 without). Replicas in step share the buffers themselves
(`pack`'s `like`).

It is a `MutableMapping[DestPath, Entry]`, so everything that reads or updates a manifest
(`diff`, `apply_delta`, the block deltas' base lookup) works on it unchanged: a lookup is a
binary search over the names (~4 us) and builds the `Entry` (~1 us), which the pushes of a
running daemon do for the paths of each batch; a whole pass (`items`) walks the columns. What
changes after packing lives in a small dict beside the columns (`_changed`) and a set of paths
deleted from them (`_gone`); `compact` packs again once those have grown. Pure: no I/O.
"""
from __future__ import annotations

import heapq
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from itertools import accumulate
from operator import itemgetter
from typing import cast

from syncd.core.manifest import DIR
from syncd.model import DestPath, Entry, Kind

# The kind byte: what most paths are, in the columns; anything else (a symlink, a digest that
# is not 40 hex characters such as a failed hash's "?") is kept whole in `_odd`.
_DIR, _FILE, _EXEC, _ODD = 0, 1, 2, 3
_DIGEST = 20
_INT64 = (-(1 << 63), (1 << 63) - 1)
# names (every path, each followed by NUL), starts (where each begins, and one past the last),
# kinds, digests, sizes, mtimes, odd
Columns = tuple[str, array, bytes, bytes, array, array, dict[int, Entry]]


class PackedManifest(MutableMapping[DestPath, Entry]):
    """Container path -> Entry, in columns (see the module's docstring). Build with `pack`."""

    __slots__ = ("_changed", "_digests", "_gone", "_kinds", "_len", "_mtimes", "_n", "_names", "_odd", "_sizes",
                 "_starts")

    def __init__(self, names: str, starts: array, kinds: bytes, digests: bytes, sizes: array, mtimes: array,
                 odd: dict[int, Entry]) -> None:
        # The paths, sorted, as one string: not a str object each, which would be 100,000 small
        # allocations left standing between the freed listing's, keeping its heap pages.
        self._names = names
        self._starts = starts
        self._n = len(starts) - 1
        self._kinds = kinds
        self._digests = digests
        self._sizes = sizes
        self._mtimes = mtimes
        self._odd = odd  # column index -> entry, for kind byte _ODD
        self._changed: dict[DestPath, Entry] = {}  # set since packing (over the columns, or new)
        self._gone: set[DestPath] = set()  # in the columns, deleted since packing
        self._len = self._n

    def _path(self, i: int) -> DestPath:
        return self._names[self._starts[i]:self._starts[i + 1] - 1]

    def _index(self, path: DestPath) -> int:
        """The column index of `path`, or -1 (a binary search over the names: ~4 us)."""
        names, starts = self._names, self._starts
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if names[starts[mid]:starts[mid + 1] - 1] < path:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self._n and self._path(lo) == path else -1

    def _entry(self, i: int) -> Entry:
        kind = self._kinds[i]
        if kind == _DIR:
            return DIR
        if kind == _ODD:
            return self._odd[i]
        return Entry(Kind.FILE, self._digests[i * _DIGEST:(i + 1) * _DIGEST].hex(), kind == _EXEC,
                     size=self._sizes[i], mtime=self._mtimes[i])

    def __getitem__(self, path: DestPath) -> Entry:
        e = self._changed.get(path)
        if e is not None:
            return e
        if path not in self._gone:
            i = self._index(path)
            if i >= 0:
                return self._entry(i)
        raise KeyError(path)

    def __contains__(self, path: object) -> bool:
        if path in self._changed:
            return True
        return isinstance(path, str) and path not in self._gone and self._index(path) >= 0

    def __setitem__(self, path: DestPath, entry: Entry) -> None:
        if path not in self:
            self._len += 1
        self._changed[path] = entry
        self._gone.discard(path)

    def __delitem__(self, path: DestPath) -> None:
        if path not in self:
            raise KeyError(path)
        self._changed.pop(path, None)
        if self._index(path) >= 0:
            self._gone.add(path)
        self._len -= 1

    def __iter__(self) -> Iterator[DestPath]:
        for _, p in self._columns():
            yield p
        yield from list(self._changed)

    def _columns(self) -> Iterator[tuple[int, DestPath]]:
        """(index, path) of what is still in the columns as packed."""
        paths = self._names.split("\0")  # (all at once: faster than a slice each)
        paths.pop()  # (after the last NUL)
        if not (self._gone or self._changed):
            yield from enumerate(paths)
            return
        gone, changed = self._gone, self._changed
        for i, p in enumerate(paths):
            if p not in gone and p not in changed:
                yield i, p

    def walk(self) -> Iterator[tuple[DestPath, Entry]]:
        """Every (path, entry), in one pass over the columns."""
        entry = self._entry
        for i, p in self._columns():
            yield p, entry(i)
        yield from list(self._changed.items())

    def walk_sorted(self) -> Iterator[tuple[DestPath, Entry]]:
        """Every (path, entry) in path order: the columns (sorted as packed) merged with what
        changed since (the two never name the same path: see `_columns`)."""
        entry, changed = self._entry, self._changed
        packed = ((p, entry(i)) for i, p in self._columns())
        return heapq.merge(packed, ((p, changed[p]) for p in sorted(changed)), key=itemgetter(0))

    def items(self) -> ItemsView[DestPath, Entry]:
        """(A whole pass in column order, not a lookup per path: `confirmed`, `record_of`.)"""
        return _Items(self)

    def values(self) -> ValuesView[Entry]:
        return _Values(self)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PackedManifest({self._len} paths, {len(self._changed) + len(self._gone)} changed since packing)"

    def columns(self) -> Columns:
        """The columns as packed (never changed after: replicas may share them, see `pack`)."""
        return self._names, self._starts, self._kinds, self._digests, self._sizes, self._mtimes, self._odd

    @property
    def changes(self) -> int:
        """Paths set or deleted since packing."""
        return len(self._changed) + len(self._gone)


class _Items(ItemsView[DestPath, Entry]):
    _mapping: PackedManifest

    def __iter__(self) -> Iterator[tuple[DestPath, Entry]]:
        return self._mapping.walk()


class _Values(ValuesView[Entry]):
    _mapping: PackedManifest

    def __iter__(self) -> Iterator[Entry]:
        return (e for _, e in self._mapping.walk())


def pack(manifest: Mapping[DestPath, Entry], like: Iterable[MutableMapping[DestPath, Entry] | None] = ()) -> PackedManifest:
    """`manifest` in columns (~0.05 s at 100,000 paths). A column equal to the same column of
    a packed manifest in `like` (the target's other replicas) is that very object: replicas in
    step keep one copy of their paths and digests between them."""
    n = len(manifest)
    paths: list[DestPath] = []
    kinds = bytearray(n)
    hexes: list[str] = []  # every column's digest, joined and converted at once below
    sizes = array("q", bytes(8 * n))
    mtimes = array("q", bytes(8 * n))
    odd: dict[int, Entry] = {}
    none = "0" * 2 * _DIGEST
    low, high = _INT64
    file = Kind.FILE
    for i, (path, e) in enumerate(_in_order(manifest)):
        paths.append(path)
        # (inline: once per path of the tree)
        if (e.kind is file and not e.link and len(e.digest) == 2 * _DIGEST and type(e.size) is int and type(e.mtime) is int
                and low <= e.size <= high and low <= e.mtime <= high):
            kinds[i] = _EXEC if e.exec else _FILE
            hexes.append(e.digest)
            sizes[i], mtimes[i] = e.size, e.mtime
            continue
        if e == DIR:
            kinds[i] = _DIR
        else:
            kinds[i], odd[i] = _ODD, e
        hexes.append(none)
    joined = "".join(hexes)
    try:
        digests = bytes.fromhex(joined)
        exact = digests.hex() == joined  # (an upper-case digest would come back lower-case)
    except ValueError:  # a digest that is not hex: found below, entry by entry
        digests, exact = b"", False
    if not exact:
        digests = _digests_one_by_one(hexes, kinds, paths, manifest, odd)
    names = "\0".join(paths) + "\0" if paths else ""  # (no path holds a NUL)
    starts = array("q", accumulate((len(p) + 1 for p in paths), initial=0))
    del paths
    return from_columns((names, starts, bytes(kinds), digests, sizes, mtimes, odd), like)


def _in_order(manifest: Mapping[DestPath, Entry]) -> Iterator[tuple[DestPath, Entry]]:
    """(path, entry) by path. A packed manifest's in one pass over its sorted columns merged
    with what changed since packing: a lookup per path cost ~6 us (a binary search and the
    entry), and each replica re-packs after the bursts that changed an eighth of it (10 replicas
    of a 10,000-file tree after a 1,000-file burst: ~0.6 s of CPU)."""
    if isinstance(manifest, PackedManifest):
        return manifest.walk_sorted()
    return ((p, manifest[p]) for p in sorted(manifest))


def from_columns(columns: Columns, like: Iterable[MutableMapping[DestPath, Entry] | None] = ()) -> PackedManifest:
    """A packed manifest of columns as `PackedManifest.columns` gave them (`pack`, or read
    back from a file: syncd/converged.py); `like`: see `pack`."""
    for other in like:
        if isinstance(other, PackedManifest):
            columns = cast(Columns, tuple(theirs if theirs == mine else mine
                                          for mine, theirs in zip(columns, other.columns(), strict=True)))
    return PackedManifest(*columns)


def _digests_one_by_one(hexes: list[str], kinds: bytearray, paths: list[DestPath],
                        manifest: Mapping[DestPath, Entry], odd: dict[int, Entry]) -> bytes:
    """The digest column where some digest does not survive hex -> bytes -> hex: those entries
    go whole into `odd`."""
    out = bytearray()
    for i, h in enumerate(hexes):
        try:
            raw = bytes.fromhex(h)
            if raw.hex() != h:
                raise ValueError(h)
        except ValueError:
            kinds[i], odd[i], raw = _ODD, manifest[paths[i]], bytes(_DIGEST)
        out += raw
    return bytes(out)


def compact(manifest: MutableMapping[DestPath, Entry], at_least: int,
            like: Iterable[MutableMapping[DestPath, Entry] | None] = ()) -> MutableMapping[DestPath, Entry]:
    """The manifest to keep: packed when it holds `at_least` paths (a dict below that, or
    `at_least` 0: never packed), packed again when what changed since packing is an eighth of
    it. `like`: see `pack`."""
    if at_least <= 0 or len(manifest) < at_least:
        return manifest
    if isinstance(manifest, PackedManifest) and manifest.changes * 8 < len(manifest):
        return manifest
    return pack(manifest, like)


def to_data(manifest: PackedManifest) -> dict[str, object]:
    """The columns as plain values (str, bytes, lists), for marshal (syncd/converged.py)."""
    names, starts, kinds, digests, sizes, mtimes, odd = manifest.columns()
    return {"names": names, "starts": starts.tobytes(), "kinds": kinds, "digests": digests,
            "sizes": sizes.tobytes(), "mtimes": mtimes.tobytes(),
            "odd": [(i, e.kind.value, e.digest, e.exec, e.link, e.size, e.mtime) for i, e in odd.items()]}


def from_data(data: object, like: Iterable[MutableMapping[DestPath, Entry] | None] = ()) -> PackedManifest | None:
    """`to_data`'s values as a packed manifest again; None where they do not fit together
    (a damaged file). `like`: see `pack`."""
    try:
        if not isinstance(data, dict):
            return None
        names, kinds, digests = data["names"], data["kinds"], data["digests"]
        if type(names) is not str or type(kinds) is not bytes or type(digests) is not bytes:
            return None
        starts, sizes, mtimes = array("q"), array("q"), array("q")
        starts.frombytes(data["starts"])
        sizes.frombytes(data["sizes"])
        mtimes.frombytes(data["mtimes"])
        n = len(kinds)
        if (len(starts) != n + 1 or starts[0] != 0 or starts[-1] != len(names) or len(digests) != n * _DIGEST
                or len(sizes) != n or len(mtimes) != n or max(kinds, default=0) > _ODD):
            return None
        odd: dict[int, Entry] = {}
        for i, kind, digest, exe, link, size, mtime in data["odd"]:
            if not 0 <= i < n or kinds[i] != _ODD:
                return None
            odd[i] = Entry(Kind(kind), digest, exe, link, size=size, mtime=mtime)
        if kinds.count(_ODD) != len(odd):
            return None
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return from_columns((names, starts, kinds, digests, sizes, mtimes, odd), like)

"""The packed manifest (syncd/core/packed.py) against a plain dict: same content, every operation."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.manifest import apply_delta, diff, unlisted_below
from syncd.core.packed import PackedManifest, compact, pack
from syncd.model import Entry, Kind, LocalFile


def _digest(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


# Every kind of entry a manifest holds, the rare ones included: they must come back equal.
ENTRIES = st.one_of(
    st.builds(lambda n, x, size, mtime: Entry(Kind.FILE, _digest(n), x, size=size, mtime=mtime),
              st.integers(0, 50), st.booleans(), st.integers(-1, 1 << 40), st.integers(-1, 2_000_000_000)),
    st.just(Entry(Kind.DIR)),
    st.builds(lambda t: Entry(Kind.LINK, link=t), st.sampled_from(["../a", "/etc/passwd", "x y"])),
    st.sampled_from([
        Entry(Kind.FILE, "?", False),  # a failed hash
        Entry(Kind.FILE, "", False, size=3, mtime=9),  # a quick listing not yet resolved
        Entry(Kind.FILE, _digest(1).upper(), True),  # would not come back as it went in
        Entry(Kind.FILE, "zz" * 20, False),  # 40 characters, not hex
        Entry(Kind.FILE, _digest(2), False, size=1 << 70, mtime=5),  # beyond 64 bits
        Entry(Kind.DIR, size=4096, mtime=7),  # a directory with numbers: kept whole
    ]),
)
PATHS = st.builds(lambda d, f: f"/app/d{d}" + (f"/f{f}" if f >= 0 else ""), st.integers(0, 6), st.integers(-1, 12))
OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "get", "pop"]), PATHS, ENTRIES), max_size=40)


def _same(packed: PackedManifest, plain: dict) -> None:
    assert len(packed) == len(plain)
    assert sorted(packed) == sorted(plain)
    assert dict(packed.items()) == plain
    assert packed == plain
    in_order = list(packed.walk_sorted())  # (what a re-pack reads: columns merged with the changes)
    assert [p for p, _ in in_order] == sorted(plain) and dict(in_order) == plain


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(PATHS, ENTRIES, max_size=60), OPS)
def test_a_packed_manifest_reads_and_changes_exactly_as_the_dict_it_was_packed_from(start, ops) -> None:  # noqa: ANN001
    plain = dict(start)
    packed = pack(start)
    _same(packed, plain)
    for op, path, entry in ops:
        if op == "set":
            plain[path] = entry
            packed[path] = entry
        elif op == "del":
            assert (path in packed) == (path in plain)
            if path in plain:
                del plain[path]
                del packed[path]
        elif op == "pop":
            assert packed.pop(path, None) == plain.pop(path, None)
        else:
            assert packed.get(path) == plain.get(path)
        _same(packed, plain)
    again = compact(packed, 1) if packed.changes * 8 >= len(packed) else pack(packed)
    assert isinstance(again, PackedManifest) and again.changes == 0
    _same(again, plain)


def test_diff_and_apply_delta_on_a_packed_manifest_give_what_they_give_on_a_dict() -> None:
    remote = {f"/app/d{d}/f{f}": Entry(Kind.FILE, _digest(d * 100 + f), False, size=10, mtime=1)
              for d in range(20) for f in range(30)}
    remote.update({f"/app/d{d}": Entry(Kind.DIR) for d in range(20)} | {"/app": Entry(Kind.DIR)})
    packed = pack(remote)

    def local(dest: str, n: int) -> LocalFile:
        return LocalFile(f"/src{dest}", Entry(Kind.FILE, _digest(n), False))

    desired = {"/app/d1/f1": local("/app/d1/f1", 101), "/app/d1/f2": local("/app/d1/f2", 7),  # same; changed
               "/app/d2/f0": None, "/app/new/x": local("/app/new/x", 1),  # deleted; new
               "/app/d3": LocalFile("/src/app/d3", Entry(Kind.DIR))}
    assert diff(desired, packed) == diff(desired, remote)
    assert sorted(unlisted_below(["/app/d3"], desired, packed)) == sorted(unlisted_below(["/app/d3"], desired, remote))
    delta = diff(desired, remote)
    sent = {p.dest: p.source.entry for p in delta.puts}
    apply_delta(remote, delta.deletes + ("/app/d4",), sent)
    apply_delta(packed, delta.deletes + ("/app/d4",), sent)
    _same(packed, remote)
    assert "/app/new" in packed and not any(k.startswith("/app/d4") for k in packed)


def test_compact_packs_only_large_manifests_and_again_once_an_eighth_changed() -> None:
    small = {f"/app/f{i}": Entry(Kind.FILE, _digest(i), False) for i in range(10)}
    assert compact(small, 11) is small
    assert compact(small, 0) is small  # 0: never
    packed = compact(small, 10)
    assert isinstance(packed, PackedManifest)
    packed["/app/f0"] = Entry(Kind.FILE, _digest(99), False)
    assert compact(packed, 10) is packed  # 1 of 10 changed: kept
    del packed["/app/f1"]
    again = compact(packed, 9)
    assert again is not packed and isinstance(again, PackedManifest) and again.changes == 0
    want = {**small, "/app/f0": Entry(Kind.FILE, _digest(99), False)}
    del want["/app/f1"]
    assert again == want and len(again) == 9


def test_replicas_in_step_share_their_columns_and_still_change_apart() -> None:
    def listing() -> dict:  # each replica's own listing: equal content, its own objects
        return {f"/app/f{i}": Entry(Kind.FILE, _digest(i), False, size=i, mtime=1000 + i) for i in range(50)}

    first = pack(listing())
    second = pack(listing(), like=[None, first])
    assert all(mine is theirs for mine, theirs in zip(first.columns(), second.columns(), strict=True))
    moved = listing()
    moved["/app/f3"] = Entry(Kind.FILE, _digest(3), False, size=3, mtime=5)  # another mtime only
    third = pack(moved, like=[first])
    names, starts, kinds, digests, sizes, mtimes, _ = third.columns()
    theirs = first.columns()
    assert names is theirs[0] and starts is theirs[1] and digests is theirs[3] and sizes is theirs[4]
    assert mtimes is not theirs[5] and third["/app/f3"].mtime == 5 and first["/app/f3"].mtime == 1003
    second["/app/f1"] = Entry(Kind.FILE, _digest(99), True)
    del second["/app/f2"]
    assert first == listing() and len(second) == 49 and second["/app/f1"].exec

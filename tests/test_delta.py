"""Block deltas: the pure encoder (syncd/core/delta.py, blockmatch.py) against its oracle, and the
container side (transports/patch.py) run by the real session script under dash, bash and busybox
ash — verified base, result beside the file then renamed, refusals that leave the file alone and
keep the session in sync."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_session_protocol import session  # noqa: F401 - the fixture (one session per shell)

from syncd.core.delta import THRESHOLD, Copy, Literal, apply, block_size, encode
from syncd.transports.patch import patch_args, patch_stream
from syncd.transports.session import Session


def elf_like(size: int, seed: int = 7) -> bytes:
    """A binary's texture: random code, runs of zeros, repeated tables."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        n = rng.randrange(1 << 10, 64 << 10)
        out += bytes(n) if kind < 0.15 else (b"\x48\x89\xe5\x90" * (n // 4)) if kind < 0.25 else rng.randbytes(n)
    return bytes(out[:size])


def test_block_size_follows_the_square_root() -> None:
    assert block_size(28_900_000) == 4096
    assert block_size(1_000) == 1024 and block_size(10**12) == 64 << 10


def test_two_changed_blocks_and_a_shift_travel_as_a_few_literals() -> None:
    base = elf_like(6 << 20)
    edited = bytearray(base)
    edited[1_000_000:1_000_004] = b"EDIT"
    edited[4_000_000:4_000_002] = b"ok"
    e = encode(base, bytes(edited))
    assert apply(base, e) == bytes(edited)
    assert e.literal_bytes <= 2 * e.block and e.worth_it
    shifted = base[:3_000_000] + os.urandom(10_000) + base[3_000_000:]
    s = encode(base, shifted)
    assert apply(base, s) == shifted
    assert s.literal_bytes <= 10_000 + 2 * s.block  # everything after the insertion still matches
    assert sum(isinstance(op, Copy) for op in s.ops) <= 4  # runs merged: few dd calls
    other = os.urandom(len(base))
    unrelated = encode(base, other)
    assert apply(base, unrelated) == other and not unrelated.worth_it  # nothing matches: sent whole
    assert all(isinstance(op, Literal) for op in unrelated.ops)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=9000), st.lists(st.tuples(st.integers(0, 9000), st.binary(max_size=300)),
                                                       max_size=5), st.integers(0, 9000))
def test_any_edit_round_trips(base: bytes, edits: list[tuple[int, bytes]], cut: int) -> None:
    new = bytearray(base)
    for at, data in edits:
        new[at:at] = data
    del new[cut: cut + 100]
    e = encode(base, bytes(new), block=64)
    assert apply(base, e) == bytes(new)


def test_encoding_cost_is_measured_per_megabyte() -> None:
    """Not a timing assertion: prints the figure the README quotes (ms per MB, this machine)."""
    base = elf_like(8 << 20)
    new = base[:4 << 20] + b"x" * 10_000 + base[4 << 20:]
    t = time.perf_counter()
    e = encode(base, new)
    ms_per_mb = (time.perf_counter() - t) * 1000 / 8
    print(f"encode: {ms_per_mb:.1f} ms/MB (block {e.block}, literal {e.literal_bytes})")
    assert e.literal_bytes < 10_000 + 2 * e.block


def _patch(session: Session, root: Path, name: str, base: bytes, new: bytes, *, claimed_base: bytes | None = None,
           corrupt: bool = False, gzip_level: int = 0) -> tuple[int, bytes]:
    e = encode(base, new)
    stream = list(patch_stream(e, [], gzip_level))
    if corrupt:  # a literal's bytes changed in transit: same length, so the framing holds
        i = next(i for i, c in enumerate(stream) if c[:2] in (b"L ", b"Z "))
        head, _, body = stream[i].partition(b"\n")
        stream[i] = head + b"\n" + bytes([body[0] ^ 0xFF]) + body[1:]
    args = patch_args(str(root), name, e.block, hashlib.sha1(claimed_base if claimed_base is not None else base).hexdigest(),
                      hashlib.sha1(new).hexdigest(), 0o755, 1_700_000_000)
    fut, _ = session.patch(args, iter(stream))
    answer = fut.result(60)
    return answer.rc, answer.output


def test_the_container_applies_a_delta_only_to_its_base(session: Session, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "app"
    (root / "bin").mkdir(parents=True)
    base = elf_like(2 * THRESHOLD)
    new = base[:700_000] + b"inserted" * 1000 + base[700_000:]
    target = root / "bin" / "api"
    target.write_bytes(base)
    rc, out = _patch(session, root, "bin/api", base, new, gzip_level=6)
    assert rc == 0, out
    assert target.read_bytes() == new and os.stat(target).st_mode & 0o777 == 0o755
    assert int(os.stat(target).st_mtime) == 1_700_000_000
    # The container's copy is not the base: refused (exit 3), file untouched, nothing left beside it
    other = new[:-1] + b"!"
    rc, out = _patch(session, root, "bin/api", base, other)
    assert rc == 3 and out.endswith(b"syncd-patch: base") and target.read_bytes() == new
    # A literal corrupted in transit: the result's hash fails, the file stays as it was
    rc, out = _patch(session, root, "bin/api", new, other, corrupt=True)
    assert rc == 3 and out.endswith(b"syncd-patch: result") and target.read_bytes() == new
    # No base at all
    rc, out = _patch(session, root, "bin/gone", base, new)
    assert rc == 3 and not (root / "bin" / "gone").exists()
    assert sorted(p.name for p in (root / "bin").iterdir()) == ["api"]  # no .syncd-patch left behind
    # ... and the session is still in sync after every refusal
    assert session.ping().result(5).rc == 0
    rc, out = _patch(session, root, "bin/api", new, other)
    assert rc == 0 and target.read_bytes() == other


def test_a_compressed_batch_is_extracted_and_a_corrupt_one_fails(session: Session, tmp_path: Path) -> None:  # noqa: F811
    from test_session_protocol import tar_of

    root = str(tmp_path / "app")
    files = {"a.txt": b"text " * 50_000, "b.bin": os.urandom(100_000)}
    fut, sent = session.apply(root, [], iter([tar_of(files)]), gzip=1)
    assert fut.result(20).rc == 0
    assert sent() < 150_000  # the text compressed
    assert {p.name: p.read_bytes() for p in Path(root).iterdir()} == files

    def cut(chunks):  # noqa: ANN001, ANN202 - the gzip stream cut short in transit
        data = b"".join(chunks)
        yield data[: len(data) // 2]

    from syncd.transports import session as session_module

    real = session_module.gzipped
    session_module.gzipped = lambda tar, level: cut(real(tar, level))  # type: ignore[assignment]
    try:
        bad, _ = session.apply(root, [], iter([tar_of({"c.txt": b"c" * 200_000, "d.txt": os.urandom(50_000)})]), gzip=1)
        answer = bad.result(20)
    finally:
        session_module.gzipped = real
    assert b"syncd: gzip -d failed" in answer.output  # exec.py turns this into a failed batch
    assert session.ping().result(5).rc == 0


def test_auto_pays_only_on_a_channel_slower_than_the_work() -> None:
    from syncd.core.transfer import DELTA_COST, GZIP_COST, Cost, Throughput, pays

    lan, cloud, home = 125e6, 6.25e6, 1.25e6  # bytes/s (tests/linksim.py profiles)
    assert not pays("auto", lan, DELTA_COST) and not pays("auto", lan, GZIP_COST)
    assert pays("auto", cloud, DELTA_COST) and pays("auto", home, GZIP_COST)
    assert not pays("auto", None, GZIP_COST)  # unmeasured: taken as fast, nothing gets slower
    assert pays("always", lan, DELTA_COST) and not pays("never", home, DELTA_COST)
    channel = Throughput()
    channel.observe(100_000, 1.0)  # too small to say anything about throughput
    assert channel.rate is None
    channel.observe(4_000_000, 1.0)
    channel.observe(4_000_000, 4.0)  # a slower push (the container was busy): the best rate stands
    assert channel.rate == 4_000_000
    small = Throughput()
    small.observe(1_000_000, 0.3, files=1000)  # 1,000 small files: the container's tar creating them
    assert small.rate is None
    small.observe(4_000_000, 1.0, files=10)  # 400 KB a file: the channel
    assert small.rate == 4_000_000
    cost = Cost(DELTA_COST)
    cost.observe(10_000_000, 2.0)  # a slow encode here (200 ms/MB) moves the estimate
    assert cost.per_byte > DELTA_COST and not pays("auto", cloud, cost.per_byte)


def test_the_base_cache_is_bounded_and_trusts_only_what_hashes_right(tmp_path: Path) -> None:
    from syncd.basecache import BaseCache

    cache = BaseCache(tmp_path / "bases", limit=3 << 20)
    blobs = [os.urandom(1 << 20) for _ in range(4)]
    digests = [hashlib.sha1(b).hexdigest() for b in blobs]
    for i, (d, b) in enumerate(zip(digests, blobs, strict=True)):
        cache.put(d, b)
        os.utime(tmp_path / "bases" / d, (1_000 + i, 1_000 + i))  # put order = use order
        if i == 1:
            assert cache.get(digests[0]) == blobs[0]  # used again: newest now
            os.utime(tmp_path / "bases" / digests[0], (1_100, 1_100))
    assert not cache.has(digests[1]) and all(cache.has(d) for d in (digests[0], digests[2], digests[3]))
    (tmp_path / "bases" / digests[2]).write_bytes(b"torn")  # not what its name says: no base
    assert cache.get(digests[2]) is None and not cache.has(digests[2])
    shutil.rmtree(tmp_path / "bases")  # deleted behind syncd's back: nothing to get, put recreates it
    assert cache.get(digests[0]) is None
    cache.put(digests[0], blobs[0])
    assert cache.get(digests[0]) == blobs[0]
    assert not list((tmp_path / "bases").glob("*.tmp"))

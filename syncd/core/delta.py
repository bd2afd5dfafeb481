"""Block delta of one large file against the version a container already holds (rsync's idea).

The base (what the container has) is cut into fixed blocks of `block_size(len(base))` bytes;
each block gets a weak checksum (two running sums, cheap to slide one byte) and a strong one
(sha1). The new version is scanned at *every* byte offset for a window whose weak checksum
is one of the base's, confirmed by the strong hash: so content that moved (10 KB inserted in
the middle shifts everything after it) still matches. What matches becomes `Copy(block,
count)`; the rest travels as `Literal` bytes.

Pure: bytes in, ops out. The weak checksums of every offset are computed with numpy
(cumulative sums, in slices so memory stays bounded): a pure-Python rolling loop costs ~1 s
per MB, numpy ~10-20 ms per MB (tests/test_delta.py measures; the README states the numbers).
The matching itself is in `blockmatch.py`; the container applies the ops with `dd`
(syncd/transports/patch.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

# Files from this size up are candidates for a delta: below it a full send of a few hundred
# KB costs less than the container hashing its copy and the round trip of a failed base.
THRESHOLD = 1 << 20
# A delta whose literal bytes exceed this share of the new file is not worth the container's
# work (reading the base twice): a full send instead.
WORTH = 0.8


@dataclass(frozen=True, slots=True)
class Copy:
    block: int  # first base block (offset block * size)
    count: int  # consecutive blocks


@dataclass(frozen=True, slots=True)
class Literal:
    data: bytes


Op = Copy | Literal


@dataclass(frozen=True, slots=True)
class Encoded:
    block: int
    ops: tuple[Op, ...]
    size: int  # of the new file

    @property
    def literal_bytes(self) -> int:
        return sum(len(op.data) for op in self.ops if isinstance(op, Literal))

    @property
    def copied_bytes(self) -> int:
        return self.size - self.literal_bytes

    @property
    def worth_it(self) -> bool:
        return self.literal_bytes <= WORTH * self.size


def block_size(size: int) -> int:
    """About sqrt(size) (rsync's rule), as a power of two between 1 KiB and 64 KiB: a
    29 MB binary gets 4 KiB blocks (7,056 of them)."""
    side = max(1, int(size ** 0.5))
    return min(64 << 10, max(1 << 10, 1 << round(math.log2(side))))


def encode(base: bytes, new: bytes, block: int | None = None) -> Encoded:
    """The ops that rebuild `new` from `base`."""
    # (numpy is imported here, not at the top: the CLI's other commands never pay for it)
    from syncd.core.blockmatch import match

    block = block or block_size(len(base))
    ops: list[Op] = []
    lit = 0  # where the bytes not yet covered start
    for at, hit in match(base, new, block):
        if at > lit:
            ops.append(Literal(new[lit:at]))
        last = ops[-1] if ops else None
        if isinstance(last, Copy) and last.block + last.count == hit and at == lit:
            ops[-1] = Copy(last.block, last.count + 1)  # runs merge: one dd per run
        else:
            ops.append(Copy(hit, 1))
        lit = at + block
    if lit < len(new):
        ops.append(Literal(new[lit:]))
    return Encoded(block, tuple(ops), len(new))


def apply(base: bytes, encoded: Encoded) -> bytes:
    """Rebuild the new version (what the container's dd loop does; the tests' oracle)."""
    out = bytearray()
    for op in encoded.ops:
        if isinstance(op, Copy):
            out += base[op.block * encoded.block: (op.block + op.count) * encoded.block]
        else:
            out += op.data
    return bytes(out)


def literal_pieces(data: bytes, limit: int) -> Iterator[bytes]:
    """A literal cut into pieces of at most `limit` bytes (one `dd` read each)."""
    for at in range(0, len(data), limit):
        yield data[at: at + limit]

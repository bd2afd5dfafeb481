"""How a push's bytes travel — raw, gzip-compressed, or as a block delta — decided as data.

Compression and deltas cost CPU on both sides; they pay only when the channel is slower than
that work. The costs below were measured on a 2-core machine (tests/test_delta.py prints the
encoder's; `python -m benchmarks --only delta` the rest): a rate above which the plain bytes
arrive sooner than the smaller ones could be produced. `auto` compares them with the
throughput syncd measured on that channel (a probe before a large push, and the pushes it
made that were not mostly small files); an unmeasured channel is taken as fast (nothing is
slower than before: loopback keeps sending raw).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Setting = Literal["auto", "always", "never"]

# Seconds per byte of file a delta costs: encoding on the host (10-25 ms/MB when most of the
# file matches; up to ~130 ms/MB for a small binary whose relocations changed everywhere, on
# the 2-core machine the benchmark ran on: the first estimate, then what encodes measure) plus
# the container hashing its base and the result (sha1sum, ~2 x 3 ms/MB) and the round trips.
DELTA_COST = 50e-3 / 1e6
CONTAINER_COST = 10e-3 / 1e6
# gzip -1 on the host (~25 ms/MB on text, less on incompressible data) plus gzip -d.
GZIP_COST = 30e-3 / 1e6
GZIP_LEVEL = 1  # the fastest level: most of the gain for a fifth of the time of -6
MEASURE_MIN = 512 << 10  # pushes smaller than this say more about latency than throughput
# ... and pushes of files smaller than this on average say more about the container creating
# them: 1,000 files of 1 KiB into 10 local replicas took ~0.3 s each (their tar's work on a
# 2-core machine), which read as a 3 MB/s channel and turned gzip on for a local engine.
FILE_BYTES_MIN = 64 << 10
PROBE_BYTES = 512 << 10  # an unmeasured channel is measured with this much before a large push
PROBE_FOR = 4 << 20  # ... of at least this many bytes (smaller ones go raw: little to gain)


# The raw send must be this many times slower than the work that would replace it: the costs
# are estimates and a busy machine does the work slower, while a LAN must never get slower.
MARGIN = 2.0


def pays(setting: Setting, throughput: float | None, cost_per_byte: float) -> bool:
    """Does spending `cost_per_byte` seconds per byte pay on a channel of `throughput` bytes/s?"""
    if setting != "auto":
        return setting == "always"
    return throughput is not None and throughput > 0 and 1 / throughput > MARGIN * cost_per_byte


@dataclass
class Cost:
    """Seconds per byte some work took here, as measured (a moving average), from an estimate."""

    per_byte: float

    def observe(self, nbytes: int, seconds: float) -> None:
        if nbytes >= MEASURE_MIN and seconds > 0:
            self.per_byte = 0.5 * self.per_byte + 0.5 * seconds / nbytes


@dataclass
class Throughput:
    """The channel's rate as large pushes (and probes) measured it: the highest seen. A push
    also pays the container's own work and the round trip, so each sample is a floor of what
    the channel carries; the best of them is the closest."""

    rate: float | None = None

    def observe(self, nbytes: int, seconds: float, files: int = 0) -> None:
        """A push of `nbytes` (of `files` files, 0: a probe) took `seconds`."""
        if nbytes < MEASURE_MIN or seconds <= 0 or (files and nbytes / files < FILE_BYTES_MIN):
            return
        self.rate = max(self.rate or 0.0, nbytes / seconds)

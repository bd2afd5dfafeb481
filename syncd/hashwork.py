"""Hash files in a helper process while the scan walks on: the second core's share of a cold scan.

A first scan of 100,000 small files spends about half its time hashing (open, read, sha1,
close: ~8 us a file) and the rest walking (lstat, ignore rules, the entries). On one thread the
two add up; in a thread of the same process they would fight for the GIL at every system
call. So `Hasher` starts this very file as a script (`python -I -S`: no site, no imports of
syncd; ~20 ms) and feeds it paths as the walk finds them; it answers each with a status byte
and the raw digest, in order. The walk and the hashing then overlap on two cores.

The wire: paths in, each `surrogateescape`-encoded and NUL-terminated; out, 21 bytes per path:
`OK` + the 20-byte SHA-1, `GONE` (it vanished, or a directory in its path did) + zeros, or
`FAILED` + zeros for any other error — the caller hashes that one itself, to raise the real
error against its path. A digest is of the bytes read, as `scan.sha1_file` returns: what the
stat taken before it vouches for is proven later (syncd/hosttar.py), as for a digest computed
in-process.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading

OK, GONE, FAILED = 0, 1, 2
ANSWER = 21  # status byte + raw SHA-1
_CHUNK = 1 << 20


class Hasher:
    """One helper process. `submit` paths (from one thread), then `results()` once: the
    answers in submission order, as (status, raw digest)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-I", "-S", __file__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        self._out = bytearray()
        self._sent = 0
        self._pending: list[bytes] = []
        # (read on a thread of its own, in 1 MiB reads: the pipe never fills while paths are
        # still being written, and a read per ~50,000 answers costs the GIL nothing)
        self._reader = threading.Thread(target=self._read, name="hash helper", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while data := os.read(fd, _CHUNK):
            self._out += data

    def submit(self, path: str) -> None:
        self._pending.append(path.encode("utf-8", "surrogateescape") + b"\0")
        self._sent += 1
        if len(self._pending) >= 256:
            self._flush()

    def _flush(self) -> None:
        assert self._proc.stdin is not None
        if self._pending:
            # (a helper that died leaves its answers missing: they read FAILED, hashed in-process)
            with contextlib.suppress(OSError):
                self._proc.stdin.write(b"".join(self._pending))
            self._pending = []

    def results(self) -> list[tuple[int, bytes]]:
        """Every submitted path's answer, in order. A path the helper did not answer (it
        died) reads FAILED: the caller hashes it itself."""
        self._flush()
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self._reader.join()
        self._proc.wait()
        out, answers = self._out, []
        for i in range(self._sent):
            at = i * ANSWER
            if at + ANSWER <= len(out):
                answers.append((out[at], bytes(out[at + 1:at + ANSWER])))
            else:
                answers.append((FAILED, b""))
        return answers

    def close(self) -> None:
        """Stop the helper without its answers (the scan failed)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._reader.join()


def _serve() -> None:
    """The helper's side: hash each path read from stdin, answer in order."""
    import hashlib

    out, stdin = sys.stdout.buffer, sys.stdin.buffer
    assert isinstance(stdin, io.BufferedReader)
    tail = b""
    answers: list[bytes] = []
    zeros = bytes(20)
    while data := stdin.read1(_CHUNK):
        *paths, tail = (tail + data).split(b"\0")
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                answers.append(bytes([GONE]) + zeros)
                continue
            except OSError:
                answers.append(bytes([FAILED]) + zeros)
                continue
            h = hashlib.sha1()
            try:
                while chunk := os.read(fd, _CHUNK):
                    h.update(chunk)
                answers.append(bytes([OK]) + h.digest())
            except OSError:
                answers.append(bytes([FAILED]) + zeros)
            finally:
                os.close(fd)
        out.write(b"".join(answers))
        out.flush()
        answers = []


if __name__ == "__main__":
    _serve()

"""Streaming tar writer: Puts -> tar bytes, one file at a time, never a whole large file in memory.

Member names are relative to the extraction root (never absolute, never `..`). Files are read
when packed: a file that vanished is left out (the watcher reports its delete); a file that
changes while being read is re-read (small files) or reported as torn so the caller re-sends.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from syncd import hosttar
from syncd.core.manifest import DIR
from syncd.core.mapping import relative_name
from syncd.model import DestPath, Entry, Kind, PackReport, Put

BLOCK = 512
CHUNK = 1 << 20
SMALL = 4 << 20  # files up to this size are read whole, checked, and only then packed


def _header(name: str, kind: Kind, mode: int, mtime: float, size: int = 0, link: str = "") -> bytes:
    """One member's 512-byte GNU tar header, byte for byte what tarfile writes (tested), built
    from a template: tarfile's TarInfo.tobuf costs ~20 µs a member, which a reconcile of
    100,000 files pays once per replica. Long names (GNU ././@LongLink records), huge sizes
    (base-256) and times outside octal fields are left to tarfile."""
    raw = name.encode("utf-8", "surrogateescape")
    if kind is Kind.DIR and not raw.endswith(b"/"):
        raw += b"/"  # (as tarfile names a directory)
    target = link.encode("utf-8", "surrogateescape") if kind is Kind.LINK else b""
    stamp = int(mtime)
    if len(raw) > 100 or len(target) > 100 or not 0 <= stamp < _OCTAL_11 or size >= _OCTAL_11:
        return _tarfile_header(name, kind, mode, mtime, size, link)
    if kind is Kind.DIR:
        flag, size = b"5", 0
    elif kind is Kind.LINK:
        flag, size, mode = b"2", 0, 0o777
    else:
        flag = b"0"
    head = b"".join((raw.ljust(100, b"\0"), b"%07o\0" % (mode & 0o7777), _IDS, b"%011o\0" % size,
                     b"%011o\0" % stamp, b"        ", flag, target.ljust(100, b"\0"), _TAIL))
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


_OCTAL_11 = 8**11  # what an 11-digit octal field holds
_IDS = b"0000000\0" * 2  # uid, gid 0
_TAIL = b"ustar  \0" + b"\0" * 247  # GNU magic and version; owner names, devices: empty


def _tarfile_header(name: str, kind: Kind, mode: int, mtime: float, size: int = 0, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = mode & 0o7777
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if kind is Kind.DIR:
        info.type = tarfile.DIRTYPE
    elif kind is Kind.LINK:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        info.mode = 0o777
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    # GNU format: long names/link targets travel in ././@LongLink records (busybox reads them).
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")


def _unchanged(before: os.stat_result, after: os.stat_result, size: int) -> bool:
    """Nothing wrote to the file between two stats (ctime: any write or chmod sets it)."""
    return (before.st_size == after.st_size == size and before.st_mtime_ns == after.st_mtime_ns
            and before.st_ctime_ns == after.st_ctime_ns and before.st_ino == after.st_ino)


def read_stable(path: str) -> tuple[bytes, os.stat_result] | str | None:
    """Read a small file whole; retry when it changed underneath us. None: vanished;
    "torn": still changing after 3 reads (not sent; the watcher brings it again)."""
    for _ in range(3):
        try:
            with open(path, "rb") as f:
                before = os.fstat(f.fileno())
                data = f.read()
                after = os.fstat(f.fileno())
        except (FileNotFoundError, NotADirectoryError):
            return None
        if _unchanged(before, after, len(data)):
            return data, after
    return "torn"


def pack(puts: Sequence[Put], root: DestPath, report: PackReport, tar_from: int = hosttar.RUN_MIN) -> Iterator[bytes]:
    """Yield the tar stream for `puts` extracted at container directory `root`. Runs of at
    least `tar_from` settled paths are packed by the host's GNU tar (syncd/hosttar.py).

    `report.seconds` counts only the time spent producing chunks, not the consumer's time
    between them (the transport writing to its socket), so `pack` and `push` stay apart."""
    chunks = _pack(puts, root, report, tar_from)
    while True:
        t = time.perf_counter()
        try:
            chunk = next(chunks)
        except StopIteration:
            report.seconds += time.perf_counter() - t
            return
        report.seconds += time.perf_counter() - t
        yield chunk


def _pack(puts: Sequence[Put], root: DestPath, report: PackReport, tar_from: int) -> Iterator[bytes]:
    names = [relative_name(put.dest, root) for put in puts]
    tar = hosttar.gnu_tar() if len(puts) >= tar_from else None
    for start, end, group in hosttar.runs(puts, names, time.time(), tar_from) if tar else [(0, len(puts), None)]:
        if group is not None:
            assert tar is not None
            torn, failed = len(report.torn), len(report.errors)
            yield from hosttar.pack_run(tar, group, puts[start:end], names[start:end], report)
            # What tar may have sent torn, or could not read, goes again as Python reads it (a
            # stable version, or its own error): the later member replaces the earlier one.
            again = set(report.torn[torn:]) | {dest for dest, _, _ in report.errors[failed:]}
            if again:
                del report.torn[torn:], report.errors[failed:]
                for put, name in zip(puts[start:end], names[start:end], strict=True):
                    if put.dest in again:
                        yield from _pack_one(put, name, report)
            continue
        for put, name in zip(puts[start:end], names[start:end], strict=True):
            yield from _pack_one(put, name, report)
    trailer = b"\0" * (2 * BLOCK)
    report.bytes += len(trailer)
    yield trailer


def _pack_one(put: Put, name: str, report: PackReport) -> Iterator[bytes]:
    lf = put.source
    kind = lf.entry.kind
    if kind is not Kind.FILE:
        # Re-check: what is on disk now wins.
        try:
            st = os.lstat(lf.path)
        except (FileNotFoundError, NotADirectoryError):
            report.vanished.append(put.dest)
            return
        if kind is Kind.LINK:
            if not stat.S_ISLNK(st.st_mode):
                report.torn.append(put.dest)
                return
            link = os.readlink(lf.path)
            block = _header(name, kind, 0o777, st.st_mtime, link=link)
            report.sent[put.dest] = Entry(Kind.LINK, link=link)
        else:
            if not stat.S_ISDIR(st.st_mode):
                report.torn.append(put.dest)
                return
            block = _header(name, kind, stat.S_IMODE(st.st_mode), st.st_mtime)
            report.sent[put.dest] = DIR
        report.bytes += len(block)
        yield block
        return
    try:
        if lf.size <= SMALL:
            yield from _pack_small(put, name, report)
        else:
            yield from _pack_large(put, name, report)
    except OSError as e:
        report.errors.append((put.dest, lf.path, e.strerror or str(e)))


def _pad(size: int) -> bytes:
    return b"\0" * ((BLOCK - size % BLOCK) % BLOCK)


def _shared(digest: str, put: Put) -> str:
    """The digest of what was read, as the very string the hash cache gave the put when they
    are equal: every container's manifest then holds one copy per file, not one each."""
    return put.source.entry.digest if digest == put.source.entry.digest else digest


def _pack_small(put: Put, name: str, report: PackReport) -> Iterator[bytes]:
    got = read_stable(put.source.path)
    if got is None:
        report.vanished.append(put.dest)
        return
    if isinstance(got, str):  # "torn"
        report.torn.append(put.dest)
        return
    data, st = got
    if not stat.S_ISREG(st.st_mode):
        report.torn.append(put.dest)
        return
    mode = stat.S_IMODE(st.st_mode)
    block = _header(name, Kind.FILE, mode, st.st_mtime, size=len(data)) + data + _pad(len(data))
    report.sent[put.dest] = Entry(Kind.FILE, digest=_shared(hashlib.sha1(data).hexdigest(), put),
                                  exec=bool(mode & stat.S_IXUSR), size=len(data), mtime=int(st.st_mtime))
    report.bytes += len(block)
    report.files += 1
    yield block


def _snapshot(path: str) -> tuple[IO[bytes], os.stat_result, str] | str | None:
    """Copy a large file to an unnamed temporary file (page cache, not memory), checking
    that nothing wrote to it meanwhile: what is sent is one complete version, never a torn
    one. Returns (spool at offset 0, stat, sha1), None when it vanished, "torn" when it kept
    changing over 3 tries (not sent; the watcher brings it again)."""
    for _ in range(3):
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the `with` below; the open alone may fail
        except (FileNotFoundError, NotADirectoryError):
            return None
        with f:
            before = os.fstat(f.fileno())
            spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
            h = hashlib.sha1()
            n = 0
            while chunk := f.read(CHUNK):
                h.update(chunk)
                spool.write(chunk)
                n += len(chunk)
            after = os.fstat(f.fileno())
        if _unchanged(before, after, n):
            spool.seek(0)
            return spool, after, h.hexdigest()
        spool.close()
    return "torn"


def _pack_large(put: Put, name: str, report: PackReport) -> Iterator[bytes]:
    got = _snapshot(put.source.path)
    if got is None:
        report.vanished.append(put.dest)
        return
    if isinstance(got, str):  # "torn"
        report.torn.append(put.dest)
        return
    spool, st, digest = got
    with spool:
        size, mode = st.st_size, stat.S_IMODE(st.st_mode)
        head = _header(name, Kind.FILE, mode, st.st_mtime, size=size)
        report.bytes += len(head)
        yield head
        while chunk := spool.read(CHUNK):
            report.bytes += len(chunk)
            yield chunk
        tail = _pad(size)
        report.bytes += len(tail)
        yield tail
    report.sent[put.dest] = Entry(Kind.FILE, digest=_shared(digest, put), exec=bool(mode & stat.S_IXUSR), size=size,
                                  mtime=int(st.st_mtime))
    report.files += 1


def stream_size(puts: Iterable[Put]) -> int:
    """About how many bytes `pack` will produce (headers, padded data, trailer): the total a
    progress bar counts towards. Long names add a header each, so treat it as an estimate."""
    return 1024 + sum(member_size(put) for put in puts)


def member_size(put: Put) -> int:
    """About how many bytes one put adds to the stream (its header and padded data)."""
    if put.source.entry.kind is Kind.FILE:
        return 512 + -(-put.source.size // 512) * 512
    return 512

"""Long runs of files packed by the host's C `tar` instead of Python.

Packing a file in Python (open, two fstats, read, sha1, a header) costs ~30 µs; a start-up
reconcile of 100,000 small files into two containers paid it 200,000 times on the event loop's
GIL, where GNU tar on both ends does the same bytes in a fraction. So `syncd/pack.py` hands every
run of at least `RUN_MIN` paths (files, the directories between them, symlinks) that map to the
container by one directory prefix to GNU tar (`tar -c --null -T -`), and splices its archive
(end-of-archive blocks dropped) into the stream it writes itself.

What was sent is proven, not assumed: the scan hashed each file from a stat it kept
(`LocalFile`: size, mtime, ctime). After tar is done, each file is stat'ed again; equal size,
mtime and ctime mean nothing wrote to it (or replaced or chmod'ed it: those move ctime) between
the hash and tar's read, so the container got exactly the bytes of that digest. A file that
moved is reported torn and one tar could not read an error (tar's words); `pack` then packs
both again in Python right after the run (a stable read, or its own error), and extraction
keeps that later member: tar's possibly torn copy never stays. One that is gone is vanished.

Recent files: the kernel stamps ctime from a coarse clock (a few ms), so a write in the same
tick as the change before it leaves ctime as it was. A file whose ctime is at least `SETTLED`
seconds older than the moment its run is cut cannot be written in its last change's tick
while tar reads it; younger ones are packed in Python, which hashes exactly what it read.

Only GNU tar is used (`--transform`, `--hard-dereference`, `--verbatim-files-from`); elsewhere
(bsdtar on macOS) everything is packed in Python as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from functools import cache
from stat import S_IFDIR as _S_IFDIR
from stat import S_IFLNK as _S_IFLNK
from stat import S_IFREG as _S_IFREG

from syncd.core.manifest import DIR
from syncd.model import Entry, Kind, PackReport, Put

# A run shorter than this is packed in Python: starting tar costs ~2 ms, ~70 small files' worth.
RUN_MIN = 256
# A file whose ctime is this recent is packed in Python (see "Recent files" above).
SETTLED = 1.0
_READ = 1 << 20
_BATCH = 64 << 10
_S_IFMT = 0o170000  # (stat.S_IFMT is a function)
_EOF = b"\0" * 1024  # the end-of-archive marker: two zero blocks (tar's blocking factor 1 adds no more)
_F_SETPIPE_SZ = 1031  # (fcntl.F_SETPIPE_SZ, Python 3.10+ on Linux)


@cache
def gnu_tar() -> str | None:
    """The host's GNU tar, or None (absent, or another tar)."""
    tar = shutil.which("tar")
    if tar is None:
        return None
    try:
        out = subprocess.run([tar, "--version"], capture_output=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tar if b"GNU tar" in out else None


Group = tuple[str, str]  # (local directory tar runs in, the members' prefix under the extraction root)


def group_of(path: str, name: str) -> Group | None:
    """How a file at local `path` becomes member `name` through tar: `tar -C base` with the
    name's leading directories as a prefix. None when even the file's own name differs (a
    single-file sync that renames it): Python packs that one."""
    head, _, base = path.rpartition("/")
    dirs, _, last = name.rpartition("/")
    if last != base:
        return None
    # Strip common trailing directories: the fewer distinct prefixes, the longer the runs.
    while dirs and head:
        d_head, _, d_last = dirs.rpartition("/")
        h_head, _, h_last = head.rpartition("/")
        if d_last != h_last or not h_head:
            break
        dirs, head = d_head, h_head
    return (head or "/", dirs)


def runs(puts: Sequence[Put], names: Sequence[str], now: float,
         minimum: int = RUN_MIN) -> list[tuple[int, int, Group | None]]:
    """`puts` cut into consecutive runs: (start, end, group) where group is None for a run
    Python packs: not files, renamed, too short to be worth a tar, or changed within `SETTLED`
    seconds of `now` (wall clock), as the proof needs (module text, "Recent files")."""
    out: list[tuple[int, int, Group | None]] = []
    groups: dict[tuple[str, str], Group | None] = {}  # per (local dir, member dir): one computation
    start, current = 0, None
    for i, (put, name) in enumerate(zip(puts, names, strict=True)):
        group = None
        if put.source.ctime < now - SETTLED:  # (files, the directories between them, symlinks)
            key = (put.source.path.rpartition("/")[0], name.rpartition("/")[0])
            if key not in groups:
                groups[key] = group_of(put.source.path, name)
            group = groups[key]
        if i and group != current:
            out.append((start, i, current))
            start = i
        current = group
    if puts:
        out.append((start, len(puts), current))
    # Runs too short for tar join their Python neighbours.
    merged: list[tuple[int, int, Group | None]] = []
    for start, end, group in out:
        if group is not None and end - start < minimum:
            group = None
        if merged and group is None and merged[-1][2] is None:
            merged[-1] = (merged[-1][0], end, None)
        else:
            merged.append((start, end, group))
    return merged


def _transform(prefix: str) -> str:
    """A `--transform` expression that puts `prefix/` before every member name."""
    escaped = prefix.replace("\\", "\\\\").replace("&", "\\&").replace("|", "\\|")
    return f"s|^|{escaped}/|SH"  # (S, H: member names only, not link targets)


def pack_run(tar: str, group: Group, puts: Sequence[Put], names: Sequence[str], report: PackReport) -> Iterator[bytes]:
    """The members of `puts` (files, directories, symlinks; all of `group`) as tar packs them, without its
    end-of-archive marker; `report` then says what was proven sent (see the module's text).
    A tar that ended without a whole archive raises OSError: the stream is broken and the
    transport drops the batch (the worker reconciles)."""
    base, prefix = group
    cut = len(prefix) + 1 if prefix else 0
    tails = [name[cut:] for name in names]
    argv = [tar, "-c", "-f", "-", "-b", "1", "--format=gnu", "--no-recursion", "--hard-dereference",
            "--numeric-owner", "--owner=0", "--group=0"]
    if prefix:
        argv += ["--transform", _transform(prefix)]
    argv += ["--quoting-style=literal", "-C", base, "--null", "--verbatim-files-from", "-T", "-"]
    listing = b"".join(t.encode("utf-8", "surrogateescape") + b"\0" for t in tails)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                env={**os.environ, "LC_ALL": "C"})
        assert proc.stdin is not None and proc.stdout is not None
        writer = threading.Thread(target=_feed, args=(proc.stdin, listing), daemon=True)
        writer.start()
        fd = proc.stdout.fileno()
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, _READ)  # fewer, larger reads
        tail = b""
        try:
            while data := os.read(fd, _READ):
                if len(data) < _BATCH:  # tar writes a block at a time: let some gather (fewer wakeups)
                    time.sleep(0.001)
                data = tail + data if tail else data
                tail = data[-len(_EOF):]
                out = data[:-len(_EOF)]
                if out:
                    report.bytes += len(out)
                    yield out
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            writer.join()
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace")
    if tail != _EOF:
        raise OSError(f"host tar ended with {code} without a whole archive: {said.strip()[-500:]}")
    # exit 1: a file changed while read (the stats below catch it); 2: some could not be read
    _account(puts, tails, _failed(tar, said, tails) if code >= 2 else {}, report)


def _feed(stdin, listing: bytes) -> None:  # noqa: ANN001 - a pipe
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.write(listing)
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.close()


def _failed(tar: str, said: str, tails: Sequence[str]) -> dict[str, str]:
    """Member (tail) -> tar's own words for the files it named in an error; "" -> its words
    when a line named none of them (then no file of the run counts as proven sent)."""
    wanted = set(tails)
    out: dict[str, str] = {}
    for line in said.splitlines():
        rest = line.removeprefix(tar + ": ")
        if rest == line or rest.startswith("Exiting with failure"):
            continue
        at = rest.find(": ")
        while at != -1 and rest[:at] not in wanted:
            at = rest.find(": ", at + 2)
        if at == -1:
            out.setdefault("", rest)
        else:
            out[rest[:at]] = rest[at + 2:]
    return out


def _account(puts: Sequence[Put], tails: Sequence[str], failed: dict[str, str], report: PackReport) -> None:
    """Record each file as sent, torn, vanished or an error, by its stat now against the
    scan's (equal: nothing touched it between the hash and tar's read)."""
    # (per file at 100,000 files a replica, one pass after tar: locals, a single lookup of `failed`
    # when tar named none, the mode's type bits tested inline, the entry built by position)
    sent, torn, lstat = report.sent, report.torn, os.lstat
    k_file, k_dir, k_link = Kind.FILE, Kind.DIR, Kind.LINK
    failed_all = failed.get("")
    files = 0
    for put, tail in zip(puts, tails, strict=True):
        lf = put.source
        try:
            st = lstat(lf.path)
        except (FileNotFoundError, NotADirectoryError):
            report.vanished.append(put.dest)
            continue
        if failed:
            why = failed.get(tail, failed_all)
            if why is not None:
                report.errors.append((put.dest, lf.path, f"host tar: {why}"))
                continue
        entry = lf.entry
        kind = entry.kind
        fmt = st.st_mode & _S_IFMT
        if kind is k_dir:  # (what the scan saw of a directory is only that it was one)
            if fmt == _S_IFDIR:
                sent[put.dest] = DIR
            else:
                torn.append(put.dest)
        elif st.st_mtime != lf.mtime or st.st_ctime != lf.ctime:
            torn.append(put.dest)
        elif kind is k_file:
            if fmt == _S_IFREG and st.st_size == lf.size:
                sent[put.dest] = Entry(k_file, entry.digest, entry.exec, "", lf.size, int(lf.mtime))
                files += 1
            else:
                torn.append(put.dest)
        elif kind is k_link and fmt == _S_IFLNK:
            sent[put.dest] = entry
        else:
            torn.append(put.dest)
    report.files += files

"""The hot channel: one long-lived exec per container that carries every request.

A fresh exec costs tens of milliseconds on Docker and far more through a Kubernetes API
server. The session pays that once: the container runs SESSION_SCRIPT (POSIX sh: busybox
ash, dash and bash), which reads framed requests from stdin and answers on stdout:

    request:  "<seq> <op> <arg>...\\n"  (args `printf %b`-escaped, so no spaces inside)
              apply  ROOT   + deletes (escaped lines, empty line) + framed tar ("<n>\\n"+n bytes…, "0\\n")
              applyz ROOT   the same, the tar stream gzip-compressed
              manifest MODE DEST…   (MODE: stat, quick; hash)
              fingerprint MODE DEST…   the sha1 of what `manifest` would print, not the listing
              links  + framed NUL-separated paths    (a quick listing's symlinks' targets)
              define N + N bytes of sh function definitions (loaded on first use: Kubernetes
                     caps the exec URL the script travels in at 8 KiB)
              patch  ROOT NAME BLOCK BASE RESULT MODE MTIME + guard section + ops (transports/patch.py)
              run    CMD
              ping
    answer:   "@@R <seq> <rc> <len>\\n" + <len> bytes of output          (apply, run, ping)
              "@@S <seq>\\n" + NUL-separated listing + "\\0@@E <seq> <rc>\\0\\n"   (manifest)
              where gzip and base64 work, a manifest's listing is "@@Z\\n" + base64 of the
              gzipped listing + "\\0@@RC <rc>\\0" (`unpacked_listing`): 8-11x fewer bytes
              on the link (20,000 files: 1.5 MB -> 190 KB)

Payload bytes are read by `dd bs=n count=1 iflag=fullblock`, which never reads past a
frame, so a failing request (tar error, bad root) still consumes exactly its own payload
and the next request starts in sync: per-request errors never kill the session.
Nothing is written in the container outside the requested destinations.
"""

from __future__ import annotations

import binascii
import contextlib
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from syncd.settings import SessionSettings
from syncd.transports.base import ContainerRef, TransportError
from syncd.transports.patch import PATCH_REQ
from syncd.transports.shell import GUARD, GUNZIP_FAILED, MANIFEST_ONE, encode_head, escape_name, frame_chunks, gzipped

log = structlog.get_logger("syncd.session")

SESSION_SCRIPT = r"""# syncd-session: applies syncd's batches; ends when syncd disconnects
LC_ALL=C; export LC_ALL
# What the session needs beyond sh builtins; without it, syncd uses one exec per batch.
[ "$(printf ab | dd bs=2 count=1 iflag=fullblock 2>/dev/null)" = ab ] ||
  { echo "@@X dd with iflag=fullblock is missing"; exit 0; }
command -v tar >/dev/null 2>&1 || { echo "@@X tar is missing"; exit 0; }
@GUARD@
apply_req() {
  if mkdir -p -- "$1" 2>&1 && cd -- "$1"; then ok=1; else ok=0; fi
  if [ $ok = 1 ]; then guard_dirs; else while IFS= read -r l && [ -n "$l" ]; do :; done; fi
  while IFS= read -r l && [ -n "$l" ]; do case /$l/ in */../*) ;; *) printf '%b\0' "$l" ;; esac; done |
    { if [ $ok = 1 ]; then xargs -0 -r rm -rf --; else cat >/dev/null; fi; }
  while IFS= read -r n && [ "$n" -gt 0 ]; do dd bs="$n" count=1 iflag=fullblock 2>/dev/null; done |
    { if [ $ok = 1 ]; then tar -xof -; else cat >/dev/null; false; fi; }
}
gzfail="@GZFAIL@"
echo "@@READY 1"
while IFS= read -r req; do
  set -f; set -- $req; set +f
  seq=$1; op=$2; shift 2
  case $op in
  ping) printf '@@R %s 0 0\n' "$seq" ;;
  apply)
    out=$(apply_req "$(printf '%b' "$1")" 2>&1); rc=$?
    printf '@@R %s %s %s\n%s' "$seq" "$rc" "${#out}" "$out" ;;
  manifest) printf '@@S %s\n' "$seq"; manifest_req "$@"; printf '\0@@E %s %s\0\n' "$seq" "$?" ;;
  links) printf '@@S %s\n' "$seq"; links_req; printf '\0@@E %s %s\0\n' "$seq" "$?" ;;
  fingerprint) printf '@@S %s\n' "$seq"; fingerprint_req "$@"; printf '\0@@E %s %s\0\n' "$seq" "$?" ;;
  hash)
    printf '@@S %s\n' "$seq"
    ( cd / && while IFS= read -r n && [ "$n" -gt 0 ]; do dd bs="$n" count=1 iflag=fullblock 2>/dev/null; done |
        xargs -0 -r sha1sum ); rc=$?
    printf '\0@@E %s %s\0\n' "$seq" "$rc" ;;
  applyz)
    out=$(tar() { { gzip -dc || echo "$gzfail" >&2; } | command tar "$@"; }; apply_req "$(printf '%b' "$1")" 2>&1); rc=$?
    printf '@@R %s %s %s\n%s' "$seq" "$rc" "${#out}" "$out" ;;
  define) eval "$(dd bs="$1" count=1 iflag=fullblock 2>/dev/null)"; printf '@@R %s 0 0\n' "$seq" ;;
  patch)
    out=$(patch_req "$(printf '%b' "$1")" "$(printf '%b' "$2")" "$3" "$4" "$5" "$6" "$7" 2>&1); rc=$?
    printf '@@R %s %s %s\n%s' "$seq" "$rc" "${#out}" "$out" ;;
  run)
    out=$(sh -c "$(printf '%b' "$1")" 2>&1 </dev/null); rc=$?
    printf '@@R %s %s %s\n%s' "$seq" "$rc" "${#out}" "$out" ;;
  exit) exit 0 ;;
  *) printf '@@R %s 2 15\nunknown request' "$seq" ;;
  esac
done
"""
# What `manifest` runs, defined on first use (`define`: the session script itself travels in
# Kubernetes' exec URL). The listing crosses gzipped and as base64 where both work (see
# `unpacked_listing`); the probe runs once per session, its complaints silenced.
LISTING_FUNCS = r"""
manifest_one() {
@MANIFEST_ONE@
}
list_all() { rc=0; for a; do manifest_one "$(printf '%b' "$a")" "$mode" </dev/null || rc=$?; done; return $rc; }
manifest_req() {
  mode=$1; shift
  [ -n "$lz" ] || { lz=$({ echo ok | gzip -1 | base64 | base64 -d | gzip -dc; } 2>/dev/null)
                    [ "$lz" = ok ] && lz=1 || lz=0; }
  if [ $lz = 1 ]; then printf '@@Z\n'; { list_all "$@"; printf '\0@@RC %s\0' $?; } | gzip -1 | base64
  else list_all "$@"; fi
}
# (the listing's exit code is part of what is digested: shell.listing_fingerprint)
fingerprint_req() { mode=$1; shift; { list_all "$@"; printf '\0@@RC %s\0' $?; } | sha1sum; }
links_req() {
  printf '@@M\0/\0@@L\0'
  ( cd / && while IFS= read -r n && [ "$n" -gt 0 ]; do dd bs="$n" count=1 iflag=fullblock 2>/dev/null; done |
      xargs -0 -r sh -c 'for l; do printf "%s\0%s\0" "$l" "$(readlink "$l")"; done' sh )
}
""".replace("@MANIFEST_ONE@", MANIFEST_ONE)
SESSION_SCRIPT = (SESSION_SCRIPT.replace("@GZFAIL@", GUNZIP_FAILED)
                  .replace("@GUARD@", GUARD.strip())
)



class Channel(Protocol):
    """A byte pipe to the session process (an exec's stdin/stdout)."""

    def send(self, data: bytes) -> None: ...

    def recv(self) -> bytes:
        """The next bytes of stdout; b"" when the exec has ended."""
        ...

    def close(self) -> None: ...


class SessionError(Exception):
    """The session is gone (process killed, container restarted, connection dropped)."""


class SessionUnavailable(Exception):
    """The session cannot run in this container; `reason` says why (use per-batch exec)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class Answer:
    seq: int
    rc: int
    output: bytes


LISTING_ZIPPED = b"@@Z\n"
_LISTING_RC = re.compile(rb"\0@@RC (-?\d+)\0\Z")


def unpacked_listing(answer: Answer) -> Answer:
    """A manifest's answer with its listing as the container printed it. The session gzips a
    listing where it can (a quick one is ~75 bytes a file: 7.5 MB at 100,000 files, seconds
    on a 10-100 Mbit/s link) and sends it as base64, which cannot hold the answer's NUL-led end
    marker; the listing's exit code then travels inside the compressed stream."""
    if not answer.output.startswith(LISTING_ZIPPED):
        return answer
    try:
        raw = zlib.decompress(binascii.a2b_base64(answer.output[len(LISTING_ZIPPED):]), wbits=31)
    except (binascii.Error, zlib.error) as e:
        return Answer(answer.seq, 1, f"the container's compressed listing is damaged ({e})".encode())
    end = _LISTING_RC.search(raw)
    if end is None:
        return Answer(answer.seq, 1, b"the container's compressed listing ends early (gzip failed?)")
    return Answer(answer.seq, int(end.group(1)), raw[: end.start()])


class Session:
    """Requests go out in order under a lock; a reader thread matches answers to requests by
    sequence number, so several requests can be in flight (pipelining)."""

    def __init__(self, channel: Channel, label: str, settings: SessionSettings | None = None) -> None:
        self.channel = channel
        self.label = label
        self.settings = settings or SessionSettings()
        self._send_lock = threading.Lock()
        self._seq = 0
        self._pending: dict[int, Future[Answer]] = {}
        self._pending_lock = threading.Lock()
        self._buf = bytearray()
        self._searched = 0  # how far a streamed answer's end marker was looked for already
        self._closed = threading.Event()
        self.error: str = ""
        self.last_activity = time.monotonic()
        self._ready: Future[str] = Future()
        self._patch_defined = False
        self._listing_defined = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name=f"session {label}")
        self._reader.start()
        self._keepalive = threading.Thread(target=self._keepalive_loop, daemon=True, name=f"keepalive {label}")

    # --- life cycle ------------------------------------------------------------------------

    def wait_ready(self) -> None:
        try:
            verdict = self._ready.result(self.settings.ready_timeout)
        except TimeoutError:
            self.close("no answer from the session script")
            raise SessionUnavailable("the session script did not start (odd shell?)") from None
        if verdict != "ready":
            self.close(verdict)
            raise SessionUnavailable(verdict)
        self._keepalive.start()

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def close(self, why: str = "closed") -> None:
        if self._closed.is_set():
            return
        self.error = why
        self._closed.set()
        with contextlib.suppress(OSError):
            self.channel.close()
        if not self._ready.done():
            self._ready.set_result(why)
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(SessionError(why))

    # --- requests --------------------------------------------------------------------------

    def request(self, op: str, args: Iterable[str] = (), payload: Iterable[bytes] = ()) -> Future[Answer]:
        """Send one request (and its payload, streamed); the future resolves with the answer."""
        if self._closed.is_set():
            raise SessionError(self.error or "session closed")
        with self._send_lock:
            self._seq += 1
            seq = self._seq
            fut: Future[Answer] = Future()
            with self._pending_lock:
                self._pending[seq] = fut
            line = " ".join([str(seq), op, *(escape_name(a).decode() for a in args)]) + "\n"
            try:
                self.channel.send(line.encode())
                for chunk in payload:
                    self.channel.send(chunk)
                    self.last_activity = time.monotonic()  # bytes moving: a big apply is not stalled
            except Exception as e:
                self.close(f"connection lost while sending ({type(e).__name__}: {e})")
                raise SessionError(self.error) from None
            self.last_activity = time.monotonic()
        return fut

    def apply(self, root: str, deletes: list[str], tar: Iterator[bytes],
              guard: Sequence[str] = (), gzip: int = 0) -> tuple[Future[Answer], Callable[[], int]]:
        """Delete, then extract the tar stream; `gzip` > 0: compressed at that level on the
        way (request `applyz`: the container's tar reads through gzip -d)."""
        sent = 0

        def payload() -> Iterator[bytes]:
            nonlocal sent
            head = encode_head(list(guard), deletes)
            sent += len(head)
            yield head
            for piece in _frames(gzipped(tar, gzip) if gzip else tar):  # streamed: never the whole batch in memory
                sent += len(piece)
                yield piece

        fut = self.request("applyz" if gzip else "apply", [root], payload())
        return fut, lambda: sent

    def patch(self, args: list[str], stream: Iterator[bytes]) -> tuple[Future[Answer], Callable[[], int]]:
        """Rebuild one file from a block delta (syncd/transports/patch.py); its ops are read
        by byte count, like the frames of an apply."""
        sent = 0
        if not self._patch_defined:  # patch_req is loaded on first use (see `define`)
            text = PATCH_REQ.encode()
            self.request("define", [str(len(text))], [text])
            self._patch_defined = True

        def payload() -> Iterator[bytes]:
            nonlocal sent
            for piece in stream:
                sent += len(piece)
                yield piece

        return self.request("patch", args, payload()), lambda: sent

    def probe(self, nbytes: int) -> Future[Answer]:
        """`nbytes` the container reads and drops (a `define` of a shell comment): timing
        its answer measures the channel (syncd/core/transfer.py)."""
        return self.request("define", [str(nbytes)], [b"#" + b"x" * max(0, nbytes - 2) + b"\n"])

    def manifest(self, dests: list[str], quick: bool = True) -> Future[Answer]:
        """List the destinations; `quick`: files with size and mtime instead of a hash, and
        symlinks without their targets (shell.UNREAD_LINK: ask `links` for them)."""
        self._define_listing()
        return self.request("manifest", ["stat" if quick else "hash", *dests])

    def fingerprint(self, dests: list[str]) -> Future[Answer]:
        """sha1sum of the quick listing of the destinations, as `manifest` would print it
        (shell.listing_fingerprint), instead of the listing: ~0.3 MB less on the link at
        100,000 files, and nothing to parse."""
        self._define_listing()
        return self.request("fingerprint", ["stat", *dests])

    def links(self, paths: list[str]) -> Future[Answer]:
        """The targets of symlinks (absolute container paths): a listing of "/" whose links
        section holds them."""
        self._define_listing()
        return self.request("links", [], _frames(iter([_as_data(paths)])))

    def hash(self, paths: list[str]) -> Future[Answer]:
        """sha1sum of absolute container paths."""
        return self.request("hash", [], _frames(iter([_as_data(paths)])))

    def _define_listing(self) -> None:
        if not self._listing_defined:  # loaded on first use (see LISTING_FUNCS)
            text = LISTING_FUNCS.encode()
            self.request("define", [str(len(text))], [text])
            self._listing_defined = True

    def run(self, command: str) -> Future[Answer]:
        return self.request("run", [command])

    def ping(self) -> Future[Answer]:
        return self.request("ping")

    # --- answers ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                data = self.channel.recv()
                if not data:
                    self.close("the session ended (process gone or container restarted)")
                    return
                self._buf += data
                self.last_activity = time.monotonic()
                self._parse()
        except Exception as e:
            self.close(f"connection lost ({type(e).__name__}: {e})")

    _READY = re.compile(rb"@@(READY|X)( [^\n]*)?\n")
    _RESULT = re.compile(rb"@@R (\d+) (-?\d+) (\d+)\n")
    _STREAM = re.compile(rb"@@S (\d+)\n")

    def _parse(self) -> None:
        while self._buf:
            if not self._ready.done():
                m = self._READY.search(self._buf)
                if m is None:
                    return
                # (take groups before mutating: a match over a bytearray reads it live)
                verdict = "ready" if m.group(1) == b"READY" else (m.group(2) or b"").decode().strip()
                del self._buf[: m.end()]
                self._ready.set_result(verdict)
                continue
            if self._buf.startswith(b"@@R "):
                m = self._RESULT.match(self._buf)
                if m is None:
                    if b"\n" in self._buf:
                        raise ValueError(f"bad answer header {bytes(self._buf[:60])!r}")
                    return
                seq, rc, size, start = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.end()
                if len(self._buf) < start + size:
                    return
                output = bytes(self._buf[start : start + size])
                del self._buf[: start + size]
                self._searched = 0
                self._resolve(Answer(seq, rc, output))
            elif self._buf.startswith(b"@@S "):
                m = self._STREAM.match(self._buf)
                if m is None:
                    return
                seq_bytes, start = m.group(1), m.end()
                # A 100,000-file listing arrives in hundreds of reads: look for the end marker
                # only in what is new (less the marker's length), never the whole buffer again.
                end = re.compile(rb"\0@@E " + seq_bytes + rb" (-?\d+)\0\n").search(
                    self._buf, max(start, self._searched - 64))
                if end is None:
                    self._searched = len(self._buf)
                    return
                rc, stop, after = int(end.group(1)), end.start(), end.end()
                output = bytes(self._buf[start:stop])
                del self._buf[:after]
                self._searched = 0
                self._resolve(unpacked_listing(Answer(int(seq_bytes), rc, output)))
            else:
                # Anything else is noise from the shell (e.g. a warning): skip to the next answer.
                nxt = min((i for i in (self._buf.find(b"@@R "), self._buf.find(b"@@S ")) if i > 0), default=-1)
                if nxt < 0:
                    return
                del self._buf[:nxt]
                self._searched = 0

    def _resolve(self, answer: Answer) -> None:
        with self._pending_lock:
            fut = self._pending.pop(answer.seq, None)
        if fut is not None and not fut.done():
            fut.set_result(answer)

    # --- keep-alive ------------------------------------------------------------------------

    def _keepalive_loop(self) -> None:
        """Ping when idle, so a silently dead connection is noticed within seconds. With a
        request in flight nothing is pinged (it has its own timeout), but a request that moved
        no byte either way for `keepalive_every` is reported, once, and its recovery too: on a
        stalled link the user learns why nothing arrives. Sleeps between checks: no polling on
        either side."""
        every, timeout = self.settings.keepalive_every, self.settings.keepalive_timeout
        stalled = False
        while not self._closed.wait(every):
            quiet = time.monotonic() - self.last_activity
            if stalled and quiet < every:
                stalled = False
                log.info("moving again", container=self.label)
            if self._pending:
                if quiet >= every and not stalled:
                    stalled = True
                    log.warning("no progress", container=self.label, seconds=round(quiet, 1),
                                hint="a request is in flight but no byte moved: the link to the container is "
                                     "stalled or a command there is slow; syncd keeps waiting (up to "
                                     f"{self.settings.answer_timeout:.0f} s), then reconnects and sends again")
                continue
            if quiet < every:
                continue
            try:
                self.ping().result(timeout)
            except TimeoutError:
                self.close(f"no keep-alive answer within {timeout:.0f}s")
            except SessionError:
                return


def _as_data(paths: list[str]) -> bytes:
    """Absolute container paths as `hash` and `links` read them: "./<path without the slash>",
    NUL-separated (run from "/")."""
    return b"".join(b"./" + p.lstrip("/").encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def _frames(tar: Iterator[bytes]) -> Iterator[bytes]:
    return frame_chunks(tar)


class ProcessChannel:
    """The session script in a local process (tests run it under dash, bash and busybox)."""

    def __init__(self, argv: list[str]) -> None:
        import subprocess

        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(1 << 16)  # type: ignore[attr-defined]  # a BufferedReader (stdout=PIPE)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()


class SessionPool:
    """One session per container generation, opened on first use. Where the session cannot
    run, the container is remembered as per-exec (said once in the log and in status)."""

    def __init__(self, opener: Callable[[ContainerRef], Channel], on_fallback: Callable[[ContainerRef, str], None],
                 settings: SessionSettings | None = None) -> None:
        self._opener = opener
        self._on_fallback = on_fallback
        self.settings = settings or SessionSettings()
        self._sessions: dict[str, Session] = {}
        self.fallback: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, ref: ContainerRef) -> Session | None:
        """The live session for `ref`, opening one if needed; None: use per-exec."""
        key = ref.generation
        with self._lock:
            if key in self.fallback:
                return None
            session = self._sessions.get(key)
            if session is not None and session.alive:
                return session
            session = Session(self._opener(ref), ref.label, self.settings)
            try:
                session.wait_ready()
            except SessionUnavailable as e:
                self.fallback[key] = e.reason
                self._on_fallback(ref, e.reason)
                return None
            self._sessions[key] = session
            return session

    def open_session(self, ref: ContainerRef) -> Session | None:
        session = self._sessions.get(ref.generation)
        return session if session is not None and session.alive else None

    def drop(self, ref: ContainerRef, why: str) -> None:
        with self._lock:
            session = self._sessions.pop(ref.generation, None)
        if session is not None:
            session.close(why)

    def mode(self, ref: ContainerRef) -> str:
        if ref.generation in self.fallback:
            return f"per-exec ({self.fallback[ref.generation]})"
        session = self._sessions.get(ref.generation)
        return "session" if session is not None and session.alive else "no session yet"

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            s.close("daemon stopping")


def say_fallback(ref: ContainerRef, reason: str) -> None:
    log.warning("no session; one exec per batch", container=ref.label, reason=reason,
                hint="works, but each batch pays an exec round trip; add dd (with iflag=fullblock) and tar to the image")


async def call(pool: SessionPool | None, ref: ContainerRef, send: Callable[..., Future[Answer]], *args: object,
               timeout: float) -> Answer:
    """Send a session request (in a thread: it streams the payload) and await its answer.
    A broken session becomes a TransportError: the worker reconciles on a fresh one."""
    try:
        fut = await anyio.to_thread.run_sync(send, *args, abandon_on_cancel=True)
        return await anyio.to_thread.run_sync(fut.result, timeout, abandon_on_cancel=True)
    except (SessionError, TimeoutError) as e:
        if pool is not None:
            pool.drop(ref, str(e) or "no answer")
        raise TransportError(f"{ref.label}: session lost: {e or 'no answer'}", "syncd reconciles on a new session") from None

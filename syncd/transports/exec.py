"""What the exec-based transports (Docker, Kubernetes) share, written once.

A subclass says how to run one exec (`_exec`, returning an `ExecResult`), how to open the
session's channel (`_open_channel`), whether a per-exec apply needs byte-counted framing
(`_framed`), and how to find containers. Everything else — the session when the container can
run one, one exec per request when it cannot, reading exit statuses into errors that say what
the image lacks — lives here.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator, Sequence

import anyio

from syncd.core.manifest import Listing, Manifest
from syncd.model import DestPath, Entry, Kind
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.transports.base import (
    ApplyRequest,
    ApplyResult,
    CommandResult,
    ContainerRef,
    ExecResult,
    PatchRequest,
    PatchResult,
    PendingApply,
    TransportError,
    Unsupported,
)
from syncd.transports.patch import PATCH_SCRIPT, REFUSED, why
from syncd.transports.session import Channel, Session, SessionError, SessionPool, call, say_fallback
from syncd.transports.shell import (
    APPLY_SCRIPT,
    FRAMED_APPLY_SCRIPT,
    GUNZIP_FAILED,
    GZIP_APPLY_SCRIPT,
    GZIP_FRAMED_APPLY_SCRIPT,
    MANIFEST_SCRIPT,
    encode_head,
    frame_chunks,
    gzipped,
    listing_fingerprint,
    parse_fingerprint,
    parse_hash_list,
    parse_manifest,
    rechunk,
    removed_symlinks,
    unread_links,
)
from syncd.transports.writable import PROBE_SCRIPT, Access, looks_refused, not_writable, parse_probe, probe_input


async def _parsed(listing: bytes) -> Manifest:
    """A big listing (a 100,000-file tree is ~10 MB, ~0.4 s to parse) is parsed in a worker
    thread: the event loop keeps serving the watcher and the other containers meanwhile."""
    if len(listing) < 256 << 10:
        return parse_manifest(listing)
    return await anyio.to_thread.run_sync(parse_manifest, listing)


class ExecTransport:
    """The Transport contract on top of `_exec` and a session per container."""

    target: str
    has_change_feed = False

    def __init__(self, target: str, sessions: bool = True, settings: Settings = DEFAULT_SETTINGS) -> None:
        self.target = target
        self.settings = settings
        self._pool = SessionPool(self._open_channel, say_fallback, settings.session) if sessions else None

    # --- what a subclass provides ----------------------------------------------------------

    def _exec(self, ref: ContainerRef, argv: list[str], stdin: Iterator[bytes] | None) -> ExecResult:
        """Run argv in the container, streaming `stdin` (then closing it); blocking."""
        raise NotImplementedError

    def _open_channel(self, ref: ContainerRef) -> Channel:
        """A long-lived exec's stdin/stdout for the session script; blocking."""
        raise NotImplementedError

    def _framed(self, ref: ContainerRef) -> bool:
        """Must a per-exec apply frame its tar stream (the channel cannot close stdin)?"""
        return False

    async def containers(self) -> list[ContainerRef]:
        raise NotImplementedError

    # --- the contract ------------------------------------------------------------------------

    async def wait_changed(self) -> None:
        raise Unsupported(f"{self.target}: no change feed")

    async def restart(self, ref: ContainerRef) -> None:
        raise Unsupported(f"{ref.label}: this runtime cannot restart a container")

    def other_user_fix(self) -> str:
        """How a refused write could be done as another user on this runtime (a fix, in words;
        "" when the exec cannot switch users)."""
        return ""

    def mode(self, ref: ContainerRef) -> str:
        return self._pool.mode(ref) if self._pool else "per-exec (sessions off)"

    async def manifest(self, ref: ContainerRef, dests: Sequence[DestPath]) -> Manifest:
        session = await self._session(ref)
        if session is not None:
            answer = await call(self._pool, ref, session.manifest, list(dests), timeout=self._answer_timeout)
            self._check(ref, "reading the container tree", ExecResult(answer.rc, b"", answer.output if answer.rc else b""))
            manifest = Listing(await _parsed(answer.output))
            manifest.fingerprint = listing_fingerprint(answer.output, answer.rc)
            pending = unread_links(manifest)
            if pending:  # (the quick listing walks the tree once: symlinks' targets asked after it)
                found = await call(self._pool, ref, session.links, pending, timeout=self._answer_timeout)
                self._check(ref, "reading the container's symlinks",
                            ExecResult(found.rc, b"", found.output if found.rc else b""))
                targets = parse_manifest(found.output)
                for path in pending:  # (gone meanwhile: an empty target, which no local link has)
                    manifest[path] = targets.get(path, Entry(Kind.LINK))
            return manifest
        result = await self._run_exec(ref, ["sh", "-c", MANIFEST_SCRIPT, "syncd-manifest", *dests], None)
        self._check(ref, "reading the container tree", result)
        return await _parsed(result.stdout)

    async def fingerprint(self, ref: ContainerRef, dests: Sequence[DestPath]) -> str:
        session = await self._session(ref)
        if session is None:
            return ""  # (a per-exec listing is one with hashes: never kept, see syncd/converged.py)
        answer = await call(self._pool, ref, session.fingerprint, list(dests), timeout=self._answer_timeout)
        return parse_fingerprint(answer.output) if answer.rc == 0 else ""

    async def hash(self, ref: ContainerRef, paths: Sequence[DestPath]) -> dict[DestPath, str]:
        session = await self._session(ref)
        if session is None:
            return {}  # per-exec listings carry hashes already: nothing is left undecided
        answer = await call(self._pool, ref, session.hash, list(paths), timeout=self._answer_timeout)
        self._check(ref, "hashing container files", ExecResult(answer.rc, b"", answer.output if answer.rc else b""))
        return parse_hash_list(answer.output)

    async def apply(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        try:
            pending = await self.apply_start(ref, request)
        except Unsupported:
            return await self._apply_per_exec(ref, request)
        return await pending()

    async def apply_start(self, ref: ContainerRef, request: ApplyRequest) -> PendingApply:
        session = await self._session(ref)
        if session is None:
            raise Unsupported(f"{ref.label}: no session: one exec per batch")
        try:
            fut, sent = await anyio.to_thread.run_sync(session.apply, request.root, request.deletes, request.tar,
                                                       request.guard, request.gzip, abandon_on_cancel=True)
        except SessionError as e:
            if self._pool is not None:
                self._pool.drop(ref, str(e))
            raise TransportError(f"{ref.label}: session lost: {e}", "syncd reconciles on a new session") from None

        async def answer() -> ApplyResult:
            got = await call(self._pool, ref, lambda: fut, timeout=self._answer_timeout)
            output = got.output.decode("utf-8", "replace")
            await self._explain_refusal(ref, request, got.rc, output)
            self._check(ref, "applying the batch", ExecResult(got.rc, b"", got.output))
            self._check_gunzip(ref, output)
            return ApplyResult(bytes_sent=sent(), removed_symlinks=removed_symlinks(output), output=output)

        return answer

    async def patch(self, ref: ContainerRef, request: PatchRequest) -> PatchResult:
        session = await self._session(ref)
        if session is not None:
            try:
                fut, sent = await anyio.to_thread.run_sync(session.patch, request.args, request.stream,
                                                           abandon_on_cancel=True)
            except SessionError as e:
                self.drop_session(ref, str(e))
                raise TransportError(f"{ref.label}: session lost: {e}", "syncd reconciles on a new session") from None
            answer = await call(self._pool, ref, lambda: fut, timeout=self._answer_timeout)
            result = ExecResult(answer.rc, answer.output, b"", sent())
        else:
            result = await self._run_exec(ref, ["sh", "-c", PATCH_SCRIPT, "syncd-patch", *request.args], request.stream)
        if result.exit == REFUSED:
            return PatchResult(False, result.sent, why(result.stdout.decode("utf-8", "replace")))
        self._check(ref, f"patching {request.name}", result)
        return PatchResult(True, result.sent)

    async def throughput(self, ref: ContainerRef, nbytes: int) -> float:
        session = await self._session(ref)
        if session is None:
            raise Unsupported(f"{ref.label}: no session to measure")
        t0 = time.perf_counter()
        await call(self._pool, ref, session.probe, nbytes, timeout=self._answer_timeout)
        return nbytes / max(time.perf_counter() - t0, 1e-6)

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        result = await self._run_exec(ref, argv, None)
        err = result.stderr or (result.detail.encode() if result.exit else b"")
        return CommandResult.of(result.exit, result.stdout, err)

    async def run_step(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        session = await self._session(ref)
        if session is None:
            return await self.run(ref, argv)
        answer = await call(self._pool, ref, session.run, shlex.join(argv), timeout=self._answer_timeout)
        return CommandResult(answer.rc, answer.output.decode("utf-8", "replace"))

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()

    def session_of(self, ref: ContainerRef) -> Session | None:
        """The container's open session, if it has one (diagnostics; the fault tests cut its
        connection)."""
        return self._pool.open_session(ref) if self._pool is not None else None

    def drop_session(self, ref: ContainerRef, why: str) -> None:
        """Close the container's session; the next request opens a new one."""
        if self._pool is not None:
            self._pool.drop(ref, why)

    # --- shared machinery ----------------------------------------------------------------------

    @property
    def _answer_timeout(self) -> float:
        return self.settings.session.answer_timeout

    async def _session(self, ref: ContainerRef) -> Session | None:
        if self._pool is None:
            return None
        return await anyio.to_thread.run_sync(self._pool.get, ref, abandon_on_cancel=True)

    async def _run_exec(self, ref: ContainerRef, argv: list[str], stdin: Iterator[bytes] | None) -> ExecResult:
        return await anyio.to_thread.run_sync(self._exec, ref, argv, stdin, abandon_on_cancel=True)

    async def _apply_per_exec(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        framed = self._framed(ref)  # v4 Kubernetes exec cannot close stdin: byte-counted chunks

        def stream() -> Iterator[bytes]:
            yield encode_head(request.guard, request.deletes)
            tar = gzipped(request.tar, request.gzip) if request.gzip else request.tar
            yield from (frame_chunks(tar) if framed else rechunk(tar))  # few large writes

        scripts = (GZIP_FRAMED_APPLY_SCRIPT, GZIP_APPLY_SCRIPT) if request.gzip else (FRAMED_APPLY_SCRIPT, APPLY_SCRIPT)
        argv = ["sh", "-c", scripts[0] if framed else scripts[1], "syncd-apply", request.root]
        result = await self._run_exec(ref, argv, stream())
        output = (result.stderr or result.stdout).decode("utf-8", "replace")
        await self._explain_refusal(ref, request, result.exit, output)
        self._check(ref, "applying the batch", result)
        self._check_gunzip(ref, output)
        return ApplyResult(bytes_sent=result.sent, removed_symlinks=removed_symlinks(output), output=output)

    async def probe_access(self, ref: ContainerRef, root: DestPath, dirs: Sequence[str]) -> Access:
        """Who the exec user is and which of `dirs` (relative to `root`; "" is `root`) it
        cannot write in (transports/writable.py). Its own exec: a session's requests share stdin."""
        result = await self._run_exec(ref, ["sh", "-c", PROBE_SCRIPT, "syncd-probe", root], iter([probe_input(dirs)]))
        return parse_probe(result.stdout.decode("utf-8", "replace"))

    async def _explain_refusal(self, ref: ContainerRef, request: ApplyRequest, exit_code: int, output: str) -> None:
        """A batch the kernel refused to write (permissions, a read-only filesystem) raises the
        error naming the exec user, the directory that refused and the fixes, instead of tar's
        words. Any other failure (or a probe that cannot run) is left to `_check`."""
        if exit_code == 0 or not looks_refused(output):
            return
        try:
            access = await self.probe_access(ref, request.root, ["", *request.guard])
        except TransportError:
            return
        error = not_writable(ref, access, self.other_user_fix())
        if error is not None:
            raise error

    @staticmethod
    def _check_gunzip(ref: ContainerRef, output: str) -> None:
        """tar may end cleanly on a stream gzip cut short: the notice makes it a failure."""
        if GUNZIP_FAILED in output:
            raise TransportError(f"{ref.label}: a compressed batch could not be decompressed: {output.strip()[-200:]}",
                                 "syncd reconciles; `syncd doctor` says whether the container has gzip")

    @staticmethod
    def _check(ref: ContainerRef, what: str, result: ExecResult) -> None:
        """An exec's (or a session request's) exit status -> nothing, or a TransportError
        saying what the image lacks (sh, tar) or what failed, with the tail of its output."""
        if result.exit == 0:
            return
        detail = result.detail
        text = (result.stderr or result.stdout).decode("utf-8", "replace").strip() or detail
        tail = "\n".join(text.splitlines()[-5:])
        image = f" (image {ref.image})" if ref.image else ""
        no_sh = "executable file not found" in text + detail or "no such file or directory" in detail
        if no_sh or ("sh" in text and result.exit in (126, 127) and "tar" not in text):
            raise TransportError(f"{ref.label}{image}: no 'sh' in the container: {tail or detail}",
                                 "syncd needs a POSIX shell and tar in the image (e.g. add busybox)", permanent=True)
        if "'tar' not found" in text:
            raise TransportError(f"{ref.label}{image}: no 'tar' in the container",
                                 "add tar to the image (apt-get install tar, apk add tar, or COPY a static busybox)",
                                 permanent=True)
        raise TransportError(f"{ref.label}: {what} failed (exit {result.exit}): {tail}")

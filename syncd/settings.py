"""Every timing constant of the daemon, in one place, grouped by the part it tunes.

The user-facing ones (the quiet period, the longest a batch waits) are in the config file's
`[daemon]` table; these are the engine's own. They are passed down (never read from module
globals), so a test shrinks an interval instead of sleeping through it:

    Settings(workers=WorkerSettings(backoff_start=0.05))

Defaults are what the daemon runs with; each says why it is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """How containers are followed (TargetRuntime.supervise)."""

    interval: float = 2.0  # poll for containers (a transport without a change feed)
    watched_interval: float = 30.0  # with a change feed (pod watch): only a safety net, a LIST costs the API server
    # While a target is unavailable (engine or API server away) retries back off only to this:
    # a target that returns is used again within a few seconds.
    unavailable_retry_max: float = 4.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """A container worker's retries (core.worker.next_step)."""

    backoff_start: float = 0.5
    backoff_max: float = 30.0
    # An error retrying cannot fix until the user acts (no `tar` in the image, no such container
    # in the pod): asked again this rarely, and `syncd status` says it waits for a fix.
    permanent_retry: float = 60.0


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """Cutting and handling batches (engine)."""

    # A watcher batch larger than this is a burst: coalesced even when it sets off a build.
    early_cut_max: int = 100
    # A change of at most this many paths after a calm moment is cut without the quiet period
    # (the watcher already waited for its own quiet step): an editor's save goes out at once.
    small_batch: int = 20
    # A reconcile that hashed this many files saves the hash cache at once (not only at exit).
    save_hashes_after: int = 1000
    # A reconcile this large hands its freed heap back to the system (syncd/memory.py).
    trim_after_paths: int = 10_000
    # Replicas' manifests compared at the same moment share their equal entries (core/manifest.py
    # `share`): memory a daemon keeps while idle, ~37 ms of work at 20,000 files.
    share_manifests: bool = True
    # A worker's manifest of this many paths is kept in columns between reconciles
    # (core/packed.py): ~70 bytes a path instead of ~300; 0: never. Packing 100,000 paths
    # takes ~0.07 s, once per reconcile; a small manifest is packed too, so a 10-file tree runs
    # the same code a 100,000-file one does.
    pack_manifest_above: int = 1
    # A reconcile delta larger than the first chunk is sent in chunks of ~chunk_s each on the
    # link (core/chunking.py); batches submitted meanwhile go out between two chunks.
    chunk_first_bytes: int = 1 << 20
    chunk_s: float = 0.5
    chunk_min_bytes: int = 256 << 10
    chunk_max_bytes: int = 64 << 20


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The file watcher (watch.py)."""

    step_ms: int = 5  # watchfiles' poll of its event queue: bounds added latency and idle wakeups
    poll_ms: int = 300  # the polling fallback's interval
    block_ms: int = 5000  # how long one watch() call may block (stop is checked every step)
    restart_start: float = 0.5  # re-creating a failed watcher backs off from here ...
    restart_max: float = 30.0  # ... to here


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """The long-lived exec per container (transports/session.py)."""

    ready_timeout: float = 10.0  # the session script must say it runs within this
    answer_timeout: float = 600.0  # one request (a big apply) may take this long
    keepalive_every: float = 5.0  # ping an idle session this often: a dead connection is noticed in seconds
    keepalive_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class ExecSettings:
    """One-off execs (per-exec transports, actions, steps)."""

    timeout: float = 600.0  # a Kubernetes exec that has not ended by then is given up
    api_request_timeout: float = 15.0  # a Kubernetes API call (list pods)
    restart_grace: int = 2  # `restart = "container"`: seconds between TERM and KILL
    feed_retry_max: float = 4.0  # a broken change feed (pod watch, docker events) retries this often at most


@dataclass(frozen=True, slots=True)
class Settings:
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    batches: BatchSettings = field(default_factory=BatchSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    exec: ExecSettings = field(default_factory=ExecSettings)


DEFAULT_SETTINGS = Settings()

# `syncd sync` exits after its reconciles: sharing manifests' entries, packing them in columns
# or handing freed heap back saves memory the process is about to give up whole.
ONE_SHOT_SETTINGS = replace(DEFAULT_SETTINGS, batches=replace(DEFAULT_SETTINGS.batches, share_manifests=False,
                                                              trim_after_paths=2**62, pack_manifest_above=0))

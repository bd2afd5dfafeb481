"""Finding the daemon a command means, without `-c`.

Every running daemon registers itself in a per-user directory (`$SYNCD_RUNTIME_DIR`, else
`$XDG_RUNTIME_DIR/syncd`, else `~/.local/state/syncd/daemons`): one small JSON file per daemon
naming its config, state directory, API address and start time — never its secret, which stays
in the project's `.syncd/api.json` (0600). An entry whose process is gone, or whose state
directory now belongs to another process, is stale and ignored (and removed).

`choose()` is what `status`, `pause`, `resume`, `resync`, `trigger`, `trace` and `smoke` use:

1. `-c FILE`: that config (and its daemon, if one runs);
2. the nearest config in the current directory or above (`syncd.toml`, `config/syncd.toml`)
   for which a daemon runs;
3. else the one daemon the user has running (the command says which it chose);
4. else, with several running, a list to pick from with `-c`;
5. else the nearest config found, with no daemon (each command says what that means).

`refusal()` is what a command that would write a project's state says when another process
holds it (syncd/statelock.py): who, since when, and how to reach or stop it.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from syncd.config import DEFAULT_PATHS, ConfigError, nearby_configs, searched
from syncd.statelock import StateBusy

STATE_FILE = "api.json"  # in the project's .syncd/: address, pid, start time, write secret (0600)


@dataclass(frozen=True, slots=True)
class RunningDaemon:
    """What `.syncd/api.json` says of the daemon that wrote it."""

    address: str
    pid: int
    started: float | None
    secret: str | None

    def __str__(self) -> str:
        return self.address


def find_daemon(state_dir: Path) -> RunningDaemon | None:
    """The daemon running for this config, if one is (its pid is alive)."""
    try:
        info = json.loads((state_dir / STATE_FILE).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
        return RunningDaemon(str(info["address"]), pid, info.get("started"), info.get("secret"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def since_text(started: float | None, now: float | None = None) -> str:
    """A start time as a person reads it: the time of day today, the date too before that."""
    if not started:
        return "?"
    day = time.strftime("%Y-%m-%d", time.localtime(now if now is not None else time.time()))
    when = time.localtime(started)
    return time.strftime("%H:%M:%S" if time.strftime("%Y-%m-%d", when) == day else "%Y-%m-%d %H:%M:%S", when)


def registry_dir() -> Path:
    explicit = os.environ.get("SYNCD_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "syncd"
    return Path.home() / ".local" / "state" / "syncd" / "daemons"


@dataclass(frozen=True, slots=True)
class Registered:
    """One running daemon as the registry lists it."""

    config: Path
    state_dir: Path
    daemon: RunningDaemon

    def describe(self) -> str:
        return f"{self.config} (pid {self.daemon.pid}, API {self.daemon.address}, since {since_text(self.daemon.started)})"


def register(config: Path, state_dir: Path, address: str) -> Path | None:
    """Add this process to the registry; returns the entry to remove at exit (None: could not)."""
    running()  # drops the entries of daemons that died without removing theirs (SIGKILL): the registry stays small
    entry = registry_dir() / f"{os.getpid()}.json"
    try:
        entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": str(config), "state_dir": str(state_dir), "address": address,
                                   "pid": os.getpid(), "started": time.time()}))
        os.replace(tmp, entry)
    except OSError:
        return None  # finding the daemon without -c is a convenience: never a reason to fail
    return entry


def unregister(entry: Path | None) -> None:
    if entry is not None:
        with suppress(OSError):
            entry.unlink()


def running() -> list[Registered]:
    """Every daemon of this user that is still running, oldest first."""
    found: list[Registered] = []
    try:
        entries = sorted(registry_dir().glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        try:
            info = json.loads(entry.read_text())
            state_dir = Path(info["state_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        daemon = find_daemon(state_dir)
        if daemon is None or daemon.pid != info.get("pid"):
            with suppress(OSError):
                entry.unlink()  # stale: the daemon is gone (SIGKILL, reboot) or another one took over
            continue
        found.append(Registered(Path(info["config"]), state_dir, daemon))
    return sorted(found, key=lambda r: r.daemon.started or 0)


@dataclass(frozen=True, slots=True)
class Choice:
    config: Path
    daemon: RunningDaemon | None
    note: str = ""  # said to the user when the choice was not obvious


def choose(explicit: str | None, cwd: Path | None = None) -> Choice:
    """Which config (and daemon) a command means; ConfigError when it cannot tell."""
    if explicit:
        path = Path(explicit)
        return Choice(path, find_daemon(path.resolve().parent / ".syncd"))
    cwd = (cwd or Path.cwd()).resolve()
    configs = nearby_configs(cwd)
    for path in configs:
        daemon = find_daemon(path.resolve().parent / ".syncd")
        if daemon is not None:
            return Choice(path, daemon)
    others = running()
    if len(others) == 1:
        only = others[0]
        return Choice(only.config, only.daemon,
                      f"using the syncd daemon for {only.describe()}; pass -c FILE to choose another")
    if len(others) > 1:
        listing = "; ".join(r.describe() for r in others)
        raise ConfigError(configs[0] if configs else DEFAULT_PATHS[0], [
            f"{len(others)} syncd daemons are running and none for a config here ({searched(cwd)}): "
            f"pick one with -c FILE: {listing}"])
    if configs:
        return Choice(configs[0], None)
    raise ConfigError(DEFAULT_PATHS[0], [
        f"no config found (looked for {searched(cwd)}) and no syncd daemon is running; "
        "pass -c FILE, start one with `syncd run -c FILE`, or try `syncd demo`"])


def refusal(busy: StateBusy, command: str) -> str:
    """What `syncd <command>` says when another process holds the state directory it would write."""
    holder, lock = busy.holder, busy.path
    why = f"it holds {lock}: one writer of {lock.parent} at a time"
    if holder is None:
        return (f"syncd {command}: another process holds {lock} (one writer of {lock.parent} at a time) and did not "
                f"say which; find it with `fuser -v {lock}` (or `lsof {lock}`), stop it, then run this again")
    since = since_text(holder.started)
    if holder.command != "run":
        return (f"syncd {command}: refused: `syncd {holder.command}` (pid {holder.pid}, since {since}) is writing the "
                f"state of {holder.config} ({why})\n"
                f"  wait for it to finish, or stop it: kill {holder.pid}; then run this again")
    daemon = find_daemon(lock.parent)
    if daemon is not None and daemon.pid == holder.pid:
        api, page = f"API {daemon.address}", "" if daemon.address.startswith("unix:") else f" (page: http://{daemon.address}/)"
    else:  # still starting, or its API could not bind (its log says why)
        api, page = "API not published (yet)", ""
    head = (f"syncd {command}: refused: a syncd daemon already runs for {holder.config}: pid {holder.pid}, {api}, "
            f"since {since} ({why})")
    reach = [f"  reach it: syncd status -c {holder.config}{page}"]
    if command == "sync":  # what the user wanted, done by the daemon
        reach = [f"  it keeps the containers in sync; to compare the trees again, ask it: syncd resync -c {holder.config}",
                 f"  to see what would be sent, without sending: syncd sync --dry-run -c {holder.config}"]
    stop = f"  stop it:  kill {holder.pid} (or Ctrl-C in its terminal), then run this again"
    return "\n".join([head, *reach, stop])

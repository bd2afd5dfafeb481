"""`syncd doctor`: check the world syncd depends on, one line per check, a fix per failure.

Checks are small functions returning `Check` records (pure data): tests look at the records,
`render` only prints them. Every check is read-only: no directory is created, no session
started, nothing changed in a container (the only execs are `true` and a `command -v`
probe). Container checks go through the transports' own discovery and exec, so doctor sees
what `syncd run` would see, with the same messages and hints.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from rich.console import Console
from rich.text import Text

from syncd.config import Config, ConfigError, DockerTarget, KubernetesTarget, find_config, load_config
from syncd.core.steps import step_name
from syncd.steps import Command
from syncd.transports import make_transports
from syncd.transports.base import CommandResult, ContainerRef, Transport, TransportError
from syncd.transports.writable import fix_text, refusal_text

if TYPE_CHECKING:
    from kubernetes import client as kclient

    from syncd.transports.docker import DockerTransport
    from syncd.transports.exec import ExecTransport
    from syncd.transports.kube import KubeTransport

INOTIFY_LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_watches")
INOTIFY_SHARE = 0.9  # the limit is per user, shared with editors and other watchers: keep headroom
INOTIFY_SUGGESTED = 524288


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not run, because a check it depends on failed (the detail says which)
    detail: str
    remedy: str = ""  # what to do about a failure; may span lines


def skipped(name: str, why: str) -> Check:
    return Check(name, None, f"skipped ({why})")


def check_config(config: str | Callable[[], Config] | None) -> tuple[Check, Config | None]:
    """`config`: a path (None: found as every command finds it), or how to load it (--compose)."""
    try:
        cfg = config() if callable(config) else load_config(find_config(config))
    except ConfigError as e:
        problems = "\n".join(f"- {p}" for p in e.problems)
        where = e.file or "the compose files"
        return Check("config", False, f"{where} is invalid ({len(e.problems)} problem(s))",
                     f"fix in {where}:\n{problems}"), None
    kinds = ", ".join(f"{spec.kind} {name}" for name, spec in cfg.targets.items())
    return Check("config", True, f"{cfg.file}: {len(cfg.targets)} target(s) ({kinds}), "
                                 f"{len(cfg.services)} service(s)"), cfg


def check_compose_cli(cfg: Config) -> Check:
    """Rebuild and restart rules run `docker compose …`: is the Compose CLI there?"""
    users = [s.name for s in cfg.services if isinstance(s.fallback, list) and s.fallback[:2] == ["docker", "compose"]]
    if not users:
        return Check("compose CLI", None, "no rebuild or restart rule runs it")
    try:
        out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        ok, line = out.returncode == 0, (out.stdout or out.stderr).strip().splitlines()[:1]
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, line = False, [str(e)]
    said = line[0] if line else "no output"
    if ok:
        return Check("compose CLI", True, f"{said} (runs the fallbacks of {', '.join(users)})")
    return Check("compose CLI", False, f"`docker compose version` fails: {said} (needed by {', '.join(users)})",
                 "install the Docker Compose plugin (v2.22+), e.g. Debian/Ubuntu: `apt-get install docker-compose-plugin` "
                 "from Docker's repository; until then edits to rebuild/restart paths only report the fallback failing")


# --- docker --------------------------------------------------------------------------------


def check_docker_engine() -> Check:
    import docker
    import requests

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    client = None
    try:
        client = docker.from_env(timeout=10)  # asks the engine for its API version: a first ping
        client.ping()
        version = client.version().get("Version", "?")
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        return Check("docker engine", False, f"no answer at {host} ({e})", "\n".join([
            "start the Docker engine: `sudo systemctl start docker` (or `sudo dockerd`; Docker Desktop on macOS/Windows)",
            f"check DOCKER_HOST (now {os.environ.get('DOCKER_HOST') or 'unset: the default socket'}); "
            "unset it to use /var/run/docker.sock",
            "on 'permission denied': give your user access to /var/run/docker.sock "
            "(`sudo usermod -aG docker $USER`, log in again)",
        ]))
    finally:
        if client is not None:
            client.close()
    return Check("docker engine", True, f"Docker {version} answers at {host}")


def check_docker_target(name: str, transport: DockerTransport, dests: list[str]) -> Iterator[Check]:
    try:
        refs = transport.list_containers()  # discovery without an event loop
    except TransportError as e:
        yield Check(f"target {name}", False, e.message, e.hint)
        return
    yield _discovered(name, refs, "container(s)")
    for ref in refs:
        yield check_tools(transport, ref)
        yield check_writable(transport, ref, dests)


def _discovered(name: str, refs: list[ContainerRef], what: str) -> Check:
    return Check(f"target {name}", True, f"{len(refs)} {what} running: " + ", ".join(f"{r.name}{_image(r)}" for r in refs))


def _image(ref: ContainerRef) -> str:
    return f" (image {ref.image})" if ref.image else ""


# --- tools in a container (docker and kubernetes) ------------------------------------------

# What syncd's container-side scripts run beyond sh builtins (transports/shell.py, session.py);
# dd must honour iflag=fullblock, as the session and v4 framed pushes read exact byte counts.
TOOLS = ("tar", "dd", "sha1sum", "find", "xargs")
TOOLS_PROBE = (
    f"for t in {' '.join(TOOLS)}; do command -v $t >/dev/null 2>&1 || echo missing:$t; done; "
    'if command -v dd >/dev/null 2>&1; then '
    '[ "$(printf ab | dd bs=2 count=1 iflag=fullblock 2>/dev/null)" = ab ] || echo weak:dd; fi; '
    "command -v gzip >/dev/null 2>&1 || echo nogzip"
)
# Optional: without it syncd sends raw (no compressed batches, no compressed delta literals).
NO_GZIP = "no gzip: syncd sends raw (no compression on slow links); add gzip to the image (busybox has it) to compress"
WITHOUT = {  # tool -> what breaks or degrades without it
    "tar": "nothing can be synced (every push unpacks a tar stream)",
    "dd": "no session: one exec per batch (slower); Kubernetes servers without v5.channel.k8s.io exec cannot push",
    "sha1sum": "reconciles cannot hash container files: every reconcile re-sends every file",
    "find": "reconciles cannot list the container tree: everything is re-sent and stale files are never deleted",
    "xargs": "deletes cannot be applied (and one-exec-per-batch pushes fail)",
}
ADD_TAR = "add tar to the image (apt-get install tar, apk add tar, or COPY a static busybox)"


def _exec(transport: Transport, ref: ContainerRef, argv: list[str]) -> CommandResult:
    """One command through the transport's own exec (not a session). Raises TransportError."""
    return anyio.run(transport.run, ref, argv)


def check_tools(transport: Transport, ref: ContainerRef) -> Check:
    name = f"tools in {ref.label}"
    try:
        result = _exec(transport, ref, ["sh", "-c", TOOLS_PROBE])
    except TransportError as e:
        return Check(name, False, e.message, e.hint)
    words = result.output.split()
    missing = [w.split(":", 1)[1] for w in words if w.startswith("missing:")]
    weak_dd = "weak:dd" in words
    if result.exit != 0 and not missing:  # the probe never ran: no sh, or an exec that failed
        last = (result.output.strip().splitlines() or [f"exit {result.exit}"])[-1]
        text = result.output.lower()
        if result.exit in (126, 127) or "not found" in text or "no such file" in text:
            return Check(name, False, f"no 'sh' in the container{_image(ref)}: {last}",
                         "syncd needs a POSIX shell and tar in the image (e.g. add busybox)")
        return Check(name, False, f"the tool probe failed (exit {result.exit}): {last}", f"check that `sh -c` runs in {ref.name}")
    gzip_note = f"; {NO_GZIP}" if "nogzip" in words else ""
    if not missing and not weak_dd:
        return Check(name, True, f"sh, {', '.join(TOOLS)} found (dd with iflag=fullblock){gzip_note}")
    # busybox `sh` runs its own applets even without their /bin links: `command -v` knows.
    lines = [f"{t}: {WITHOUT[t]}; " + (ADD_TAR if t == "tar" else f"add {t} to the image (busybox or coreutils/findutils)")
             for t in missing]
    if weak_dd:
        lines.append(f"dd: lacks iflag=fullblock, so {WITHOUT['dd']}; use busybox or GNU coreutils dd")
    if gzip_note:
        lines.append(NO_GZIP)
    found = ", ".join(missing + (["dd without iflag=fullblock"] if weak_dd else []))
    return Check(name, False, f"missing in the container{_image(ref)}: {found}", "\n".join(lines))


# --- kubernetes ----------------------------------------------------------------------------

EXEC_RULE = 'Role rule: {apiGroups: [""], resources: ["pods/exec"], verbs: ["create"]} (and get, list, watch on pods)'


def _server_version(cfg: kclient.Configuration) -> str:
    """GET /version as kubectl asks it (the client's VersionApi asks `/version/`)."""
    from kubernetes import client as kclient
    from kubernetes.client.rest import ApiException

    headers = {"Accept": "application/json"}
    token = cfg.auth_settings().get("BearerToken", {}).get("value")
    if token:
        headers["authorization"] = token
    resp = kclient.ApiClient(cfg).rest_client.request("GET", f"{cfg.host}/version", headers=headers, _request_timeout=10)
    data = getattr(resp, "data", None) or resp.read()
    if not 200 <= resp.status < 300:
        error = ApiException(status=resp.status, reason=resp.reason)
        error.body = data
        raise error
    return str(json.loads(data).get("gitVersion", "?"))


def check_kube_target(name: str, spec: KubernetesTarget, t: KubeTransport, dests: list[str]) -> Iterator[Check]:
    from kubernetes import config as kconfig
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    where = t.where() + ": "  # the check's name already says which target
    try:
        cfg = t.load_kubeconfig()
    except TransportError as e:  # its hint lists the available contexts
        yield Check(f"target {name} kubeconfig", False, e.message.removeprefix(where), e.hint)
        yield skipped(f"API server, pods, exec and tools of target {name}", "no kubeconfig context")
        return
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        context = spec.context or kconfig.list_kube_config_contexts(config_file=path)[1]["name"]
    except Exception:
        context = "in-cluster service account"
    yield Check(f"target {name} kubeconfig", True, f"context {context} from {path}")

    try:
        version = _server_version(cfg)
    except (ApiException, HTTPError, OSError, ValueError) as e:
        err = t.api_error(e, "asking for the server version")
        yield Check(f"target {name} API server", False, err.message.removeprefix(where), err.hint)
        yield skipped(f"pods, exec and tools of target {name}", "API server not reachable")
        return
    yield Check(f"target {name} API server", True, f"{cfg.host} answers (Kubernetes {version})")

    try:
        refs = t.list_containers()  # unlike containers(), starts no pod watch
    except TransportError as e:
        hint = e.hint
        if "no Running pod matches" in e.message:  # the daemon's hint is about waiting; doctor's is about fixing
            hint = (f"start the workload, or fix targets.{name}.selector / namespace "
                    f"(`kubectl get pods -n {spec.namespace} -l {spec.selector}`)")
        yield Check(f"target {name}", False, e.message.removeprefix(where), hint)
        return
    yield _discovered(name, refs, f"pod(s) matching {spec.selector} in {spec.namespace}")

    # RBAC is only known by trying: a harmless exec. Any exit status means the exec was allowed.
    try:
        _exec(t, refs[0], ["true"])
    except TransportError as e:
        remedy = e.hint + ("\n" + EXEC_RULE if "pods/exec" in e.hint else "")
        yield Check(f"target {name} exec", False, e.message.removeprefix(where), remedy)
        yield skipped(f"tools in target {name}", "exec not possible")
        return
    yield Check(f"target {name} exec", True, f"create pods/exec allowed (ran `true` in {refs[0].name})")
    for ref in refs:
        yield check_tools(t, ref)
        yield check_writable(t, ref, dests)


# --- the exec user may write every destination (docker and kubernetes) ---------------------


def target_dests(cfg: Config, target: str) -> list[str]:
    return sorted({m.dest for s in cfg.services if s.target == target for m in s.sync})


def check_writable(transport: ExecTransport, ref: ContainerRef, dests: list[str]) -> Check:
    """One real write in each destination (or where a missing one would be created), as the
    user syncd's execs run as (transports/writable.py)."""
    name = f"destinations in {ref.label}"
    if not dests:
        return skipped(name, "no sync mappings")
    try:
        access = anyio.run(transport.probe_access, ref, "/", [d.lstrip("/") for d in dests])
    except TransportError as e:
        return Check(name, False, e.message, e.hint)
    if not access.uid:
        return Check(name, False, "the write probe did not run (no 'sh'?)", "see the tools check above")
    if not access.refused:
        tmp = f"; temporary files can go to {access.tmp}" if access.tmp else ""
        return Check(name, True, f"{', '.join(dests)} writable by the exec user ({access.who}){tmp}")
    fix = transport.other_user_fix()
    return Check(name, False, f"not writable by the exec user ({access.who}): "
                 + ", ".join(r.wanted for r in access.refused),
                 "\n".join(f"{refusal_text(access, r)}: {fix_text(access, r, fix)}" for r in access.refused))


# --- this machine --------------------------------------------------------------------------


def check_local_target(name: str, path: Path) -> Check:
    existing = path  # syncd creates a missing target directory: its nearest existing parent counts
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        return Check(f"target {name}", False, f"{path} exists but is not a directory",
                     f"fix targets.{name}.path or move the file away")
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check(f"target {name}", False, f"{existing} is not writable",
                     f"fix targets.{name}.path or the permissions of {existing}")
    later = "" if existing == path else f" (created on first sync, in {existing})"
    return Check(f"target {name}", True, f"{path} writable{later}")


SHELL_WORDS = {"cd", ".", ":", "export", "set", "unset", "exec", "eval", "test", "[", "echo", "printf",
               "true", "false", "if", "for", "while", "case", "{", "!", "command", "umask", "ulimit"}
RUST = "install Rust with rustup (https://rustup.rs) or Debian's `sudo apt install cargo`"
NODE = "install Node.js: Debian's `sudo apt install nodejs npm` (or https://nodejs.org)"
INSTALL = {"cargo": RUST, "rustc": RUST, "npm": NODE, "node": NODE, "npx": NODE}
VERSIONED = ("cargo", "npm", "node")  # asked for --version: they are the point of build steps


def program_of(cmd: Command) -> str | None:
    """The program a command starts: argv[0], or for `sh -c` strings the first word that is
    not an assignment; None for shell builtins and keywords (the shell has them)."""
    if isinstance(cmd, list):
        return cmd[0]
    try:
        words = shlex.split(cmd)
    except ValueError:
        words = cmd.split()
    words = [w for w in words if not ("=" in w and w.partition("=")[0].isidentifier())]
    return words[0] if words and words[0] not in SHELL_WORDS else None


def local_commands(cfg: Config) -> Iterator[tuple[str, Command, Path, dict[str, str]]]:
    """(who needs it, command, cwd, env) for the commands syncd runs on this machine by itself.
    Actions are left out: they run only when asked for."""
    for svc in cfg.services:
        for j, b in enumerate(svc.build):
            who = f"services[{svc.name}].build[{j}] '{step_name(svc.name, b.name, j, len(svc.build))}'"
            yield who, b.cmd, cfg.resolve(b.cwd or "."), b.env
        if svc.fallback is not None:
            yield f"services[{svc.name}].fallback", svc.fallback, cfg.root, {}


def _locate(prog: str, cwd: Path, env: dict[str, str]) -> str | None:
    # A name with a slash is relative to the step's cwd, as exec resolves it; else the step's PATH.
    path = str(cwd / prog) if "/" in prog else shutil.which(prog, path=env.get("PATH") or os.environ.get("PATH"))
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def _version(path: str) -> tuple[bool, str]:
    try:  # a rustup proxy without a toolchain is on PATH yet fails: `--version` tells
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return done.returncode == 0, ((done.stdout or done.stderr).strip().splitlines() or [""])[0]


def check_local_tools(cfg: Config) -> list[Check]:
    needed: dict[str, list[str]] = {}
    where: dict[str, str | None] = {}
    for who, cmd, cwd, env in local_commands(cfg):
        prog = program_of(cmd)
        if prog is not None:
            needed.setdefault(prog, []).append(who)
            where.setdefault(prog, _locate(prog, cwd, env))
    if not needed:
        return [Check("local tools", True, "no build step or fallback runs a local program")]
    checks = []
    for prog, users in needed.items():
        name, by, path = f"local tool {prog}", f"needed by {', '.join(users)}", where[prog]
        if path is None:
            checks.append(Check(name, False, f"{prog} not found ({by})",
                                INSTALL.get(prog, f"install {prog} (it is looked up on PATH), or fix the command")))
        elif prog not in VERSIONED:
            checks.append(Check(name, True, f"{path} ({by})"))
        else:
            ok, line = _version(path)
            fix = "rustup: `rustup default stable`" if prog == "cargo" else INSTALL[prog]
            version = line if line.startswith(prog) else f"{prog} {line}"
            checks.append(Check(name, True, f"{version} at {path} ({by})") if ok else
                          Check(name, False, f"`{prog} --version` fails: {line} ({by})", fix))
    return checks


def count_dirs(roots: list[Path], stop_after: int) -> int:
    """Directories the watcher puts an inotify watch on: every directory below the roots,
    ignored ones included (ignores filter events, not watches), symlinks followed once."""
    seen: set[tuple[int, int]] = set()
    stack = [str(r) for r in roots]
    while stack and len(seen) <= stop_after:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(d) as entries:
                stack.extend(e.path for e in entries if e.is_dir())
        except OSError:
            pass
    return len(seen)


def check_inotify(roots: list[Path], limit_file: Path) -> Check:
    try:
        limit = int(limit_file.read_text().split()[0])
    except FileNotFoundError:
        return Check("inotify", True, f"{limit_file} does not exist (not Linux): no per-user watch limit")
    except (OSError, ValueError, IndexError) as e:
        return Check("inotify", None, f"skipped (cannot read {limit_file}: {e})")
    count = count_dirs(roots, stop_after=limit)
    shown = f"more than {limit}" if count > limit else str(count)
    detail = (f"{shown} directories under {len(roots)} watched root(s) ({', '.join(map(str, roots))}); "
              f"fs.inotify.max_user_watches = {limit}")
    if count <= limit * INOTIFY_SHARE:
        return Check("inotify", True, detail)
    new = max(INOTIFY_SUGGESTED, 1 << (2 * count).bit_length())
    return Check("inotify", False, f"{detail} (over {INOTIFY_SHARE:.0%}: the watcher will miss changes)", "\n".join([
        f"raise it: `sudo sysctl fs.inotify.max_user_watches={new}`",
        f"to persist: `echo fs.inotify.max_user_watches={new} | sudo tee /etc/sysctl.d/90-syncd-inotify.conf`",
        "or sync narrower sources: every directory below a mapping's src is watched, ignored ones (node_modules/) too",
    ]))


# --- running it all ------------------------------------------------------------------------


def doctor_checks(config: str | Callable[[], Config] | None,
                  inotify_limit_file: Path = INOTIFY_LIMIT_FILE) -> Iterator[Check]:
    """Every check in order, each yielded as it completes (some take a network round trip)."""
    first, cfg = check_config(config)
    yield first
    if cfg is None:
        yield skipped("targets, containers, local tools, inotify", "they need a valid config")
        return
    transports = make_transports(cfg)
    try:
        engine: Check | None = None  # one engine serves every docker target: ask it once
        for name, spec in cfg.targets.items():
            if isinstance(spec, DockerTarget):
                if engine is None:
                    engine = check_docker_engine()
                    yield engine
                if engine.ok:
                    from syncd.transports.docker import DockerTransport

                    docker_t = transports[name]
                    assert isinstance(docker_t, DockerTransport)
                    yield from check_docker_target(name, docker_t, target_dests(cfg, name))
                else:
                    yield skipped(f"target {name}", "no Docker engine")
            elif isinstance(spec, KubernetesTarget):
                from syncd.transports.kube import KubeTransport

                kube_t = transports[name]
                assert isinstance(kube_t, KubeTransport)
                yield from check_kube_target(name, spec, kube_t, target_dests(cfg, name))
            else:
                yield check_local_target(name, cfg.resolve(spec.path))
        yield from check_local_tools(cfg)
        if cfg.compose is not None:
            yield check_compose_cli(cfg)
        from syncd.core.paths import watch_sources  # the roots the daemon itself would watch
        from syncd.services import service_runtimes
        from syncd.watch import watch_roots

        yield check_inotify(watch_roots(watch_sources(service_runtimes(cfg), cfg.resolve)), inotify_limit_file)
    finally:
        for t in transports.values():
            anyio.run(t.close)


MARKS = {True: ("✓", "green"), False: ("✗", "bold red"), None: ("–", "dim")}


def render(console: Console, check: Check) -> None:
    mark, style = MARKS[check.ok]
    # Text, not markup: details quote user input and error messages that may hold [brackets].
    console.print(Text.assemble((mark, style), " ", (check.name, "bold"), ": ", check.detail), soft_wrap=True)
    for i, line in enumerate(check.remedy.splitlines() if check.ok is False else []):
        console.print(Text.assemble("    ", ("fix: " if i == 0 else "     ", "yellow"), line), soft_wrap=True)


def run_doctor(config: str | Callable[[], Config] | None, console: Console,
               inotify_limit_file: Path = INOTIFY_LIMIT_FILE) -> int:
    """Run every check, print a line for each (and its fix); 0 when none failed, else 1."""
    checks = []
    for check in doctor_checks(config, inotify_limit_file):
        render(console, check)
        checks.append(check)
    failed, skips = sum(c.ok is False for c in checks), sum(c.ok is None for c in checks)
    tail = f" ({skips} skipped)" if skips else ""
    if failed:
        console.print(Text(f"{failed} of {len(checks)} checks failed{tail}", style="bold red"))
        return 1
    console.print(Text(f"all {len(checks) - skips} checks passed{tail}", style="green"))
    return 0

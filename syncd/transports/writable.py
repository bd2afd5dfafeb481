"""Can the container's user write where syncd writes? The probe, and the error that says so.

Most production-like containers run as a non-root user (`runAsUser: 1000`, `--user 1000`),
often with a read-only root filesystem and the app's writable paths on a volume. A batch
that cannot be written fails in tar with a raw "Permission denied"; this module turns that
into an error naming the container, the exec user (uid/gid as the container reports them),
the directory that refused, and the fixes. `syncd doctor` runs the same probe over every
destination.

The probe creates (and removes) `.syncd-probe.<pid>` in each directory it checks: a real write,
because `[ -w ]` answers "yes" to root on a read-only filesystem. It writes nowhere else, so it
works where `/tmp` is read-only. Directory names travel on stdin (escaped, ended by an empty
line: Kubernetes v4 exec cannot close stdin), never in argv or the script text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncd.transports.base import ContainerRef, TransportError
from syncd.transports.shell import escape_name

# Shell functions for anything that must write in the container beyond the tar stream:
# `can_write DIR` (creates and removes a probe file: the only reliable test), and `tmp_dir DEST`
# (where syncd's own temporary files may go: the destination itself when it is writable, else
# $TMPDIR, /tmp, /var/tmp, /dev/shm — never /tmp assumed; with a read-only root, only a volume).
WRITABLE = r"""
can_write() { true 2>/dev/null >"$1/.syncd-probe.$$" && rm -f -- "$1/.syncd-probe.$$"; }
tmp_dir() {
  for t in "$1" "${TMPDIR:-}" /tmp /var/tmp /dev/shm; do
    [ -n "$t" ] && [ -d "$t" ] && can_write "$t" && { printf '%s\n' "$t"; return 0; }
  done
  return 1
}
"""

# $1: the root the paths are relative to. For each directory syncd must write in (a missing
# one: the nearest existing directory above it, where it would be created), one real write;
# the refusals are printed with the reason the kernel gave, then where temporary files could
# go (the first writable directory probed, else tmp_dir's candidates). Consecutive paths with the same
# nearest directory are probed once; at most PROBE_LIMIT writes and 20 refusals per run (a
# big batch's directories are many; the first refusals say enough).
PROBE_LIMIT = 200
PROBE_SCRIPT = WRITABLE + r"""
exec 2>/dev/null
uid=$(id -u || sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' /proc/self/status)
gid=$(id -g || sed -n 's/^Gid:[[:space:]]*\([0-9]*\).*/\1/p' /proc/self/status)
name=$(id -un) || name=  # busybox prints the number (and fails) for a uid /etc/passwd lacks
printf '@@ID\t%s\t%s\t%s\n' "$uid" "$gid" "$name"
root=$1; prev=; why=; ok=; left=@LIMIT@; bad=0
while IFS= read -r l && [ -n "$l" ]; do
  case /$l/ in */../*) continue ;; esac
  case $l in *\\*) l=$(printf '%b' "$l") ;; esac
  want="${root%/}/${l#./}"; want=${want%/}; want=${want:-/}
  d=$want
  while [ ! -e "$d" ] && [ ! -L "$d" ]; do d=${d%/*}; d=${d:-/}; done
  [ -d "$d" ] || continue
  if [ "$d" = "$prev" ]; then  # probed already: its refusal holds for this path too
    [ -n "$why" ] || continue
    printf '@@NO\t%s\t%s\t%s\n' "$why" "$d" "$want"
    bad=$((bad + 1))
    [ "$bad" -lt 20 ] && continue || break
  fi
  prev=$d; why=
  [ "$left" -gt 0 ] || break
  left=$((left - 1))
  if can_write "$d"; then ok=${ok:-$d}; continue; fi
  why=$( (true >"$d/.syncd-probe.$$") 2>&1 ); why=${why##*: }; why=${why:-refused}
  printf '@@NO\t%s\t%s\t%s\n' "$why" "$d" "$want"
  bad=$((bad + 1))
  [ "$bad" -lt 20 ] || break
done
printf '@@TMP\t%s\n' "$(tmp_dir "${ok:-/nonexistent}")"
""".replace("@LIMIT@", str(PROBE_LIMIT))

# What tar, mkdir and rm print when the kernel refuses a write (busybox and GNU alike).
REFUSALS = ("Permission denied", "Read-only file system", "Operation not permitted")


def looks_refused(output: str) -> bool:
    """Did a failed request fail because something could not be written?"""
    return any(r in output for r in REFUSALS)


def probe_input(dirs: Iterable[str]) -> bytes:
    """PROBE_SCRIPT's stdin: directories relative to its root ("" is the root itself)."""
    return b"".join(escape_name("./" + d) + b"\n" for d in dirs) + b"\n"


@dataclass(frozen=True)
class Refusal:
    reason: str  # the kernel's words: "Permission denied", "Read-only file system"
    dir: str  # the directory that refused a new file
    wanted: str  # what syncd must write: `dir` itself, or a missing directory below it

    @property
    def read_only(self) -> bool:
        return "read-only" in self.reason.lower()


@dataclass(frozen=True)
class Access:
    """What the probe found: the exec user, the directories that refused, a writable temp dir."""

    uid: str
    gid: str
    user: str = ""  # the name, when the image's /etc/passwd knows the uid
    refused: tuple[Refusal, ...] = ()
    tmp: str = ""  # "" when no candidate is writable

    @property
    def who(self) -> str:
        return f"uid={self.uid or '?'} gid={self.gid or '?'}" + (f" ({self.user})" if self.user else "")


def parse_probe(output: str) -> Access:
    uid = gid = user = tmp = ""
    refused: list[Refusal] = []
    for line in output.splitlines():
        fields = line.split("\t")
        if fields[0] == "@@ID" and len(fields) >= 3:
            uid, gid, user = fields[1], fields[2], fields[3] if len(fields) > 3 else ""
        elif fields[0] == "@@NO" and len(fields) >= 4:
            refused.append(Refusal(fields[1] or "refused", fields[2], "\t".join(fields[3:])))
        elif fields[0] == "@@TMP" and len(fields) >= 2:
            tmp = fields[1]
    return Access(uid, gid, user, tuple(refused), tmp)


def refusal_text(access: Access, r: Refusal) -> str:
    """One refusal in words (the message's middle, and a doctor line)."""
    if r.read_only:
        where = r.wanted if r.dir == r.wanted else f"{r.wanted} (to be created in {r.dir})"
        return f"{where} is on a read-only filesystem ({r.reason}); the exec user is {access.who}"
    if r.dir == r.wanted:
        return f"the exec user ({access.who}) may not create files in {r.dir} ({r.reason})"
    return f"{r.wanted} does not exist and the exec user ({access.who}) may not create it in {r.dir} ({r.reason})"


def fix_text(access: Access, r: Refusal, other_user: str) -> str:
    """What the user can do about a refusal; `other_user`: the runtime's way to exec as
    another user ("" when it has none)."""
    if r.read_only:
        fix = (f"mount a writable volume at {r.wanted} (Kubernetes: an emptyDir; Docker: a volume or --tmpfs): "
               "with readOnlyRootFilesystem / --read-only only volumes can be written")
        other_user = ""  # no user may write a read-only filesystem
    else:
        owner = f"{access.uid}:{access.gid}" if access.uid and access.gid else "<uid>:<gid>"
        fix = (f"make {r.wanted} writable by uid {access.uid or '<uid>'} in the image "
               f"(Dockerfile: RUN mkdir -p {r.wanted} && chown {owner} {r.wanted}), "
               f"or mount a volume (Kubernetes: an emptyDir) at {r.wanted}")
    return fix + (f", or {other_user}" if other_user else "") + "; syncd retries and catches up once it can write"


def not_writable(ref: ContainerRef, access: Access, other_user: str) -> TransportError | None:
    """The error for the first refusal (parents are probed before children); None when the
    probe found every directory writable (the failure was something else)."""
    if not access.refused:
        return None
    r = access.refused[0]
    return TransportError(f"{ref.label}: cannot write {r.wanted}: {refusal_text(access, r)}",
                          fix_text(access, r, other_user), permanent=True)

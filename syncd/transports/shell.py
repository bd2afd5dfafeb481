"""The container side of exec-based transports: POSIX sh scripts and their wire formats.

Nothing is installed in the image: the scripts need `sh`, `tar`, `find`, `xargs`, `sha1sum`
(busybox, coreutils or both). File names never appear in argv or in the script text: they
travel on stdin (deletes) or stdout (manifests) as data.
"""

from __future__ import annotations

import hashlib
import re
import string
import sys
import zlib
from collections.abc import Iterable, Iterator

from syncd.core.manifest import DIR, Manifest
from syncd.model import DestPath, Entry, Kind

# First on stdin: the directories the batch writes or deletes in (octal-escaped, one per line,
# ended by an empty line). A symlink on the way to any of them is removed before anything
# else happens — the local tree has a directory there — so neither tar nor rm ever follows a
# symlink planted in the container out of the destination; the notice on stderr makes syncd
# compare the trees again (what was behind the symlink is not what it thought). Shell
# builtins only: no process per directory on the hot path.
GUARD = r"""
guard_dirs() {
  while IFS= read -r l && [ -n "$l" ]; do
    case /$l/ in */../*) continue ;; esac
    case $l in *\\*) l=$(printf '%b' "$l") ;; esac
    p=.; o=$IFS; IFS=/; set -f
    for c in ${l#./}; do
      p="$p/$c"
      if [ -L "$p" ]; then rm -f -- "$p" && echo "syncd: removed symlink $p (in the way of synced files)" >&2; fi
    done
    set +f; IFS=$o
  done
}
"""

# Then the deletes, one octal-escaped name per line, ended by an empty line; `read` consumes
# stdin byte by byte, so the tar stream that follows is left intact for tar. `printf %b`
# turns each line back into the raw name, NUL-terminated, for `xargs -0 rm`.
APPLY_SCRIPT = GUARD + r"""
command -v tar >/dev/null 2>&1 || { echo "syncd: 'tar' not found in the container" >&2; exit 127; }
mkdir -p -- "$1" && cd -- "$1" || exit 126
guard_dirs
while IFS= read -r l && [ -n "$l" ]; do case /$l/ in */../*) ;; *) printf '%b\0' "$l" ;; esac; done |
  xargs -0 -r rm -rf -- || exit 125
tar -xof - || exit $?
"""

# The same, for channels that cannot close stdin (Kubernetes exec over v4.channel.k8s.io):
# the tar stream arrives as byte-counted chunks ("<n>\n" + n bytes, ended by "0\n"), and
# `dd bs=n count=1 iflag=fullblock` reads exactly n bytes, never past the chunk, so the
# script ends when the stream ends whether or not stdin is ever closed.
FRAMED_APPLY_SCRIPT = GUARD + r"""
command -v tar >/dev/null 2>&1 || { echo "syncd: 'tar' not found in the container" >&2; exit 127; }
mkdir -p -- "$1" && cd -- "$1" || exit 126
guard_dirs
while IFS= read -r l && [ -n "$l" ]; do case /$l/ in */../*) ;; *) printf '%b\0' "$l" ;; esac; done |
  xargs -0 -r rm -rf -- || exit 125
while IFS= read -r n && [ "$n" -gt 0 ]; do
  dd bs="$n" count=1 iflag=fullblock 2>/dev/null || { echo "syncd: dd failed" >&2; exit 124; }
done | tar -xof - || exit $?
"""

# A compressed batch: the same scripts with `tar` reading through `gzip -d`. A gzip failure
# (a corrupt stream, no gzip) is said on stderr: syncd then takes the batch as failed, since
# tar may have ended cleanly on what it got (syncd/transports/exec.py).
GUNZIP_FAILED = "syncd: gzip -d failed"
GUNZIP = "tar() { { gzip -dc || echo '" + GUNZIP_FAILED + "' >&2; } | command tar \"$@\"; }\n"
GZIP_APPLY_SCRIPT = GUNZIP + APPLY_SCRIPT
GZIP_FRAMED_APPLY_SCRIPT = GUNZIP + FRAMED_APPLY_SCRIPT


def gzipped(chunks: Iterable[bytes], level: int) -> Iterator[bytes]:
    """The stream gzip-compressed on the fly (the gzip format `gzip -d` reads)."""
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()


FRAME = 1 << 20


def rechunk(chunks: Iterable[bytes], size: int = FRAME) -> Iterator[bytes]:
    """Regroup a stream into pieces of at most `size` bytes (small ones merged), so many
    small files cost a few large writes, and no frame exceeds the limit."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def frame_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Byte-counted framing for FRAMED_APPLY_SCRIPT."""
    for piece in rechunk(chunks, FRAME // 2):
        yield b"%d\n" % len(piece) + piece
    yield b"0\n"


_SAFE = frozenset((string.ascii_letters + string.digits + "._+-/").encode())


def escape_name(name: str) -> bytes:
    """`printf %b` escape of every byte that is not plainly safe: \\0ooo octal."""
    raw = name.encode("utf-8", "surrogateescape")
    return b"".join(bytes([c]) if c in _SAFE else b"\\0%03o" % c for c in raw)


def encode_deletes(names: list[str]) -> bytes:
    """Names relative to the extraction root, each prefixed `./` so none starts with `-`."""
    return b"".join(escape_name("./" + n) + b"\n" for n in names) + b"\n"


def encode_head(guard: list[str], deletes: list[str]) -> bytes:
    """What precedes the tar stream of an apply: the guard section, then the deletes."""
    return encode_deletes(guard) + encode_deletes(deletes)


# For each destination: the directory names are relative to, then either (quick) one `stat`
# line per entry — raw mode, size, mtime — symlinks included, or (hashes) its symlinks (+
# targets), directories, exec files and the `sha1sum` output of its files. Sections are
# NUL-separated. A file destination (`/app/bin/api`) is listed from its parent as `./api`.
# The quick listing walks the tree once: on 100,000 files each walk costs the container ~0.4 s.
# Its symlinks come without targets (`UNREAD_LINK`); the session reads them after it, only
# when there are any (`Session.links`).
MANIFEST_ONE = r"""
  d=$1
  if [ -d "$d" ] && [ ! -L "$d" ]; then c="$d"; s=.
  elif [ -e "$d" ] || [ -L "$d" ]; then c="${d%/*}"; s="./${d##*/}"
  else return 0; fi
  printf '@@M\0%s\0' "${c:-/}"
  (
    cd -- "${c:-/}" || exit 0
    if [ "$2" = stat ] && command -v stat >/dev/null 2>&1; then
      printf '@@A\0'; find "$s" -print0 | xargs -0 -r stat -c '@STAT@'; printf '\0'
    else
      printf '@@L\0'; find "$s" -type l -exec sh -c 'for l; do printf "%s\0%s\0" "$l" "$(readlink "$l")"; done' sh {} +
      printf '@@D\0'; find "$s" -type d -print0
      printf '@@X\0'; find "$s" -type f -perm -100 -print0
      printf '@@H\0'; find "$s" -type f -print0 | xargs -0 -r sha1sum; printf '\0'
    fi
  )
"""
STAT_FORMAT = "%f %s %Y %y %Z %n"  # see _STAT_RECORD
MANIFEST_ONE = MANIFEST_ONE.replace("@STAT@", STAT_FORMAT)
MANIFEST_SCRIPT = "manifest_one() {" + MANIFEST_ONE + "}\nfor d in \"$@\"; do manifest_one \"$d\"; done\n"

# busybox sha1sum prints "<40 hex>  <name>\n" without escaping; GNU coreutils prefixes the
# line with "\\" and escapes "\\", "\n" (and "\r") when a name holds them. A record starts
# at a line that begins with an optional "\\", a digest, two spaces and "./" (every name
# here starts with "./").
_HASH_RECORD = re.compile(rb"(?:^|\n)(\\?)([0-9a-f]{40})  \./")
_GNU_ESCAPE = re.compile(rb"\\(.)", re.S)
_GNU_CODES = {b"n": b"\n", b"r": b"\r", b"\\": b"\\"}


def _join(base: DestPath, rel: bytes) -> DestPath:
    name = rel.decode("utf-8", "surrogateescape")
    name = name[2:] if name.startswith("./") else name
    # interned, as the local side's paths are: replicas' manifests share one string per path
    return base if name in ("", ".") else sys.intern(base.rstrip("/") + "/" + name)


def parse_manifest(out: bytes) -> Manifest:
    """Parse MANIFEST_SCRIPT's output into container path -> Entry."""
    manifest: Manifest = {}
    tokens = out.split(b"\0")
    base, section, i = "/", b"", 0
    execs: set[DestPath] = set()
    while i < len(tokens):
        tok = tokens[i]
        if tok == b"@@M" and i + 1 < len(tokens):
            base = tokens[i + 1].decode("utf-8", "surrogateescape")
            execs = set()
            i += 2
            continue
        if tok in (b"@@D", b"@@L", b"@@X"):
            section = tok
        elif tok == b"@@H":
            if i + 1 < len(tokens):
                _parse_hashes(tokens[i + 1], manifest, base, execs)
            i += 1
        elif tok == b"@@A":
            if i + 1 < len(tokens):
                _parse_stats(tokens[i + 1], manifest, base)
            i += 1
        elif tok and section == b"@@D":
            manifest[_join(base, tok)] = DIR
        elif tok and section == b"@@L":
            target = tokens[i + 1] if i + 1 < len(tokens) else b""
            manifest[_join(base, tok)] = Entry(Kind.LINK, link=target.decode("utf-8", "surrogateescape"))
            i += 1
        elif tok and section == b"@@X":
            execs.add(_join(base, tok))
        i += 1
    return manifest


def _parse_hashes(blob: bytes, manifest: Manifest, base: DestPath, execs: set[DestPath]) -> None:
    records = [(m.start(1), m.group(1) == b"\\") for m in _HASH_RECORD.finditer(blob)]
    for k, (start, escaped) in enumerate(records):
        if k + 1 < len(records):
            line = blob[start : records[k + 1][0] - 1]
        else:
            line = blob[start:]
            line = line[:-1] if line.endswith(b"\n") else line
        if escaped:
            line = line[1:]
        name = line[42:]
        if escaped:
            name = _GNU_ESCAPE.sub(lambda m: _GNU_CODES.get(m.group(1), m.group(0)), name)
        path = _join(base, name)
        manifest[path] = Entry(Kind.FILE, digest=line[:40].decode(), exec=path in execs)


# `stat -c '%f %s %Y %y %Z %n'`: "<raw mode, hex> <size> <mtime> <date> <time.nanoseconds>
# <zone> <ctime> ./name" per line, names unescaped (like busybox sha1sum). The ctime is read
# by no parse: it is there for the listing's fingerprint (`listing_fingerprint`), which must
# change with any write, and only a ctime surely does. tar writes whole-second
# mtimes, so a non-zero sub-second part means something else wrote the file since: its mtime
# proves nothing. A symlink's target is not in it (`UNREAD_LINK` until read). Types other than
# directories, regular files and symlinks are not synced: left out.
_STAT_RECORD = re.compile(rb"(?:^|\n)([0-9a-fA-F]+) (\d+) (\d+) \S+ [0-9:]+(?:\.(\d+))? \S+ \d+ \.(?=/|\n|$)")
_S_IFMT, _S_IFDIR, _S_IFREG, _S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
# The target of a symlink a quick listing found, before it is read: NUL is in no target.
UNREAD_LINK = "\0unread"


def _parse_stats(blob: bytes, manifest: Manifest, base: DestPath) -> None:
    records = list(_STAT_RECORD.finditer(blob))
    for k, m in enumerate(records):
        end = records[k + 1].start() if k + 1 < len(records) else len(blob)
        name = blob[m.end() - 1 : end]  # "./name", or "." for the listed directory itself
        name = name[:-1] if name.endswith(b"\n") else name
        mode = int(m.group(1), 16)
        kind = mode & _S_IFMT
        if kind == _S_IFDIR:
            manifest[_join(base, name)] = DIR
        elif kind == _S_IFREG:
            written_by_tar = not (m.group(4) or b"").strip(b"0")
            mtime = int(m.group(3)) if written_by_tar else -2  # -2: matches no local mtime
            manifest[_join(base, name)] = Entry(Kind.FILE, exec=bool(mode & 0o100), size=int(m.group(2)),
                                                mtime=mtime)
        elif kind == _S_IFLNK:
            manifest[_join(base, name)] = Entry(Kind.LINK, link=UNREAD_LINK)


def listing_fingerprint(listing: bytes, rc: int) -> str:
    """The fingerprint of a listing as the container printed it (and its exit code): what the
    session's `fingerprint` request has the container compute without sending the listing."""
    return hashlib.sha1(listing + b"\0@@RC %d\0" % rc).hexdigest()


_FINGERPRINT = re.compile(rb"\A([0-9a-f]{40}) ")


def parse_fingerprint(out: bytes) -> str:
    """`sha1sum`'s digest of stdin ("<40 hex>  -"); "" for anything else (no sha1sum)."""
    m = _FINGERPRINT.match(out)
    return m.group(1).decode() if m else ""


def unread_links(manifest: Manifest) -> list[DestPath]:
    """The symlinks of a quick listing whose targets are still to be read."""
    return [path for path, e in manifest.items() if e.kind is Kind.LINK and e.link == UNREAD_LINK]


def parse_hash_list(out: bytes) -> dict[DestPath, str]:
    """sha1sum output for names given as "./<absolute path without the slash>" from "/"."""
    found: Manifest = {}
    _parse_hashes(out, found, "/", set())
    return {path: e.digest for path, e in found.items()}


SYMLINK_REMOVED = "syncd: removed symlink"  # GUARD's notice on stderr, one line per symlink


def removed_symlinks(output: str) -> tuple[str, ...]:
    """The symlinks GUARD removed (paths relative to the apply's root), from its notices."""
    prefix = SYMLINK_REMOVED + " "
    return tuple(line[len(prefix):].split(" (in the way", 1)[0].removeprefix("./")
                 for line in output.splitlines() if line.startswith(prefix))

"""The container side of a block delta (syncd/core/delta.py): `sh` + `dd` + `sha1sum` (+ `gzip -d`
for compressed literals), nothing installed.

Request arguments: ROOT NAME BLOCK BASE RESULT MODE MTIME (NAME relative to ROOT, BASE the
sha1 the container's copy must have, RESULT the sha1 the rebuilt file must have). Stdin: the
guard section (GUARD in shell.py: no symlink on the way is followed), then the ops, one per
line — `C <block> <count>` (copy from the base), `L <n>` + n bytes, `Z <n>` + n bytes of
gzip, `E` (end). Every op is consumed whatever happens, so the next session request starts
in sync.

The container first checks its copy is BASE (sha1sum), builds the new version beside it
(`.NAME.syncd-patch`, same directory: same file system, writable wherever the destination
is — never /tmp), checks RESULT, then renames it into place: a reader sees the old file or
the new one, never a half-patched one. Anything else (another base, none, a corrupt op, no
space) leaves the destination untouched and exits 3 with a line saying why; syncd then sends
the file whole.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

from syncd.core.delta import Copy, Encoded, literal_pieces
from syncd.transports.shell import GUARD, encode_deletes

REFUSED = 3  # the patch was not applied (the output says why): send the file whole

# Kept terse: the session script travels in the exec URL of Kubernetes, which API servers
# cap at 8 KiB; a refusal prints a code WHY maps to words.
PATCH_REQ = r"""
patch_req() {
if mkdir -p -- "$1" 2>/dev/null && cd -- "$1"; then guard_dirs; b=$4
else while IFS= read -r l && [ -n "$l" ]; do :; done; b=!; fi
d=$2; t="${d%/*}/.${d##*/}.syncd-patch"; w=
if [ "$b" != - ]; then h=
 [ -f "$d" ] && [ ! -L "$d" ] && h=$(sha1sum <"$d")
 [ "${h%% *}" = "$b" ] || w=base; fi
[ -n "$w" ] || { mkdir -p -- "${d%/*}" && :>"$t"; } 2>/dev/null || w=write
o=/dev/null; [ -n "$w" ] || o=$t
while IFS=' ' read -r op x y && [ "$op" != E ]; do case $op in
 C) [ -n "$w" ] || dd if="$d" bs="$3" skip="$x" count="$y" || w=read;;
 L) dd bs="$x" count=1 iflag=fullblock || w=write;;
 Z) dd bs="$x" count=1 iflag=fullblock | gzip -dc || w=gzip;;
 *) w=op;; esac; done 2>/dev/null >"$o"
if [ -z "$w" ]; then h=$(sha1sum <"$t"); [ "${h%% *}" = "$5" ] || w=result; fi
if [ -z "$w" ]; then chmod "$6" "$t" && { touch -d "@$7" "$t" 2>/dev/null; mv -f -- "$t" "$d"; } && return 0; w=rename; fi
rm -f -- "$t" 2>/dev/null; echo "syncd-patch: $w"; return 3
}
"""

WHY = {
    "base": "the container's copy is not the base version (changed behind syncd's back, or gone)",
    "write": "cannot write the result beside the file (read-only or full file system)",
    "read": "reading the base failed",
    "gzip": "gzip -d failed (no gzip in the container?)",
    "op": "the delta arrived corrupted",
    "result": "the patched file is not the new version (the delta arrived corrupted?)",
    "rename": "cannot rename the result into place",
}


def why(output: str) -> str:
    code = output.strip().rpartition("syncd-patch: ")[2]
    return WHY.get(code, output.strip() or "no answer")


# One exec per patch (containers without a session): the same function, the request's
# arguments as "$@".
PATCH_SCRIPT = GUARD + PATCH_REQ + 'patch_req "$@"\n'

LITERAL_PIECE = 1 << 20  # one `dd` read (its buffer) per piece


def patch_args(root: str, name: str, block: int, base: str, result: str, mode: int, mtime: int) -> list[str]:
    return [root, "./" + name, str(block), base or "-", result, "%o" % (mode & 0o7777), str(mtime)]


def patch_stream(encoded: Encoded, guard: list[str], gzip_level: int = 0) -> Iterator[bytes]:
    """The request's stdin: guard section, ops, `E`. `gzip_level` > 0: literals gzip-compressed
    where that makes them smaller."""
    yield encode_deletes(guard)
    for op in encoded.ops:
        if isinstance(op, Copy):
            yield b"C %d %d\n" % (op.block, op.count)
            continue
        for piece in literal_pieces(op.data, LITERAL_PIECE):
            packed = gzip.compress(piece, gzip_level, mtime=0) if gzip_level else b""
            if packed and len(packed) < len(piece) * 0.95:
                yield b"Z %d\n" % len(packed) + packed
            else:
                yield b"L %d\n" % len(piece) + piece
    yield b"E\n"

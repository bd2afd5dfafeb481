"""Docker's `.dockerignore` matcher, reimplemented from its rules (moby/patternmatcher).

What a line means (as `docker build`, buildkit and compose read it):
- Lines are read as moby's ignorefile reader does: a line starting with `#` is a comment,
  surrounding whitespace is trimmed, blank lines are skipped, each pattern is cleaned like
  Go's `filepath.Clean` (`./a`, `a/`, `a//b/../b` are `a`, `a/b`) and a leading `/` dropped.
- Patterns are anchored at the context root: `*.md` matches `README.md`, not `docs/x.md`.
  A pattern matches a path when it matches the path or any of its parent directories, so
  `docs` takes everything below `docs/`. Files and directories are not told apart.
- `*` is any run of characters but `/`, `?` one character but `/`, `[...]` a class (`[^...]`
  negated), `\\x` a literal `x`. `**` is any number of directories, none included (`**/` is the
  same as `**`; `a**/b` is `a`, then any directories, then `b`). A pattern that starts with
  `**` and is literal after it matches every path that ends with that text (`**.txt` matches
  `a/b.txt`), as patternmatcher's suffix match does.
- The last pattern that matches decides. `!` makes an exception: it re-includes what it
  matches, even inside an excluded directory (`docs` then `!docs/README.md`).
- An invalid pattern (a malformed `[...]`, a trailing `\\`, a lone `!`) makes Docker refuse
  the whole file; here it is skipped and listed in `DockerPatterns.invalid`.

Each pattern becomes one regex; all of them are tried in one regex call (alternatives in
reverse order, so the first that matches is the last pattern that matches).

Where this differs from Docker, on purpose:
- `\\x` is always a literal `x`. patternmatcher pastes `\\x` into its regex, so `\\d` is a digit
  class there and `\\y` fails the build.
- `*` and `?` inside `[...]` are literal; patternmatcher turns them into `[^/]*` inside the
  class, a broken regex. `^` outside a class is literal (in patternmatcher's regex, an anchor
  that never matches).
- A path matches a pattern when the pattern matches the path or a parent (patternmatcher's
  MatchesOrParentMatches, the documented "last matching line wins"). buildkit's walker uses
  MatchesUsingParentResults, which differs in one corner: `a`, `!a/b`, `a` keeps `a/b` there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# token kinds of a compiled pattern
_ONE, _STAR, _ANY = 0, 1, 2  # one character; `*` (no `/`); `**` (anything, `/` included)


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str  # cleaned, without the `!`
    exception: bool
    regex: str
    tokens: tuple[tuple[int, str], ...]


def clean(path: str) -> str:
    """Go's path.Clean: the shortest equivalent path, lexically."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
        else:
            out.append(seg)
    joined = "/".join(out)
    return "/" + joined if rooted else joined or "."


def read_patterns(lines: Iterable[str]) -> list[str]:
    """The patterns of a .dockerignore's lines, as moby's ignorefile.ReadAll returns them."""
    out: list[str] = []
    for n, line in enumerate(lines):
        if n == 0:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        if line.startswith("#"):  # only in the first column: "  # x" is a pattern
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


class BadPattern(ValueError):
    pass


def _one_char(p: str, i: int) -> tuple[str, int]:
    """A class member at p[i] (Go's filepath getEsc): the character and the index after it."""
    if i >= len(p) or p[i] in "-]":
        raise BadPattern("malformed character class")
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise BadPattern("malformed character class")
    if i + 1 >= len(p):
        raise BadPattern("unterminated character class")
    return p[i], i + 1


def _char_class(p: str, i: int) -> tuple[str, int]:
    """The class opened just before p[i], as a Python regex, and the index after its `]`."""
    negated = i < len(p) and p[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    while not (i < len(p) and p[i] == "]" and items):
        lo, i = _one_char(p, i)
        hi = lo
        if p[i] == "-":
            hi, i = _one_char(p, i + 1)
        if lo > hi:  # Go's regexp refuses it: Docker fails on the first match
            raise BadPattern(f"invalid character class range {lo}-{hi}")
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    return "[" + "^" * negated + "".join(items) + "]", i + 1


def _literal(text: str) -> list[tuple[int, str]]:
    return [(_ONE, re.escape(c)) for c in text]


def _tokens(p: str) -> list[tuple[int, str]]:
    """Translate a cleaned pattern the way patternmatcher's compile() does, token by token.

    patternmatcher keeps exact, prefix (`abc/**`) and suffix (`**/abc`, `**abc`) patterns as
    string comparisons; those are expressed as tokens here, with the same meaning."""
    kind = "exact"
    toks: list[tuple[int, str]] = []
    i, step = 0, 0
    while i < len(p):
        ch = p[i]
        i += 1
        if ch == "*" and i < len(p) and p[i] == "*":
            i += 1
            if i < len(p) and p[i] == "/":
                i += 1  # `**/` is `**`
            if i == len(p):
                if kind == "exact":
                    kind = "prefix"
                else:
                    toks.append((_ANY, ".*"))
                    kind = "regexp"
            else:
                toks.append((_ANY, "(?:.*/)?"))
                kind = "regexp"
            if step == 0:
                kind = "suffix"
        elif ch == "*":
            toks.append((_STAR, "[^/]*"))
            kind = "regexp"
        elif ch == "?":
            toks.append((_ONE, "[^/]"))
            kind = "regexp"
        elif ch == "\\":
            if i == len(p):
                raise BadPattern("trailing backslash")
            toks.append((_ONE, re.escape(p[i])))
            i += 1
            kind = "regexp"
        elif ch == "[":
            cls, i = _char_class(p, i)
            toks.append((_ONE, cls))
            kind = "regexp"
        else:
            toks.append((_ONE, re.escape(ch)))
            kind = "regexp" if ch == "]" else kind
        step += 1
    if kind == "prefix":
        return [*_literal(p[:-2]), (_ANY, ".*")]
    if kind == "suffix":
        rest = p[2:]
        if rest.startswith("/"):  # `**/abc` is `abc` too
            return [(_ANY, "(?:.*/)?"), *_literal(rest[1:])]
        return [(_ANY, ".*"), *_literal(rest)]
    return toks


def compile_pattern(line: str) -> Pattern:
    """One pattern (a line as read_patterns returns it). Raises BadPattern."""
    p = clean(line.strip())
    exception = p.startswith("!")
    if exception:
        if len(p) == 1:
            raise BadPattern('illegal exclusion pattern: "!"')
        p = p[1:]
    toks = _tokens(p)
    regex = "".join(rx for _, rx in toks)
    return Pattern(p, exception, regex, tuple(toks))


Walker = list[tuple[int, re.Pattern[str] | None]]


def _walker(tokens: tuple[tuple[int, str], ...]) -> Walker:
    return [(kind, re.compile(rx, re.DOTALL) if kind == _ONE else None) for kind, rx in tokens]


def _reaches_below(walker: Walker, probe: str) -> bool:
    """Can the pattern match some path that starts with `probe` (a directory and `/`)?

    A walk of the pattern's tokens over `probe` (a regex cannot answer "is this the start of
    a match?"); once a `**` is reached anything may follow."""
    end = len(walker)

    def closure(states: set[int]) -> set[int] | None:  # None: a `**` was reached
        todo = list(states)
        while todo:
            k = todo.pop()
            if k < end:
                if walker[k][0] == _ANY:
                    return None
                if walker[k][0] == _STAR and k + 1 not in states:
                    states.add(k + 1)
                    todo.append(k + 1)
        return states

    states = closure({0})
    for ch in probe:
        if states is None:
            return True
        nxt: set[int] = set()
        for k in states:
            if k < end:
                kind, one = walker[k]
                if kind == _STAR and ch != "/":
                    nxt.add(k)
                elif one is not None and one.fullmatch(ch):
                    nxt.add(k + 1)
        states = closure(nxt)
        if states is not None and not states:
            return False
    return states is None or any(k < end for k in states)


class DockerPatterns:
    """The patterns of one .dockerignore (or any Docker-style ignore list, e.g. compose's
    `develop.watch` ignore), matched against paths relative to its directory."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        self.invalid: list[tuple[str, str]] = []  # (pattern, why)
        for line in read_patterns(lines):
            try:
                self.patterns.append(compile_pattern(line))
            except BadPattern as e:
                self.invalid.append((line, str(e)))
        self.exceptions = any(p.exception for p in self.patterns)
        self._walkers = [(i, _walker(p.tokens)) for i, p in enumerate(self.patterns) if p.exception]
        n = len(self.patterns)
        # One call finds the last matching pattern: alternatives in reverse order, the path
        # or one of its parents (`(?:/.*)?`).
        self._last = re.compile(
            "(?:" + "|".join(f"({p.regex})" for p in reversed(self.patterns)) + ")(?:/.*)?", re.DOTALL
        ).fullmatch if n else None
        self._n = n

    @classmethod
    def from_text(cls, text: str) -> DockerPatterns:
        return cls(text.split("\n"))

    def last_match(self, path: str) -> int:
        """Index of the last pattern matching `path` (slash-separated, relative), or -1."""
        if self._last is None or path in ("", "."):
            return -1
        m = self._last(path)
        return -1 if m is None or m.lastindex is None else self._n - m.lastindex

    def matches(self, path: str) -> bool:
        """Is `path` excluded (left out of the build context)?"""
        k = self.last_match(path)
        return k >= 0 and not self.patterns[k].exception

    def reincludes_below(self, directory: str, after: int = -1) -> bool:
        """Could an exception (one after pattern `after`, the one that excluded `directory`)
        re-include something below `directory`? False means the whole subtree is excluded and
        need not be walked. Errs on the side of True, never of False."""
        probe = directory + "/"
        return any(i > after and _reaches_below(w, probe) for i, w in self._walkers)

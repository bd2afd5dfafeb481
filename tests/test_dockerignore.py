""".dockerignore with Docker's semantics: the matcher (syncd.dockerignore) against moby's own
test tables, the rule sets' precedence (syncd.ignore), and `syncd sync` / the daemon end to end.

The tables are ported from moby/patternmatcher at commit
5a6d8429a19bb6948a372ff19e86fe83599a04b7 (patternmatcher_test.go: TestMatches,
multiPatternTests, matchTests/TestMatch, compileTests/TestCompile and the small tests;
ignorefile/ignorefile_test.go: TestReadAll). Windows-only rows are left out, as there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from engine_harness import running, settle, wait_until, write_config

from syncd.dockerignore import DockerPatterns, clean, compile_pattern, read_patterns
from syncd.ignore import IgnoreRules

# --- moby/patternmatcher: TestMatches (pattern, path, excluded) ---------------------------

MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),  # weird one
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),  # not on Windows
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
]


@pytest.mark.parametrize("pattern, path, excluded", MATCHES)
def test_matches(pattern: str, path: str, excluded: bool) -> None:
    pm = DockerPatterns([pattern])
    assert not pm.invalid
    assert pm.matches(path) is excluded


@pytest.mark.parametrize("patterns, path, excluded", MULTI)
def test_matches_multi_pattern(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerPatterns(patterns).matches(path) is excluded


# --- moby/patternmatcher: matchTests (from Go's filepath.Match tests) via TestMatch ----------

BAD = "bad"  # filepath.ErrBadPattern: Docker refuses the pattern
FILEPATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", BAD),
    ("[-]", "-", BAD),
    ("[x-]", "x", BAD),
    ("[x-]", "-", BAD),
    ("[x-]", "z", BAD),
    ("[-x]", "x", BAD),
    ("[-x]", "-", BAD),
    ("[-x]", "a", BAD),
    ("\\", "a", BAD),
    ("[a-b-c]", "a", BAD),
    ("[", "a", BAD),
    ("[^", "a", BAD),
    ("[^bc", "a", BAD),
    ("a[", "a", BAD),
    ("a[", "ab", BAD),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize("pattern, path, want", FILEPATH_MATCH)
def test_filepath_match_table(pattern: str, path: str, want: bool | str) -> None:
    pm = DockerPatterns([pattern])
    if want == BAD:
        assert [p for p, _ in pm.invalid] == [pattern] and not pm.patterns
        assert pm.matches(path) is False
    else:
        assert not pm.invalid
        assert pm.matches(path) is want


# --- moby/patternmatcher: compileTests ------------------------------------------------------
# Docker's regex, with `(.*/)?` written `(?:.*/)?`. Exact, prefix and suffix patterns are
# string comparisons there (no regex): the regex that says the same thing is given instead.

COMPILE = [
    ("*", "[^/]*"),
    ("file*", "file[^/]*"),
    ("*file", "[^/]*file"),
    ("a*/b", "a[^/]*/b"),
    ("**", ".*"),  # suffix match of ""
    ("**/**", "(?:.*/)?.*"),
    ("dir/**", "dir/.*"),  # prefix match of "dir/"
    ("**/dir", "(?:.*/)?dir"),  # suffix match of "/dir", or "dir"
    ("**/dir2/*", "(?:.*/)?dir2/[^/]*"),
    ("**/dir2/**", "(?:.*/)?dir2/.*"),
    ("**file", ".*file"),  # suffix match of "file"
    ("**/file*txt", "(?:.*/)?file[^/]*txt"),
    ("**/**/*.txt", "(?:.*/)?(?:.*/)?[^/]*\\.txt"),
    ("a[b-d]e", "a[b-d]e"),
    (".*", "\\.[^/]*"),
    ("abc.def", "abc\\.def"),  # exact
    ("abc?def", "abc[^/]def"),
    ("**/foo/bar", "(?:.*/)?foo/bar"),  # suffix
    ("a(b)c/def", "a\\(b\\)c/def"),  # exact
    ("a.|)$(}+{bc", "a\\.\\|\\)\\$\\(\\}\\+\\{bc"),  # exact
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy\\.py\\-2\\.4\\.0rc3\\.dev36\\+g08acad9\\-py3\\-none\\-any\\.whl"),  # exact
]


@pytest.mark.parametrize("pattern, regex", COMPILE)
def test_compile(pattern: str, regex: str) -> None:
    assert compile_pattern(pattern).regex == regex


# --- moby/patternmatcher: the small tests ----------------------------------------------------


def test_small_cases() -> None:
    assert DockerPatterns(["*"]).matches("fileutils.go")  # TestWildcardMatches
    assert DockerPatterns(["*.go"]).matches("fileutils.go")  # TestPatternMatches
    assert DockerPatterns(["!fileutils.go", "*.go"]).matches("fileutils.go")  # ...PatternBefore
    for folder in ("docs", "docs/", "docs/*"):  # TestPatternMatchesFolder{,WithSlash,Wildcard}Exclusions
        assert not DockerPatterns([folder, "!docs/README.md"]).matches("docs/README.md")
    assert not DockerPatterns(["*.go", "!fileutils.go"]).matches("fileutils.go")  # ...PatternAfter
    assert not DockerPatterns(["*.go"]).matches(".")  # TestExclusionPatternMatchesWholeDirectory
    assert DockerPatterns(["!"]).invalid  # TestSingleExclamationError, TestCleanPatternsErrorSingleException
    assert not DockerPatterns([]).matches("/any/path/there")  # TestMatchesWithNoPatterns
    bad = DockerPatterns(["["])  # TestMatchesWithMalformedPatterns
    assert bad.invalid and not bad.matches("/any/path/there")
    assert len(DockerPatterns(["docs", "config"]).patterns) == 2  # TestCleanPatterns
    assert len(DockerPatterns(["docs", "config", ""]).patterns) == 2  # ...StripEmptyPatterns
    for exc in ("!docs/README.md", "  !docs/README.md", "!docs/README.md  "):  # ...ExceptionFlag, ...Trimmed
        assert DockerPatterns(["docs", exc]).exceptions
    # regression moby/moby#52203: passes the syntax check, fails to compile (range l-O)
    assert [p for p, _ in DockerPatterns(["[Local-Only]/"]).invalid] == ["[Local-Only]"]


def test_ignorefile_read_all() -> None:  # moby/patternmatcher/ignorefile: TestReadAll
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    assert read_patterns([]) == []
    assert read_patterns(content.split("\n")) == ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]


# --- beyond the tables ---------------------------------------------------------------------


def test_reading_cleans_like_docker() -> None:
    assert clean("./a//b/../c/") == "a/c" and clean("/../x") == "/x" and clean("../x") == "../x" and clean("") == "."
    pm = DockerPatterns.from_text("\ufeff# comment\n  # not a comment\r\n./src/\n/build\n\n!build/keep\n")
    assert [(p.text, p.exception) for p in pm.patterns] == [("# not a comment", False), ("src", False),
                                                            ("build", False), ("build/keep", True)]
    assert pm.matches("src/a.py") and pm.matches("build/x") and not pm.matches("build/keep")
    assert pm.matches("# not a comment")


def test_reincludes_below() -> None:
    pm = DockerPatterns(["**", "!util/docker/web"])
    assert pm.reincludes_below("util", 0) and pm.reincludes_below("util/docker", 0)
    assert not pm.reincludes_below("other", 0) and not pm.reincludes_below("util/dock", 0)
    assert not pm.reincludes_below("util", 1)  # only exceptions after the excluding line count
    anywhere = DockerPatterns(["**", "!**/*.go", "!a*b/c?/[xy]z"])
    assert anywhere.reincludes_below("deep/down/there", 0)
    assert not DockerPatterns(["**", "!a*b/c?/[xy]z"]).reincludes_below("a/c1", 0)
    assert DockerPatterns(["**", "!a*b/c?/[xy]z"]).reincludes_below("a_b/c1", 0)
    assert not DockerPatterns(["docs"]).reincludes_below("docs")


# --- precedence (syncd.ignore) ---------------------------------------------------------------


def _files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize("files, rel, ignored", [
    # a later .dockerignore exception re-includes a file a .gitignore ignored (later wins)
    ({".gitignore": "*.log\n", "app/.dockerignore": "!keep.log\n"}, "app/keep.log", False),
    ({".gitignore": "*.log\n", "app/.dockerignore": "!keep.log\n"}, "app/other.log", True),
    # ... but not below a directory a .gitignore ignored: git semantics for that directory
    ({".gitignore": "build/\n", "app/.dockerignore": "!build/keep.txt\n"}, "app/build/keep.txt", True),
    # ... unless the .dockerignore excludes the directory too (it is then the last to decide)
    ({".gitignore": "build/\n", "app/.dockerignore": "build\n!build/keep.txt\n"}, "app/build/keep.txt", False),
    ({".gitignore": "build/\n", "app/.dockerignore": "build\n!build/keep.txt\n"}, "app/build/other.txt", True),
    # a .syncdignore (later) ignores what the .dockerignore re-included
    ({"app/.dockerignore": "docs\n!docs/*.md\n", "app/.syncdignore": "docs/draft.md\n"}, "app/docs/draft.md", True),
    ({"app/.dockerignore": "docs\n!docs/*.md\n", "app/.syncdignore": "docs/draft.md\n"}, "app/docs/a.md", False),
    # a nested .gitignore still applies below its directory, re-included or not
    ({"app/.dockerignore": "**\n!sub\n", "app/sub/.gitignore": "*.tmp\n"}, "app/sub/x.tmp", True),
    ({"app/.dockerignore": "**\n!sub\n", "app/sub/.gitignore": "*.tmp\n"}, "app/sub/deep/x.txt", False),
    # VCS and syncd's own directories are never reopened
    ({"app/.dockerignore": "**\n!**/*.json\n"}, "app/.git/x.json", True),
    ({"app/.dockerignore": "**\n!**/*.json\n"}, "app/src/x.json", False),
    # a default (target/) the .dockerignore excludes too: its exceptions reach inside
    ({"app/.dockerignore": "**\n!**/*.rs\n"}, "app/target/debug/build/out/gen.rs", False),
    ({"app/.dockerignore": "**\n!**/*.rs\n"}, "app/target/debug/app", True),
    ({"app/.dockerignore": "!**/*.rs\n"}, "app/target/gen.rs", True),  # target/ ignored by the defaults only
    # nested .dockerignore: anchored at its own directory, for its own subtree
    ({"app/.dockerignore": "*.md\n", "app/be/.dockerignore": "docs\n!docs/keep.md\n"}, "app/README.md", True),
    ({"app/.dockerignore": "*.md\n", "app/be/.dockerignore": "docs\n!docs/keep.md\n"}, "app/be/README.md", False),
    ({"app/.dockerignore": "*.md\n", "app/be/.dockerignore": "docs\n!docs/keep.md\n"}, "app/be/docs/x.md", True),
    ({"app/.dockerignore": "*.md\n", "app/be/.dockerignore": "docs\n!docs/keep.md\n"}, "app/be/docs/keep.md", False),
    ({"app/.dockerignore": "*.md\n", "app/be/.dockerignore": "docs\n!docs/keep.md\n"}, "app/docs/x.txt", False),
    # an exception inside the directory it excluded
    ({"app/.dockerignore": "docs\n!docs/README.md\n"}, "app/docs/README.md", False),
])
def test_precedence(tmp_path: Path, files: dict[str, str], rel: str, ignored: bool) -> None:
    _files(tmp_path, files)
    assert IgnoreRules(tmp_path, []).ignored(tmp_path / rel, False, tmp_path / "app") is ignored


def test_service_ignore_comes_last_and_open_dirs(tmp_path: Path) -> None:
    _files(tmp_path, {"app/.dockerignore": "docs\n!docs/README.md\n"})
    app = tmp_path / "app"
    rules = IgnoreRules(tmp_path, ["README.md"])
    assert rules.ignored(app / "docs/README.md", False, app)
    rules = IgnoreRules(tmp_path, [])
    assert rules.ignored(app / "docs", True, app) and rules.open_below(app / "docs", app)  # walked, not sent
    assert not rules.open_below(app / "src", app) and rules.ignored(app / "docs/sub", True, app)
    assert not rules.open_below(app / "docs/sub", app)  # nothing below docs/sub can come back
    assert rules.reopens


# --- end to end: `syncd sync` into a local target --------------------------------------------

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[daemon]
trace = ".syncd/trace.jsonl"
[targets.box]
kind = "local"
path = "box"
[[services]]
name = "app"
target = "box"
sync = [{ src = "app", dest = "/srv/app" }]
"""


def sync(root: Path) -> set[str]:
    """`syncd sync` (as users run it), then the files the target holds, relative to /srv/app."""
    (root / "syncd.toml").write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's syncd, whatever is installed
    done = subprocess.run([sys.executable, "-m", "syncd", "sync"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    box = root / "box/srv/app"
    return {p.relative_to(box).as_posix() for p in box.rglob("*") if p.is_file()}


# The table: where gitignore semantics (syncd before) disagreed with Docker.
@pytest.mark.parametrize("dockerignore, kept, excluded", [
    ("*.md\n", ["docs/sub/nested.md"], ["top.md"]),
    ("foo\n", ["dir/foo"], ["foo"]),
    ("**\n!util/docker/web\n", ["util/docker/web/foo"], ["util/other", "x"]),
    ("docs\n!docs/README.md\n", ["docs/README.md"], ["docs/other.md"]),
    ("**/\n", [], ["file", "d/file"]),
    ("a**/*.txt\n", ["b/file.txt"], ["a/dir/file.txt", "a/file.txt"]),
], ids=["anchored-glob", "anchored-name", "exception-in-excluded-dirs", "exception-in-excluded-dir",
        "double-star-slash", "double-star-inside-name"])
def test_sync_follows_docker(tmp_path: Path, dockerignore: str, kept: list[str], excluded: list[str]) -> None:
    _files(tmp_path / "app", {rel: rel for rel in kept + excluded} | {".dockerignore": dockerignore})
    got = sync(tmp_path)
    assert set(kept) <= got
    assert not got & set(excluded)


def test_sync_nested_dockerignore_and_gitignore(tmp_path: Path) -> None:
    _files(tmp_path, {
        ".gitignore": "*.log\nbuild/\n",
        "app/.dockerignore": "*.md\n!keep.log\nbuild\n!build/bin\n",
        "app/README.md": "", "app/keep.log": "", "app/x.log": "", "app/build/bin": "", "app/build/tmp.o": "",
        "app/be/.dockerignore": "docs\n!docs/keep.md\n",
        "app/be/README.md": "", "app/be/docs/keep.md": "", "app/be/docs/x.md": "",
        "app/docs/x.txt": "",
    })
    got = sync(tmp_path)
    assert got == {".dockerignore", "keep.log", "build/bin", "be/.dockerignore", "be/README.md", "be/docs/keep.md",
                   "docs/x.txt"}


# --- the daemon: re-included paths arrive, and go, with the events ---------------------------

DAEMON = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 300
trace = ".syncd/trace.jsonl"
[targets.t]
kind = "local"
path = "sandbox"
[[services]]
name = "app"
target = "t"
sync = [{ src = "src", dest = "/app" }]
"""


@pytest.mark.anyio
async def test_daemon_follows_reincluded_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _files(src, {".dockerignore": "docs\n!docs/README.md\n**/cache\n!**/cache/keep\n", "docs/old.md": "",
                 "a.txt": "a"})
    box = tmp_path / "sandbox/app"
    _files(box, {"docs/container-only": "not syncd's"})  # ignored: never deleted
    cfg = write_config(tmp_path, DAEMON)
    async with running(cfg) as engine:
        (src / "docs/README.md").write_text("readme")  # a file appears in an excluded directory
        outside = tmp_path / "elsewhere/cache"
        _files(outside, {"keep": "k", "junk": "j"})
        shutil.move(outside, src / "cache")  # a directory moved in: one event, its files come along
        await settle(engine, src)
        assert (box / "docs/README.md").read_text() == "readme" and (box / "cache/keep").read_text() == "k"
        assert not (box / "docs/old.md").exists() and not (box / "cache/junk").exists()
        shutil.move(src / "docs", tmp_path / "elsewhere/docs")  # moved out: one event
        await settle(engine, src)
        await wait_until(lambda: not (box / "docs/README.md").exists(), what="the re-included file to go")
        assert (box / "docs/container-only").exists() and (box / "a.txt").exists()

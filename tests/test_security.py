"""Security cases (docs/RELIABILITY.md): nothing is written or deleted outside `dest` — not
through `..` or absolute tar names, not through a symlink planted in the container — and file
names never reach a shell. Run over the session, over per-exec, and over Kubernetes exec."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path

import anyio
import pytest

from syncd.config import load_config
from syncd.model import Entry, Kind, LocalFile, Put
from syncd.pack import PackReport, pack
from syncd.core.mapping import UnsafePath
from tests.engine_harness import running, settle, wait_until, write_config
from trees import container_tree, diff_trees, local_tree

pytestmark = [pytest.mark.anyio]

NASTY = ["$(touch PWNED)", "; rm -rf /", "-rf", "`touch PWNED2`", "a\nb", "it's \"quoted\"", "--help", "*", "ünï cødé"]


def _outside(container) -> dict:  # noqa: ANN001
    """Everything a test could have touched outside /app, read through Docker's archive API."""
    return {d: container_tree(container, d) for d in ("/outside", "/tmp", "/etc")}


def _config(root: Path, container_target: str) -> None:
    write_config(root, textwrap.dedent(f"""
        [daemon]
        debounce_ms = 10

        {container_target}

        [[services]]
        name = "app"
        target = "c"
        sync = [{{ src = "src", dest = "/app/src" }}]
    """))


@pytest.mark.docker
@pytest.mark.reliability("a symlink planted in the container pointing outside dest (write and delete through it)",
                         kind="security")
@pytest.mark.parametrize("image", ["busybox", "nodd"], ids=["session", "per-exec"])
async def test_symlink_in_the_container_is_never_followed(tmp_path: Path, make_container, image: str,  # noqa: ANN001
                                                          reliability) -> None:  # noqa: ANN001
    c = make_container(image)
    c.exec_run(["sh", "-c", "mkdir -p /outside && echo precious > /outside/victim && echo keep > /outside/other"])
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "victim").write_text("v1\n")
    (src / "sub" / "other").write_text("o1\n")
    _config(tmp_path, f'[targets.c]\nkind = "docker"\ncontainer = "{c.name}"')
    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        before = _outside(c)
        # The app replaces a synced directory with a symlink out of /app, behind syncd's back.
        c.exec_run(["sh", "-c", "rm -rf /app/src/sub && ln -s /outside /app/src/sub"])
        (src / "sub" / "victim").write_text("v2 must not reach /outside\n")  # a write through it
        (src / "sub" / "other").unlink()  # a delete through it
        reliability.tried(2)
        await settle(engine, src)
        await wait_until(engine.idle, what="idle")
        after = _outside(c)
        changed = diff_trees(before["/outside"], after["/outside"])
        assert c.exec_run(["cat", "/outside/victim"]).output == b"precious\n"
        assert c.exec_run(["cat", "/outside/other"]).output == b"keep\n"
        # ... and the container converged: a real directory again, with the local content.
        await wait_until(lambda: not diff_trees(local_tree(src, skip={".settle-marker"}),
                                                _without(container_tree(c, "/app/src"), ".settle-marker")),
                         what="the container tree to match")
    reliability.lost = changed + diff_trees(before["/etc"], after["/etc"])
    reliability.outcome = ("symlink removed before extracting, nothing outside /app written or deleted; "
                           "the directory re-created and reconciled")
    assert not reliability.lost


def _without(tree: dict, name: str) -> dict:
    return {k: v for k, v in tree.items() if k != name}


@pytest.mark.reliability("tar names with '..' or absolute paths", kind="security")
def test_unsafe_names_are_refused_on_the_syncd_side(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    f = tmp_path / "f"
    f.write_text("x")
    lf = LocalFile(str(f), Entry(Kind.FILE, "d"), size=1)
    refused = 0
    for dest in ["/app/../etc/passwd", "/etc/passwd", "/app/a/../../b"]:
        reliability.tried()
        with pytest.raises(UnsafePath):
            list(pack([Put(dest, lf)], "/app", PackReport()))
        refused += 1
    reliability.outcome = f"{refused}/3 refused by the packer before anything is sent"
    assert refused == 3


@pytest.mark.docker
@pytest.mark.reliability("a crafted tar with '../', absolute and 'x/../../' names sent straight to the container",
                         kind="security")
async def test_unsafe_names_stay_inside_dest_on_the_container_side(tmp_path: Path, make_container,  # noqa: ANN001
                                                                   reliability) -> None:  # noqa: ANN001
    from syncd.transports.base import ApplyRequest, TransportError
    from syncd.transports.docker import DockerTransport

    c = make_container()
    cfg = load_config(_write(tmp_path, f'[targets.c]\nkind = "docker"\ncontainer = "{c.name}"'))
    before = container_tree(c, "/")
    t = DockerTransport("c", cfg.targets["c"])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name in ["../escape1", "/escape2", "ok/../../escape3"]:
            ti = tarfile.TarInfo(name)
            ti.size = 2
            tf.addfile(ti, io.BytesIO(b"x\n"))
            reliability.tried()
    (ref,) = await t.containers()
    try:
        # (the guard section gets "../../etc" too: the request derives it from the delete)
        await t.apply(ref, ApplyRequest("/app/src", ["../../etc/hostname"], [], iter([buf.getvalue()])))
    except TransportError:
        pass  # GNU tar refuses such members outright; busybox strips them: both stay inside
    await t.close()
    after = container_tree(c, "/")
    outside = [p for p in diff_trees(before, after) if not p.startswith("'app/")]
    reliability.lost = outside
    reliability.outcome = ("busybox tar strips '../' and '/' (written inside /app/src), a '..' delete and guard "
                           "entry are skipped; nothing outside /app changed")
    assert not outside and c.exec_run(["cat", "/etc/hostname"]).exit_code == 0


def _write(root: Path, target: str) -> Path:
    (root / "src").mkdir(exist_ok=True)
    _config(root, target)
    return root / "syncd.toml"


async def _names_case(tmp_path: Path, target: str, tree_of, reliability) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    src.mkdir()
    _config(tmp_path, target)
    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        for name in NASTY:
            (src / name).write_text(f"content of {name!r}\n")
            (src / f"dir {name}").mkdir()
            (src / f"dir {name}" / name).write_text("nested\n")
            reliability.tried(2)
        await settle(engine, src)
        for name in NASTY[:5]:  # and delete through the same names
            (src / name).unlink()
            reliability.tried()
        await settle(engine, src)
        got = _without(tree_of(), ".settle-marker")
    want = _without(local_tree(src), ".settle-marker")
    reliability.lost = diff_trees(want, got)
    assert not reliability.lost


@pytest.mark.docker
@pytest.mark.reliability("file names with shell syntax ($(touch), ; rm -rf /, -rf, backticks, newline, quotes)",
                         kind="security")
@pytest.mark.parametrize("image", ["busybox", "nodd"], ids=["session", "per-exec"])
async def test_names_never_reach_a_shell_docker(tmp_path: Path, make_container, image: str,  # noqa: ANN001
                                                reliability) -> None:  # noqa: ANN001
    c = make_container(image)
    await _names_case(tmp_path, f'[targets.c]\nkind = "docker"\ncontainer = "{c.name}"',
                      lambda: container_tree(c, "/app/src"), reliability)
    pwned = c.exec_run(["sh", "-c", "find / -xdev -name 'PWNED*' 2>/dev/null"]).output.decode().split()
    assert c.exec_run(["ls", "/bin/sh"]).exit_code == 0  # `; rm -rf /` did nothing
    reliability.outcome = f"{len(NASTY)} names created, nested and deleted; no command ran (PWNED files: {len(pwned)})"
    assert pwned == []


@pytest.mark.docker
@pytest.mark.cluster
@pytest.mark.reliability("file names with shell syntax through Kubernetes exec (v4 framing)", kind="security")
async def test_names_never_reach_a_shell_kube(tmp_path: Path, cluster, reliability) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: reads the pod's tree through its Docker container")
    cluster.only_v4()
    cluster.create_pod("names-0", {"app": "names"})
    await _names_case(tmp_path, '[targets.c]\nkind = "kubernetes"\nnamespace = "dev"\nselector = "app=names"',
                      lambda: cluster.tree("names-0", "/app/src"), reliability)
    pod = cluster.fx.docker_container("names-0", "app", namespace="dev")
    pwned = pod.exec_run(["sh", "-c", "find / -xdev -name 'PWNED*' 2>/dev/null"]).output.decode().split()
    reliability.outcome = f"{len(NASTY)} names over v4.channel.k8s.io; no command ran (PWNED files: {len(pwned)})"
    assert pwned == []


@pytest.mark.reliability("an API token in the config: never logged, printed or written to .syncd/", kind="security")
async def test_token_never_appears_in_logs_status_or_repr(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    import structlog

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a")
    write_config(tmp_path, textwrap.dedent("""
        [daemon]
        api_token = "tok-3f9a-never-shown"
        [targets.box]
        kind = "local"
        path = "box"
        [[services]]
        name = "app"
        target = "box"
        sync = [{ src = "src", dest = "/app" }]
    """))
    cfg = load_config(tmp_path / "syncd.toml")
    secret = "tok-3f9a-never-shown"
    with structlog.testing.capture_logs() as logs:
        async with running(cfg) as engine:
            (tmp_path / "src" / "b").write_text("b")
            await wait_until(lambda: (tmp_path / "box" / "app" / "b").exists(), what="b")
            status = engine.status()
    places = {"logs": repr(logs), "status": repr(status), "config repr": repr(cfg) + repr(cfg.daemon),
              "state dir": "".join(p.read_text(errors="replace") for p in (tmp_path / ".syncd").rglob("*") if p.is_file())}
    reliability.tried(len(places))
    reliability.lost = [where for where, text in places.items() if secret in text]
    reliability.outcome = f"checked {', '.join(places)}: the token appears in none"
    assert not reliability.lost
    await anyio.sleep(0)

"""Randomized storms of file operations; after each, the container tree equals the local tree
(file by file: content hash, exec bit, symlink target, directories), on local and docker."""

from __future__ import annotations

import random
import shutil

import pytest

from engine_harness import running, settle, write_config
from storms import storm
from trees import container_tree, diff_trees, local_tree

pytestmark = pytest.mark.anyio

CONFIG = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.t]
{target}
[[services]]
name = "app"
target = "t"
sync = [{{ src = "src", dest = "/app/src" }}]
"""


@pytest.fixture(params=["local", "docker"])
def setup(request, tmp_path):  # noqa: ANN001, ANN201
    src = tmp_path / "src"
    src.mkdir()
    (src / "seed.txt").write_text("seed")
    if request.param == "local":
        cfg = write_config(tmp_path, CONFIG.format(target='kind = "local"\npath = "sandbox"'))
        return cfg, src, lambda: local_tree(tmp_path / "sandbox" / "app" / "src"), lambda: []
    container = request.getfixturevalue("make_container")()
    cfg = write_config(tmp_path, CONFIG.format(target=f'kind = "docker"\ncontainer = "{container.name}"'))
    def pwned() -> list[str]:
        out = container.exec_run(["find", "/", "-xdev", "-name", "PWNED*"]).output.decode()
        return [line for line in out.splitlines() if line.strip()]

    return cfg, src, lambda: container_tree(container, "/app/src"), pwned


@pytest.mark.parametrize("seed", [1, 2])
async def test_storms_converge(setup, seed: int) -> None:  # noqa: ANN001
    cfg, src, observe, shell_leaks = setup
    rng = random.Random(seed)
    async with running(cfg) as engine:
        for round_no in range(3):
            storm(src, rng, ops=60)
            await settle(engine, src)
            problems = diff_trees(local_tree(src), observe())
            assert not problems, f"round {round_no}: trees differ:\n" + "\n".join(problems[:20])
        # whole directories replaced at once (like a `git checkout`), then emptied
        for i in range(40):
            (src / "checkout" / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
            (src / "checkout" / f"d{i % 5}" / f"f{i}").write_text(f"v{i}")
        await settle(engine, src)
        assert not diff_trees(local_tree(src), observe())
        shutil.rmtree(src / "checkout")
        await settle(engine, src)
        tree = observe()
        assert not any(k.startswith("checkout") for k in tree)
        assert not diff_trees(local_tree(src), tree)
        # No batch reported an error, and no file name was ever interpreted by a shell.
        bad = [r for r in engine.trace.records if not r["ok"]]
        assert not bad, bad[:3]
        assert shell_leaks() == []


async def test_a_5000_file_checkout_is_a_handful_of_batches(tmp_path) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(tmp_path, CONFIG.format(target='kind = "local"\npath = "sandbox"').replace("max_batch_wait_ms = 500", "max_batch_wait_ms = 2000"))
    async with running(cfg) as engine:
        before = len(engine.trace.records)
        for i in range(5000):
            d = src / f"pkg{i % 50}"
            d.mkdir(exist_ok=True)
            (d / f"file{i}.rs").write_text(f"// {i}\n")
        await settle(engine, src, timeout=60)
        batches = [r for r in engine.trace.records[before:] if not r["reconcile"]]
        assert len(batches) <= 8, [r["spans"][-1]["detail"] for r in batches]
        assert sum((r["spans"][-1]["detail"] or {}).get("files", 0) for r in batches) >= 5000
        assert not diff_trees(local_tree(src), local_tree(tmp_path / "sandbox/app/src"))


@pytest.mark.parametrize("kind", ["local", "docker"])
@pytest.mark.parametrize("how", ["moved away", "removed"])
@pytest.mark.reliability("a directory replaced under its own name (moved away or removed, then made again) "
                         "with a file the app writes (ignored) in it", kind="fault")
async def test_a_directory_replaced_under_the_same_name_leaves_nothing_of_the_old_one(
        request, tmp_path, kind: str, how: str, reliability) -> None:  # noqa: ANN001
    """`mv d elsewhere; mkdir d` reports d alone, never what the old d held: the old content
    must go from the container all the same — but not what syncd ignores there (a log the
    app writes)."""
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "sub" / "old").write_text("old")
    (src / "d" / "x").write_text("x")
    config = CONFIG.replace('dest = "/app/src" }]', 'dest = "/app/src" }]\nignore = ["*.log"]')
    if kind == "local":
        cfg = write_config(tmp_path, config.format(target='kind = "local"\npath = "sandbox"'))
        dest = tmp_path / "sandbox/app/src"
        observe = lambda: local_tree(dest)  # noqa: E731
        plant = lambda: (dest / "d/app.log").write_text("log")  # noqa: E731
    else:
        container = request.getfixturevalue("make_container")()
        cfg = write_config(tmp_path, config.format(target=f'kind = "docker"\ncontainer = "{container.name}"'))
        observe = lambda: container_tree(container, "/app/src")  # noqa: E731
        plant = lambda: container.exec_run(["sh", "-c", "echo log > /app/src/d/app.log"])  # noqa: E731
    async with running(cfg) as engine:
        await settle(engine, src)
        plant()
        if how == "moved away":
            (src / "d").rename(src / "e")
        else:
            shutil.rmtree(src / "d")
        (src / "d").mkdir()
        (src / "d" / "y").write_text("y")
        await settle(engine, src)
        tree = observe()
        assert "d/app.log" in tree, "an ignored path in the container was deleted"
        del tree["d/app.log"]
        assert not diff_trees(local_tree(src), tree)
    reliability.tried(1)
    reliability.outcome = ("the old directory's 3 entries deleted in the container, the new one's sent, "
                           "the app's ignored file kept; trees equal")

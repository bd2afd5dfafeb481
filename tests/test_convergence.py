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

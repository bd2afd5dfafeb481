"""syncd at a distance: the kube fixture's API server and the Docker engine behind a
tests/linksim.py Link, for tests and benchmarks (`import remote_support` with tests/ on sys.path).

    with fixture_behind_link(fx, "cloud", tmp) as (link, kubeconfig): KUBECONFIG=kubeconfig ...
    with docker_behind_link("home") as (link, docker_host):           DOCKER_HOST=docker_host ...

Everything syncd (and kubectl, the docker CLI) says to the API server or the engine then crosses
the link: its delay, its bandwidth, its faults (stall, drop_all, refuse), and its byte counters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from linksim import Link, Profile

DOCKER_SOCKET = "/var/run/docker.sock"


@contextmanager
def fixture_behind_link(fx, profile: str | Profile, workdir: Path) -> Iterator[tuple[Link, Path]]:  # noqa: ANN001
    """A Link in front of the fixture's TLS port and a kubeconfig naming it (in `workdir`)."""
    with Link.from_profile(profile, ("127.0.0.1", fx.tls_port)) as link:
        name = profile if isinstance(profile, str) else profile.name
        yield link, fx.kubeconfig_through(link.address, workdir / f"kubeconfig-{name}")


def engine_upstream() -> str | tuple[str, int]:
    """Where the local Docker engine listens: DOCKER_HOST (unix:// or tcp://) or the default socket."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("tcp://"):
        h, _, p = host[len("tcp://"):].rstrip("/").rpartition(":")
        return h, int(p)
    return host[len("unix://"):] if host.startswith("unix://") else DOCKER_SOCKET


@contextmanager
def docker_behind_link(profile: str | Profile) -> Iterator[tuple[Link, str]]:
    """A Link in front of the Docker engine; yields it and the DOCKER_HOST that names it."""
    with Link.from_profile(profile, engine_upstream()) as link:
        yield link, f"tcp://{link.host}:{link.port}"

"""Transports: how a batch reaches a target's containers."""

from __future__ import annotations

from syncd.config import Config
from syncd.transports.base import Transport, TransportError


def make_transports(cfg: Config) -> dict[str, Transport]:
    out: dict[str, Transport] = {}
    for name, spec in cfg.targets.items():
        if spec.kind == "local":
            from syncd.transports.local import LocalTransport

            out[name] = LocalTransport(name, cfg.resolve(spec.path))
        elif spec.kind == "docker":
            from syncd.transports.docker import DockerTransport

            out[name] = DockerTransport(name, spec)
        elif spec.kind == "kubernetes":
            from syncd.transports.kube import KubeTransport

            out[name] = KubeTransport(name, spec)
        else:
            out[name] = _Unsupported(name, spec.kind)
    return out


class _Unsupported:
    """A target kind this build cannot reach yet: reported on every attempt, never fatal."""

    def __init__(self, target: str, kind: str):
        self.target = target
        self.kind = kind

    async def containers(self):  # noqa: ANN201 - matches the Transport protocol
        raise TransportError(
            f"target '{self.target}': kind '{self.kind}' is not supported by this version of syncd",
            "use a docker or local target",
            permanent=True,
        )

    async def manifest(self, ref, dests):  # noqa: ANN001, ANN201
        raise TransportError("unsupported")

    async def apply(self, ref, root, deletes, tar):  # noqa: ANN001, ANN201
        raise TransportError("unsupported")

    async def close(self) -> None:
        return None


__all__ = ["Transport", "TransportError", "make_transports"]

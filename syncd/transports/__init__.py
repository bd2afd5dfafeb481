"""Transports: how a batch reaches a target's containers."""

from __future__ import annotations

from syncd.config import Config
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.transports.base import Transport, TransportError


def make_transports(cfg: Config, settings: Settings = DEFAULT_SETTINGS) -> dict[str, Transport]:
    out: dict[str, Transport] = {}
    for name, spec in cfg.targets.items():
        if spec.kind == "local":
            from syncd.transports.local import LocalTransport

            out[name] = LocalTransport(name, cfg.resolve(spec.path))
        elif spec.kind == "docker":
            from syncd.transports.docker import DockerTransport

            out[name] = DockerTransport(name, spec, settings=settings)
        else:  # "kubernetes": config validation admits no other kind
            from syncd.transports.kube import KubeTransport

            out[name] = KubeTransport(name, spec, settings=settings)
    return out


__all__ = ["Transport", "TransportError", "make_transports"]

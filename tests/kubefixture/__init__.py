"""A protocol-faithful kube-apiserver stand-in whose pods are Docker containers (README.md)."""

from .server import DEFAULT_PROTOCOLS, KubeFixture

__all__ = ["DEFAULT_PROTOCOLS", "KubeFixture"]

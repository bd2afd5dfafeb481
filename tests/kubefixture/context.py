"""What the HTTP handlers share: the store, the kubelet, the policy and the settings a test may
change while the server runs (token, offered exec subprotocols)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from .auth import Policy
from .kubelet import Kubelet
from .model import now
from .state import Store


@dataclass
class Context:
    store: Store
    kubelet: Kubelet
    policy: Policy
    token: str
    protocols: tuple[str, ...]
    started: str = field(default_factory=now)
    # Long-running handlers (watches, exec sessions), cancelled when the server stops.
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    namespace_uids: dict[str, str] = field(default_factory=dict)


CTX: web.AppKey[Context] = web.AppKey("kubefixture", Context)

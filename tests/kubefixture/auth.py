"""Authentication (one bearer token) and an RBAC stand-in: request attributes are derived the
way the apiserver's RequestInfoFactory does, and a deny list answers like the RBAC authorizer
(403 with responsewriters.Forbidden's message)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from aiohttp import web

USER = "fixture"  # the user name the token authenticates as (shows in Forbidden messages)

_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Attributes:
    verb: str
    resource: str = ""  # "" for non-resource paths (/api, /version, …)
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(request: web.Request) -> Attributes:
    method_verb = _METHOD_VERBS.get(request.method, request.method.lower())
    parts = [p for p in request.path.split("/") if p]
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        return Attributes(verb=method_verb, path=request.path)
    rest = parts[2:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # RequestInfo sets the namespace of a namespace request to its name
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    verb = method_verb
    if not name and verb == "get":
        verb = "watch" if request.query.get("watch", "") in ("1", "true", "True") else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb=verb, resource=resource, subresource=sub, namespace=namespace, name=name, path=request.path)


class Policy:
    """Everything is allowed except what deny() names (verb "*" denies every verb)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._denied: set[tuple[str, str, str | None]] = set()

    def deny(self, verb: str, resource: str, namespace: str | None = None) -> None:
        with self._lock:
            self._denied.add((verb, resource, namespace))

    def allow_all(self) -> None:
        with self._lock:
            self._denied.clear()

    def allowed(self, attrs: Attributes, verb: str | None = None) -> bool:
        verb = verb or attrs.verb
        with self._lock:
            for v, r, ns in self._denied:
                if v in (verb, "*") and r in (attrs.full_resource, attrs.path) and ns in (None, attrs.namespace):
                    return False
        return True


def forbidden_message(attrs: Attributes, verb: str | None = None) -> str:
    """responsewriters.forbiddenMessage."""
    verb = verb or attrs.verb
    if not attrs.resource:
        return f'User "{USER}" cannot {verb} path "{attrs.path}"'
    if attrs.namespace:
        return (f'User "{USER}" cannot {verb} resource "{attrs.full_resource}" in API group "" '
                f'in the namespace "{attrs.namespace}"')
    return f'User "{USER}" cannot {verb} resource "{attrs.full_resource}" in API group "" at the cluster scope'

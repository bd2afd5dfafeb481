"""Who may talk to the control API: the browser-facing rules, as a pure decision.

Loopback keeps other machines out, but not the pages open in the developer's own browser.
Three rules close that (the same ones webpack-dev-server, Jupyter and Tilt adopted):

- **Host check** against DNS rebinding: a page at `evil.example` whose name later resolves to
  127.0.0.1 is same-origin with the API in the browser's eyes, but its requests still carry
  `Host: evil.example:PORT`. Only IP literals (which cannot be rebound), `localhost` and the
  names the user listed in `daemon.api_hosts` are served, and only with the bound port.
- **Origin check** against cross-site requests: a request whose `Origin` (or
  `Sec-Fetch-Site`) says it comes from another site is refused, whatever its method — but a
  top-level navigation (a link to the status page) may come from anywhere: it can neither
  read the answer nor change state, and the page refuses to be framed.
- **Write proof**: a state-changing request must carry a header a cross-site "simple"
  request cannot set — the daemon's secret (`X-Syncd-Secret`, written 0600 to
  `.syncd/api.json` for the CLI, and embedded in the status page's own first response) or
  the configured bearer token.

The decision is data (`Refusal` or None) so it is tested without a server.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

SECRET_HEADER = "X-Syncd-Secret"
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401: no or wrong credentials; 403: refused whatever the credentials
    error: str


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The rules for one listening API.

    `port` None means a unix socket: no browser can reach one, so Host and Origin are not
    checked there (the socket is 0600); writes still need the secret or the token."""

    port: int | None
    loopback: bool  # bound to a loopback address: only loopback IP literals are served
    secret: str
    token: str | None = None
    hosts: frozenset[str] = field(default_factory=frozenset)  # daemon.api_hosts, lower case

    def check(self, method: str, headers: Mapping[str, str], query_token: str | None = None) -> Refusal | None:
        """None when the request may be served. `headers` is case-insensitive (aiohttp's)."""
        if self.port is not None:
            host = headers.get("Host", "")
            if not self.host_allowed(host):
                return Refusal(403, f"Host {host!r} is not served here (DNS rebinding protection): use "
                                    f"127.0.0.1:{self.port} or localhost:{self.port}, or list the name in daemon.api_hosts")
            origin = headers.get("Origin")
            if origin is not None and origin.rstrip("/").lower() != f"http://{host.lower()}":
                return Refusal(403, f"cross-origin request from Origin {origin!r} refused: the control API serves only "
                                    "its own page and local clients")
            site = headers.get("Sec-Fetch-Site", "same-origin")
            # A link followed from another site (Tilt's UI to the status page) is a top-level
            # navigation: it cannot read the answer nor change state, so it is let through.
            navigation = method in SAFE_METHODS and headers.get("Sec-Fetch-Mode") == "navigate" \
                and headers.get("Sec-Fetch-Dest", "document") == "document"
            if site not in ("same-origin", "none") and not navigation:
                return Refusal(403, "cross-site request refused (Sec-Fetch-Site: "
                                    f"{headers.get('Sec-Fetch-Site')}): the control API serves only its own page")
        bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if self.token is not None:
            # The query form exists for EventSource, which cannot set headers; it never proves a write.
            given = bearer or (query_token or "" if method in SAFE_METHODS else "")
            if not _same(given, self.token):
                return Refusal(401, "missing or wrong token (Authorization: Bearer …)")
            return None
        if method not in SAFE_METHODS and not _same(headers.get(SECRET_HEADER, ""), self.secret):
            return Refusal(403, f"a state-changing request needs the {SECRET_HEADER} header (syncd's commands read it "
                                "from .syncd/api.json; the status page carries it) or the API token")
        return None

    def host_allowed(self, host: str) -> bool:
        name, port = split_host(host)
        if port is None:
            port = 80
        if port != self.port or not name:
            return False
        if name == "localhost" or name in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return ip.is_loopback or not self.loopback


def split_host(host: str) -> tuple[str, int | None]:
    """`Host` header -> (lower-case name without brackets, port or None). Malformed -> ('', None)."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    else:
        name, sep, port = host.rpartition(":")
        if not sep:
            name, port = host, ""
        elif ":" in name:  # a bare v6 address without brackets is not a valid Host
            return "", None
    if port == "":
        return name, None
    if not port.isdigit() or int(port) > 65535:
        return "", None
    return name, int(port)


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())

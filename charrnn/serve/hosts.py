"""Which names a request may call this server by: the Host check, and the Origin check for browsers.

The server listens on loopback by default, but a web page can still reach it: DNS rebinding
points a name the page owns (evil.example) at 127.0.0.1, and the browser then sends the page's
requests here with `Host: evil.example:8000`; and any page may send a "simple" cross-origin
request (a GET, or a POST of text/plain) to http://127.0.0.1:8000 directly. So every request is
checked, before the app sees it, against the names the server serves under:

    names     localhost, 127.0.0.1, ::1 (always); the --host it listens on; each --allow-host NAME
    Host      one of the names, its port (if given) the port the server listens on
                  missing, repeated or malformed  ->  400
                  another name or port            ->  421 Misdirected Request
    Origin    (sent by browsers) http(s):// one of the names, on this port or the Host's own  ->  else 403
    Sec-Fetch-Site  cross-site or same-site, for anything but a page load (a link followed)  ->  403

421, not 400, for a Host naming another site: the request itself is well formed, it was sent to
a server that does not serve that name (RFC 9110 §15.5.20), which is what a rebound name is.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.serve.schema import ApiError

LOOPBACK = ("localhost", "127.0.0.1", "::1")


def split_host(value: str) -> tuple[str, int | None] | None:
    """'Example.com:8000' -> ('example.com', 8000); '[::1]' -> ('::1', None); None when it is not host[:port]
    (an IPv6 address only in brackets, as RFC 3986 writes it)."""
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or rest and not rest.startswith(":"):
            return None
        port, allowed = rest[1:] if rest else None, "0123456789abcdef:."
    else:
        name, colon, port = value.partition(":")
        port, allowed = port if colon else None, "abcdefghijklmnopqrstuvwxyz0123456789-._"
    if port is not None and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return None
    name = name.lower().removesuffix(".")
    if not name or any(c not in allowed for c in name):
        return None
    return name, int(port) if port is not None else None


def origin_of(text: str) -> tuple[str, int] | None:
    """'http://localhost:8000' -> ('localhost', 8000); 'https://box.lan' -> ('box.lan', 443); None if not http(s)."""
    scheme, sep, rest = text.partition("://")
    where = split_host(rest) if sep and scheme in ("http", "https") else None
    if where is None:
        return None
    return where[0], where[1] if where[1] is not None else 443 if scheme == "https" else 80


def refusal(status: int, message: str, code: str) -> ApiError:
    return ApiError(status, message, kind="permission_error" if status == 403 else "invalid_request_error", code=code)


def named(value: str) -> str:
    """A name as it is compared: lower case, without brackets or a trailing dot ('[::1]' -> '::1')."""
    return value.strip().strip("[]").lower().removesuffix(".")


@dataclass(frozen=True)
class Hosts:
    """The names this server answers to (each as `named` gives it)."""

    names: frozenset[str]

    @classmethod
    def serving(cls, host: str = "127.0.0.1", allowed: tuple[str, ...] = ()) -> Hosts:
        """Loopback names, the address it listens on and the names allowed besides."""
        return cls(frozenset(named(n) for n in (*LOOPBACK, host, *allowed) if named(n)))

    def check(self, headers: list[tuple[bytes, bytes]], port: int | None) -> ApiError | None:
        """None when a request with these headers, to a server listening on `port`, is for this server."""
        hosts = [v for k, v in headers if k == b"host"]
        if len(hosts) != 1:
            return refusal(400, f"a request must name the server in one Host header (this one has {len(hosts)})",
                           "bad_host")
        host = hosts[0].decode("latin-1")
        where = split_host(host)
        if where is None:
            return refusal(400, f"the Host header {host[:100]!r} is not a host name with an optional port", "bad_host")
        if not self.serves(where, port):
            names = ", ".join(sorted(self.names))
            return refusal(421, f"this server does not serve the name {host[:100]!r}: it answers to {names} on port "
                                f"{port} (the server's --allow-host adds a name)", "misdirected_request")
        return self.check_browser(dict(headers), where, port)

    def check_browser(self, headers: dict[bytes, bytes], host: tuple[str, int | None],
                      port: int | None) -> ApiError | None:
        """None unless a browser sent the request from a page of another site: its Origin must be a name served
        here, on the port the server listens on or on the Host's (a page that came through a proxy)."""
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            where = origin_of(text)
            same = where is not None and where[0] == host[0] and host[1] in (None, where[1])
            if where is None or not (self.serves(where, port) or same and where[0] in self.names):
                return refusal(403, f"requests from web pages of another site are refused (Origin {text[:100]!r}); "
                                    "open the playground from this server instead", "cross_origin")
        site, mode = headers.get(b"sec-fetch-site", b"none"), headers.get(b"sec-fetch-mode", b"")
        if site not in (b"same-origin", b"none") and mode != b"navigate":
            return refusal(403, f"requests from web pages of another site are refused (Sec-Fetch-Site "
                                f"{site.decode('latin-1')[:40]!r})", "cross_origin")
        return None

    def serves(self, where: tuple[str, int | None], port: int | None) -> bool:
        name, asked = where
        return name in self.names and (asked is None or port is None or asked == port)

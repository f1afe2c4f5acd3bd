"""The /metrics HTTP endpoint: Prometheus' text exposition of the daemon's registry.

A small threaded WSGI server in a daemon thread, bound to the school's `metrics_listen`
(`HOST:PORT`, `:PORT` for all interfaces, dual-stack when the host has IPv6). A taken
port is a `MetricsBindError`: the daemon does not start.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
from socketserver import TCPServer, ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)

_NO_IPV6 = {errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT}


class MetricsBindError(Exception):
    """The metrics listen address cannot be bound (port taken, unknown host, …)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[V6]:PORT` → (host, port); host "" = all.

    Port 0 (any free port) is accepted here for tests; the config model refuses it.
    """
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})", listen.strip())
    if not m or int(m[2]) > 65535:
        raise MetricsBindError(f"metrics listen address {listen!r} is not HOST:PORT "
                               "(e.g. '127.0.0.1:8790', ':8790' or '[::1]:8790')")
    host = m[1][1:-1] if m[1].startswith("[") else m[1]
    return host, int(m[2])


class _Handler(WSGIRequestHandler):
    timeout = 30  # a client that connects and says nothing frees its thread

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    v6only: bool | None = None

    def server_bind(self) -> None:
        if self.v6only is not None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, self.v6only)
        # HTTPServer.server_bind would call socket.getfqdn(): a reverse DNS lookup that
        # can stall start-up on a host with a broken resolver. The name is not used.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class MetricsServer:
    """The /metrics HTTP endpoint in a daemon thread. `close()` stops it cleanly."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        self.listen = listen
        host, port = parse_listen(listen)
        self._httpd = self._bind(host, port)
        self._httpd.set_app(make_wsgi_app(metrics.registry))
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics", self.url_address)

    def _bind(self, host: str, port: int) -> _Server:
        if host == "":  # all interfaces: dual-stack if the host has IPv6, else IPv4
            candidates = [(socket.AF_INET6, "::", False), (socket.AF_INET, "0.0.0.0", None)]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            except OSError as exc:
                raise MetricsBindError(f"cannot bind the metrics address {self.listen}: "
                                       f"{exc.strerror or exc}") from None
            family, *_, sockaddr = infos[0]
            candidates = [(family, sockaddr[0], True if family == socket.AF_INET6 else None)]
        last: OSError | None = None
        for family, addr, v6only in candidates:
            server_class = type("_BoundServer", (_Server,),
                                {"address_family": family, "v6only": v6only})
            try:
                return server_class((addr, port), _Handler)
            except OSError as exc:
                last = exc
                # No IPv6 on this host: fall back to IPv4; any other error is final.
                if family == socket.AF_INET6 and host == "" and exc.errno in _NO_IPV6:
                    continue
                break
        assert last is not None
        raise MetricsBindError(f"cannot bind the metrics address {self.listen}: "
                               f"{last.strerror or last}") from None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when `listen` asked for port 0."""
        addr = self._httpd.server_address
        return addr[0], addr[1]

    @property
    def url_address(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        """Stop serving, close the socket, join the thread (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

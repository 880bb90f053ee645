"""The listening socket our ASGI servers (``moa serve``, the benchmark's) are given."""

from __future__ import annotations

import socket


def tcp_listener(host: str, port: int, *, reuse_address: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port), for uvicorn to listen on.

    Args:
        host: An IPv4 or IPv6 address.
        port: The port; 0 lets the system pick a free one.
        reuse_address: Set ``SO_REUSEADDR``, so a restarted server can bind its port while
            the last one's connections are in TIME_WAIT.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP, and accepted ones inherit it. Without it Nagle holds a
    # reply's body (or a streamed event) behind the bytes before it until the
    # client's delayed ACK, ~40 ms.
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if reuse_address:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((host, port))
    return listening

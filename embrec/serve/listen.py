"""The listening socket of ``embrec serve``, bound before uvicorn starts so that a used port or a bad host is
one clear sentence naming the option (uvicorn would log its own text and exit 3)."""

from __future__ import annotations

import errno
import socket

from embrec.errors import InvalidParameterError, describe


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; InvalidParameterError naming --host or --port."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidParameterError(
            f"--port must be an integer between 1 and 65535; received {describe(port)}."
        )
    if not isinstance(host, str) or not host.strip():
        raise InvalidParameterError(
            f"--host must be an address or host name such as 127.0.0.1; received {describe(host)}."
        )
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError, ValueError):
        raise InvalidParameterError(
            f"--host must be an address or host name of this machine such as 127.0.0.1; "
            f"received {describe(host)}, which does not resolve."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as uvicorn does (TIME_WAIT, not a listener)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidParameterError(_bind_message(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def _bind_message(host: str, port: int, exc: OSError) -> str:
    where = f"{describe(host)} port {port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--port {port} is already in use on {describe(host)}; stop the other service or choose another --port."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {describe(host)} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its own."
    if exc.errno == errno.EACCES:
        return f"--port {port} needs privileges this process lacks (ports below 1024 usually do); choose a port >= 1024."
    return f"cannot listen on {where} (--host/--port): {exc.strerror or exc}."

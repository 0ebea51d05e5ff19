"""sockscope's start-up hook for ``sockscope run``: send a Python program's connects to chosen ports through
the proxy, without editing the program and without privileges.

How it gets loaded: ``sockscope run`` puts this directory first on the child's ``PYTHONPATH``. Python's
``site`` module imports ``sitecustomize`` at start-up (unless ``-S``, ``-E`` or ``-I`` is given), which finds
this file. Nothing here imports sockscope, Qt or anything outside the standard library, so it runs the same in
any interpreter (Python 3.8 or later) and virtual environment, on Windows, macOS and Linux (no fork, no
LD_PRELOAD).

What it does, and all it does:

* reads ``SOCKSCOPE_REDIRECT``: comma-separated ``[HOST:]PORT=PROXY_HOST:PROXY_PORT`` entries, e.g.
  ``5555=127.0.0.1:41234``. A key without a host matches any loopback destination (``127.x.x.x``, ``::1``,
  ``localhost``, and ``""``/``0.0.0.0``/``::`` as clients use them); a key with a host matches that host only;
* with ``SOCKSCOPE_ANY_ADDRESS`` (``TOKEN@HOST:PORT``, set by ``sockscope run --any-address``), a connect to a
  port of a key without a host on any *other* address (a hard-coded LAN address such as 192.168.1.20) is
  redirected too, once sockscope agrees: the hook asks it, over one short loopback connection to that
  ``HOST:PORT`` (``TOKEN PORT HOST`` → ``OK PROXY_HOST PROXY_PORT`` or ``NO``), so that the proxy connects to the
  address the program asked for. The answer is kept for the process: one question per address. No answer within
  a few seconds, or ``NO``, means the connect goes straight through;
* wraps ``socket.socket.connect`` and ``socket.socket.connect_ex`` (and so ``socket.create_connection``,
  ``asyncio``'s default loop, ``http.client`` ...) so that a TCP connect to a matching destination goes to
  the proxy instead. The proxy then connects to the real port from the sockscope process, which is not hooked;
* with ``SOCKSCOPE_REDIRECT_UDP=1`` (set by ``sockscope run``, whose proxies relay UDP on the same port numbers),
  UDP too: ``sendto`` to a matching loopback destination, and ``connect``/``connect_ex`` of a UDP socket, go to the
  proxy instead; ``recvfrom``/``recvfrom_into`` report a datagram from the proxy as coming from the original
  destination, so a client that checks who answered still sees its server (``asyncio``'s datagram endpoints use
  these methods, so they are covered too). ``--any-address`` applies to TCP only;
* leaves everything else alone: other ports and hosts, ``bind``/``listen``/``accept`` (so a script whose
  server listens on 5555 and whose client connects to 5555 works: only the client's connect is redirected).
  After a redirected connect, ``getpeername()`` shows the proxy's address, not the original one;
* then runs any other ``sitecustomize`` that this one shadows, as Python would have without it.

If ``SOCKSCOPE_REDIRECT`` is absent or malformed, it redirects nothing and prints one warning to stderr.
Child processes inherit the environment, so Python programs the program starts are redirected the same way.
Not covered: sockets connected from C code (uvloop, C extensions), and programs started with ``-S/-E/-I``.

Thread: runs once at interpreter start-up; the wrapped methods run on whichever thread connects, keep no state
but the immutable mapping (and, with ``--any-address``, sockscope's answers per address, a dict that two threads
may both fill with the same answer), and take no locks.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_ENV = "SOCKSCOPE_REDIRECT"
_UDP_ENV = "SOCKSCOPE_REDIRECT_UDP"
_ANY_ENV = "SOCKSCOPE_ANY_ADDRESS"
_ASK_TIMEOUT = 5.0  # seconds a connect waits for sockscope's answer about an address it has not seen yet
_HERE = os.path.dirname(os.path.abspath(__file__))
# Hosts a *client* may pass to mean "this machine": "" and the wildcard addresses connect to loopback.
_LOCAL_NAMES = frozenset({"", "localhost", "localhost.", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"})
_ANY_LOOPBACK = "*"


def _warn(text: str, outcome: str = "connections are not redirected") -> None:
    try:
        sys.stderr.write(f"sockscope hook: {text}; {outcome}\n")
        sys.stderr.flush()
    except Exception:  # a closed or missing stderr must never stop the program starting
        pass


def _split_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(text)
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(text)
    return host.strip().lower(), p


def parse(value: str) -> dict[tuple[str, int], tuple[str, int]]:
    """The mapping in ``SOCKSCOPE_REDIRECT``: {(host or "*", port): (proxy host, proxy port)}."""
    mapping: dict[tuple[str, int], tuple[str, int]] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, dest = item.partition("=")
        if not sep:
            raise ValueError(item)
        key = key.strip()
        if key.isdigit():
            host, port = _ANY_LOOPBACK, int(key)
            if not 0 < port < 65536:
                raise ValueError(item)
        else:
            host, port = _split_hostport(key)
        mapping[(host, port)] = _split_hostport(dest)
    if not mapping:
        raise ValueError(value)
    return mapping


def parse_any(value: str) -> tuple[str, tuple[str, int]]:
    """``SOCKSCOPE_ANY_ADDRESS``: ``TOKEN@HOST:PORT`` -> (token, (host, port)); raises ValueError."""
    token, sep, where = value.strip().rpartition("@")
    if not sep or not token or any(c.isspace() for c in token):
        raise ValueError(value)
    return token, _split_hostport(where)


def _is_loopback(host: str) -> bool:
    # No DNS lookups here: they would be slow and could have side effects; only literal addresses and names.
    if host in _LOCAL_NAMES:
        return True
    import ipaddress

    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback or ip.ipv4_mapped.is_unspecified
    return ip.is_loopback


def _install(mapping: dict[tuple[str, int], tuple[str, int]],
             any_address: tuple[str, tuple[str, int]] | None = None, udp: bool = False) -> None:
    import socket

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    stream_only = (socket.SOCK_STREAM,)
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else stream_only
    ports = frozenset(port for _, port in mapping)  # the cheap test that lets every other connect straight through
    answers: dict[tuple[str, int], object] = {}  # (host, port) -> proxy address or None, as sockscope answered

    def ask(host: str, port: int) -> object:
        """Whether sockscope captures ``host:port`` (``--any-address``): the proxy's address, or None."""
        key = (host, port)
        if key in answers:
            return answers[key]
        assert any_address is not None
        token, where = any_address
        proxy = None
        try:
            with socket.socket(socket.AF_INET6 if ":" in where[0] else socket.AF_INET, socket.SOCK_STREAM) as q:
                q.settimeout(_ASK_TIMEOUT)
                original_connect(q, where)
                q.sendall(f"{token} {port} {host}\n".encode("utf-8", "replace"))
                reply = b""
                while not reply.endswith(b"\n") and len(reply) < 512:
                    chunk = q.recv(512)
                    if not chunk:
                        break
                    reply += chunk
            words = reply.decode("ascii", "replace").split()
            if len(words) == 3 and words[0] == "OK":
                proxy = (words[1], int(words[2]))
        except (OSError, ValueError):
            proxy = None  # sockscope is gone or slow: the program connects as it would have without it
        answers[key] = proxy
        return proxy

    def target(sock: socket.socket, address: object) -> object:
        """The address to really connect to: the proxy for a redirected destination, else ``address``."""
        if sock.type not in kinds or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return address
        if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[1], int) \
                or address[1] not in ports:
            return address
        host = address[0]
        if isinstance(host, (bytes, bytearray)):  # a tuple, not X | Y: the child may be Python < 3.10
            host = bytes(host).decode("ascii", "replace")
        if not isinstance(host, str):
            return address
        host = host.lower()
        proxy = mapping.get((host, address[1]))
        if proxy is None and _is_loopback(host):
            proxy = mapping.get((_ANY_LOOPBACK, address[1]))
        elif proxy is None and any_address is not None and (_ANY_LOOPBACK, address[1]) in mapping \
                and sock.type == socket.SOCK_STREAM:
            proxy = ask(host.split("%", 1)[0], address[1])  # type: ignore[assignment]
        if proxy is None:
            return address
        if sock.family == socket.AF_INET6:
            if ":" in proxy[0]:
                return (proxy[0], proxy[1], *address[2:])
            # An IPv6 socket (e.g. create_connection("localhost") resolving to ::1) reaches the IPv4 proxy
            # through a v4-mapped address, which needs dual-stack (Windows defaults to IPv6-only).
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                return address
            return ("::ffff:" + proxy[0], proxy[1], 0, 0)
        return proxy

    def connect(self: socket.socket, address: object, /) -> None:
        original_connect(self, target(self, address))  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object, /) -> int:
        return original_connect_ex(self, target(self, address))  # type: ignore[arg-type]

    connect.__doc__ = original_connect.__doc__
    connect_ex.__doc__ = original_connect_ex.__doc__
    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]
    if udp:
        _install_udp(socket, mapping, target)
    if sys.platform == "win32":
        _patch_proactor(target)


def _install_udp(socket: Any, mapping: dict[tuple[str, int], tuple[str, int]], target: Any) -> None:
    """``sendto`` to a redirected port goes to the proxy; a datagram from a proxy reads as from the original port."""
    original_sendto = socket.socket.sendto
    original_recvfrom = socket.socket.recvfrom
    original_recvfrom_into = socket.socket.recvfrom_into
    # proxy address -> the port it stands for (v4-mapped too: an IPv6 socket reaches the IPv4 proxy that way)
    back: dict[tuple[str, int], int] = {}
    for (_host, port), (phost, pport) in mapping.items():
        back[(phost, pport)] = port
        if ":" not in phost:
            back[("::ffff:" + phost, pport)] = port

    def sendto(self: Any, data: Any, *rest: Any) -> int:
        if rest:  # sendto(data, address) or sendto(data, flags, address)
            rest = (*rest[:-1], target(self, rest[-1]))
        return original_sendto(self, data, *rest)  # type: ignore[no-any-return]

    def origin(self: Any, address: Any) -> Any:
        if isinstance(address, tuple) and len(address) >= 2:
            port = back.get((address[0], address[1]))
            if port is not None:
                return ("::1", port, 0, 0) if self.family == socket.AF_INET6 else ("127.0.0.1", port)
        return address

    def recvfrom(self: Any, *args: Any) -> Any:
        data, address = original_recvfrom(self, *args)
        return data, origin(self, address)

    def recvfrom_into(self: Any, *args: Any) -> Any:
        n, address = original_recvfrom_into(self, *args)
        return n, origin(self, address)

    for name, new, old in (("sendto", sendto, original_sendto), ("recvfrom", recvfrom, original_recvfrom),
                           ("recvfrom_into", recvfrom_into, original_recvfrom_into)):
        new.__doc__ = old.__doc__
        setattr(socket.socket, name, new)


def _patch_proactor(target: Any) -> None:
    """asyncio's default loop on Windows connects with ``ConnectEx`` (``IocpProactor.connect``) and never calls
    ``socket.connect``: the same address swap goes there. It costs importing asyncio at start-up, on Windows only."""
    try:
        from asyncio import windows_events  # type: ignore[attr-defined, unused-ignore]
    except Exception:  # not Windows after all, or a stripped-down Python: nothing to patch
        return
    proactor: Any = getattr(windows_events, "IocpProactor", None)
    original = getattr(proactor, "connect", None)
    if proactor is None or original is None:
        return

    def connect(self: Any, conn: Any, address: Any) -> Any:
        return original(self, conn, target(conn, address))

    proactor.connect = connect


def _chain() -> None:
    """Run the ``sitecustomize`` this file shadows (a distribution's or a virtualenv's), if there is one."""
    import importlib.machinery
    import importlib.util

    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # site.py reports a failing sitecustomize the same way, and carries on
        sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(e).__name__}: {e}\n")


def _main() -> None:
    value = os.environ.get(_ENV)
    if value is None:
        _warn(f"{_ENV} is not set")
    else:
        try:
            mapping = parse(value)
        except ValueError:
            _warn(f"{_ENV}={value!r} is malformed (expected e.g. 5555=127.0.0.1:41234)")
        else:
            any_value = os.environ.get(_ANY_ENV)
            any_address = None
            if any_value is not None:
                try:
                    any_address = parse_any(any_value)
                except ValueError:  # the loopback redirections still apply
                    _warn(f"{_ANY_ENV} is malformed (expected TOKEN@HOST:PORT)",
                          "only connections to loopback addresses are redirected")
            _install(mapping, any_address, os.environ.get(_UDP_ENV) == "1")
    # Take this directory off sys.path so the program sees the path it would have had without sockscope.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    _chain()


_main()

"""sockscope's network engine: a byte-exact man-in-the-middle TCP relay, headless and Qt-free.

How it fits together (the mitmproxy/h11 shape):

- ``proxy.relay.Relay`` is a sans-IO state machine, one per client/server pair. The shell feeds it **events**
  (``proxy.events``: facts such as ``DataReceived`` or ``EofReceived``, each carrying the monotonic time) and
  executes the **commands** it returns (``proxy.commands``: ``SendData``, ``HalfClose``, ``Publish``, ...).
  It owns framing (``proxy.framing``), ordering, half-close and resets; it never touches a socket or a clock.
- ``proxy.server`` is the asyncio shell: listen, accept, connect upstream, read, write, backpressure.
- ``Publish`` commands carry records (``proxy.model``) to subscribers: the terminal printer
  (``proxy.printer``), and later the control endpoint and the session recorder.
- ``proxy.cli`` is ``python -m proxy`` / ``sockscope-proxy``; ``proxy.runner`` runs the engine on a thread.

Must not import: Qt (PySide6) or ``inspector``; the window is a client of this package, never the reverse.
Thread: the engine runs on one event-loop thread; see ``proxy.runner`` for crossing into it.
"""

from proxy.framing import FramingSpec, parse_framing
from proxy.model import Direction, Message, Origin, Side
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig, ProxyServer

__all__ = [
    "Direction",
    "FramingSpec",
    "Message",
    "Origin",
    "ProxyConfig",
    "ProxyServer",
    "ProxyThread",
    "Side",
    "parse_framing",
]

"""sockscope's network engine: a byte-exact man-in-the-middle TCP relay, headless and Qt-free.

How it fits together (the mitmproxy/h11 shape):

- ``proxy.relay.Relay`` is a sans-IO state machine, one per client/server pair. The shell feeds it **events**
  (``proxy.events``: facts such as ``DataReceived`` or ``EofReceived``, each carrying the monotonic time) and
  executes the **commands** it returns (``proxy.commands``: ``SendData``, ``HalfClose``, ``Publish``, ...).
  It owns framing (``proxy.framing``), ordering, half-close and resets; it never touches a socket or a clock.
- ``proxy.server`` is the asyncio shell: listen, accept, connect upstream, read, write, backpressure.
- ``Publish`` commands carry records (``proxy.model``) to subscribers: the terminal printer
  (``proxy.printer``), the control endpoint (``proxy.control``) and the session recorder (``proxy.recorder``).
- ``proxy.cli`` is ``python -m proxy`` / ``sockscope-proxy`` (its flag groups are in ``proxy.options``, shared
  with ``sockscope`` and ``sockscope run``); ``proxy.runner`` runs the engine on a thread.

This file imports nothing: ``import proxy.model`` (or any other value module) must not start loading the asyncio
shell, so a script, the window or a test pays only for the modules it names. Import the module you need.

Must not import: Qt (PySide6) or ``inspector``; the window is a client of this package, never the reverse.
Thread: the engine runs on one event-loop thread; see ``proxy.runner`` for crossing into it.
"""

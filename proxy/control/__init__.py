"""The control protocol: how windows, scripts and tests watch and steer a running proxy (docs/protocol.md).

Modules, each one concept:

- :mod:`proxy.control.wire`: frames (u32 length + msgpack map), the protocol version, every limit, and the one
  incremental frame reader both ends use;
- :mod:`proxy.control.commands`: the one command table, wire name -> argument checks -> engine call;
- :mod:`proxy.control.endpoint`: ``ControlServer``, the proxy's side (auth, subscribers, bounded queues);
- :mod:`proxy.control.client`: ``ControlClient``, the other side (the window, scripts, tests): one reader thread,
  commands answered as futures.

This package imports nothing itself, so ``import proxy.control.client`` (the window) never loads the engine.
Must not import: Qt, ``inspector``, ``proxy.cli``.
Thread: see each module.
"""

"""Interoperability: session files in and out of the window, pcapng export, pcap/pcapng import, JSON lines and
replay-script export, and the ``sockscope export`` / ``sockscope import`` commands.

Role: the package's modules turn sockscope's records (``proxy.model``) into other formats and back. Everything
here is Qt-free; the window's File-menu glue around it is :mod:`inspector.ui.sessions`. scapy (packet and
capture-file formats) is imported lazily, inside the functions that need it, so neither the window nor this
package pays for it at start-up.
Must not import: PySide6, ``inspector.ui``, ``proxy.server`` at module level.
Thread: any; each exporter/importer object belongs to the thread that uses it.
"""

from __future__ import annotations

__all__: list[str] = []

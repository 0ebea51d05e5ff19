"""The timeline's analysis: request/response pairing, per-type statistics and teaching annotations.

Role: package marker only; import the modules you need. Everything here is Qt-free and tested without Qt; the
views over it (RTT and throughput plots, the ladder diagram, the Timeline and Statistics docks) are in
``inspector.ui.timeline``.
Must not import: Qt (PySide6, pyqtgraph), ``inspector.ui``, ``inspector.bridge``.
Thread: none of its own; called on the GUI thread by ``inspector.ui.timeline.dock``.
"""

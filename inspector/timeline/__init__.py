"""The timeline: request/response pairing, per-type statistics, teaching annotations (all Qt-free), and the Qt
views over them (RTT and throughput plots, the ladder diagram, the Timeline and Statistics docks).

Role: package marker only; import the modules you need (``inspector.timeline.pairing`` stays Qt-free, so
importing this package must not pull in Qt either).
Must not import: Qt (here).
Thread: none.
"""

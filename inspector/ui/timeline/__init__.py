"""The timeline's Qt views: RTT and throughput plots, the ladder diagram, the Timeline and Statistics docks.

Role: package marker only. The analysis these views draw (pairing, statistics, annotations) is Qt-free, in
``inspector.timeline``.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

"""The latency-compensation lab: input-to-acknowledgement delay, inputs in flight, snapshot intervals with the
interpolation delay that covers them, and the corrections a predicting client has to make, measured from a game's
own messages as they pass the proxy.

Role: the Qt-free entry points. :func:`analyse` takes captured records (``proxy.model.Message`` and the updates
that follow them) and schema hints, and returns a :class:`LabReport` (what a pytest plugin or a script asserts
on: ``report.overall.corrections_px.max <= 5``); :func:`load_hints` reads a hints file (TOML, line-numbered
errors); :class:`Hints` says which decoded field is the input sequence, the acknowledgement, the server's tick or
time and the positions, given or inferred from obvious names. The window's Lab dock (``inspector.ui.lab_dock``)
draws the same computation live.
Must not import: Qt (PySide6, pyqtgraph), ``inspector.ui``, ``inspector.bridge``.
Thread: none of its own; not thread-safe (GUI thread in the window, any one thread in tests and plugins).
"""

from __future__ import annotations

from inspector.lab.analysis import LabAnalysis, analyse, analyse_session, analyse_store
from inspector.lab.core import ConnLab, LabTracker, Series
from inspector.lab.hints import (
    ROLES,
    FieldRef,
    Hint,
    Hints,
    HintsError,
    MessageType,
    infer_roles,
    load_hints,
    parse_hints,
)
from inspector.lab.report import ConnReport, Distribution, Interpolation, LabReport

__all__ = [
    "ROLES",
    "ConnLab",
    "ConnReport",
    "Distribution",
    "FieldRef",
    "Hint",
    "Hints",
    "HintsError",
    "Interpolation",
    "LabAnalysis",
    "LabReport",
    "LabTracker",
    "MessageType",
    "Series",
    "analyse",
    "analyse_session",
    "analyse_store",
    "infer_roles",
    "load_hints",
    "parse_hints",
]

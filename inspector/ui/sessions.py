"""The window's File-menu sessions and exports: Open session… (and drag and drop), Save session…, Keep recording to a
file, and Export visible messages as pcapng / JSON lines / a replay script.

Role: Qt glue around the Qt-free modules of this package, owned by the main window (``window.sessions``):

- While a proxy runs, every record the window receives (``RecordPump.on_batch``) is spooled to a session file,
  a temporary one by default (as Wireshark does), so "Save session…" copies exactly what arrived, and "Keep
  recording to a file…" moves the spool to the user's file and keeps appending to it.
- "Open session…" (or dropping a ``.sockscope``, ``.pcap`` or ``.pcapng`` file on the window) stops the proxy,
  empties the table and streams the file in with :class:`~inspector.interop.session_io.SessionLoader`: one
  bounded batch per timer tick (about 50 ms), so the first rows show at once, the window stays responsive, a
  progress dialog counts up and Cancel keeps what was read. Captures are imported
  (:mod:`~inspector.interop.pcap_import`) with the toolbar's framing and spooled, so they can be saved too.
- Exports take the visible rows (what the filter shows) in slices, with the same progress dialog.

Only ``inspector.ui.main_window`` imports this module; what it uses of the window is :class:`SessionWindow`, a
``Protocol``, so it does not import the window back.
Must not import: ``inspector.ui.main_window``, ``proxy.server``/``proxy.runner``; scapy only through the exporters,
lazily.
Thread: GUI thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Protocol

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, SignalInstance
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QComboBox, QFileDialog, QMenu, QProgressDialog, QStatusBar, QWidget

from inspector.bridge import Link, LinkOptions
from inspector.store import ApplyResult, MessageStore
from inspector.ui.decoding import Decoding
from inspector.ui.detail import DetailPane
from inspector.ui.filter_bar import FilterBar
from inspector.ui.message_model import MessageTableModel
from inspector.ui.pump import RecordPump
from inspector.ui.side_models import ConnectionsModel, HeldModel
from proxy.model import Clock, Record

if TYPE_CHECKING:
    # the session file format (and proxy.codec, proxy.session) is imported where a session is written or read:
    # ~15 ms the window's first frame need not wait for
    from inspector.interop.session_io import SessionWriter

__all__ = ["SessionActions", "SessionWindow"]

CAPTURE_EXTS: Final = (".pcap", ".pcapng", ".cap")
SESSION_FILTER: Final = "sockscope sessions (*.sockscope *.session);;Captures (*.pcap *.pcapng *.cap);;All files (*)"
STEP_SECONDS: Final = 0.05
"""Work per timer tick while loading or exporting: the window repaints and reacts between ticks."""
PROGRESS_AT_ONCE_BYTES: Final = 1 << 20
"""Files at least this big show the progress dialog at once (smaller ones only if loading takes > 0.5 s)."""


class SessionWindow(Protocol):
    """What the session actions use of the main window (:class:`inspector.ui.main_window.MainWindow`)."""

    store: MessageStore
    model: MessageTableModel
    conn_model: ConnectionsModel
    held_model: HeldModel
    decoding: Decoding
    detail: DetailPane
    filter_bar: FilterBar
    pump: RecordPump
    link: Link | None
    options: LinkOptions | None
    framing_combo: QComboBox
    _link_ready: SignalInstance

    def statusBar(self) -> QStatusBar: ...
    def windowTitle(self) -> str: ...
    def close(self) -> bool: ...
    def setAcceptDrops(self, on: bool) -> None: ...
    def installEventFilter(self, watched: QObject) -> None: ...
    def stop_link(self) -> None: ...
    def note_used_ids(self) -> None: ...
    def ask(self, title: str, text: str, detail: str, choices: list[str],
            then: Callable[[str | None], None]) -> Any: ...
    def show_banner(self, text: str, *, error: bool, restart: bool = False) -> None: ...
    def _log(self, level: str, text: str) -> None: ...
    def _report_error(self, text: str) -> None: ...
    def _on_applied(self, result: ApplyResult) -> None: ...
    def _update_status(self) -> None: ...


class SessionActions(QObject):
    """Created by the main window; ``add_to_menu(file_menu)`` puts the actions in its File menu."""

    def __init__(self, window: SessionWindow) -> None:
        if not isinstance(window, QWidget):
            raise TypeError("the session actions belong to a window (a QWidget)")
        super().__init__(window)
        self.w = window
        self.widget: QWidget = window
        """The window as the parent of dialogs."""
        self.writer: SessionWriter | None = None
        self.spool_path: str | None = None
        self.spool_is_temp = False
        self.source_path: str | None = None
        """The session file the table was loaded from (Save session… copies it)."""
        self.progress: QProgressDialog | None = None
        self.loading = False
        self.exporting = False
        self.last_error: str | None = None
        self.first_rows_s: float | None = None
        """Seconds from "open" to the first rows in the table (for the benchmark and the status bar)."""
        self._step: Callable[[], bool] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._tick)

        self.open_action = self._action("&Open session…", QKeySequence.StandardKey.Open,
                                        "open a session file or a pcap/pcapng capture (or drop one on the window)",
                                        lambda: self.open_file())
        self.save_action = self._action("&Save session…", QKeySequence.StandardKey.Save,
                                        "save everything captured so far as a session file",
                                        lambda: self.save_session())
        self.record_action = self._action("&Keep recording to a file…", None,
                                          "write everything captured, now and from now on, to a session file",
                                          None)
        self.record_action.setCheckable(True)
        self.record_action.toggled.connect(self._record_toggled)
        self.export_actions = {
            "pcapng": self._action("Export visible as &pcapng (Wireshark)…", None,
                                   "the visible messages as synthetic TCP streams",
                                   lambda: self.export_visible("pcapng")),
            "jsonl": self._action("Export visible as &JSON lines…", None,
                                  "the visible messages with their decoded views",
                                  lambda: self.export_visible("jsonl")),
            "script": self._action("Export visible as a &replay script…", None,
                                   "a Python script that replays the client side with plain sockets",
                                   lambda: self.export_visible("script")),
        }
        window.setAcceptDrops(True)
        window.installEventFilter(self)
        window.pump.on_batch.append(self._on_batch)
        window._link_ready.connect(self._on_link_ready)

    def _action(self, text: str, key: Any, tip: str, slot: Callable[[], Any] | None) -> Any:
        from PySide6.QtGui import QAction

        a = QAction(text, self.widget)
        if key is not None:
            a.setShortcut(QKeySequence(key))
        a.setToolTip(tip)
        a.setStatusTip(tip)
        if slot is not None:
            a.triggered.connect(lambda _=False: slot())
        return a

    def add_to_menu(self, menu: QMenu) -> None:
        menu.addSeparator()
        menu.addAction(self.open_action)
        menu.addAction(self.save_action)
        menu.addAction(self.record_action)
        export = menu.addMenu("&Export visible messages")
        for a in self.export_actions.values():
            export.addAction(a)

    # ============================================================================================ live spool

    def _on_link_ready(self, link: Link, error: str | None) -> None:
        if error is not None or self.writer is not None:
            return
        self.source_path = None
        self._start_spool(link)

    def _start_spool(self, link: Link | None) -> None:
        from inspector.interop.session_io import SessionWriter

        o = self.w.options
        framing = {"c2s": "raw", "s2c": "raw", "max_frame": 16 << 20, "text": o.framing if o else "raw"}
        if o is not None:
            with contextlib.suppress(Exception):
                from proxy.codec import framing_to_dict
                from proxy.framing import parse_framing

                framing = framing_to_dict(parse_framing(o.framing))
        fd, path = tempfile.mkstemp(prefix="sockscope-", suffix=".sockscope")
        os.close(fd)
        clock = (link.clock if link is not None else None) or self.w.model.clock or Clock.now()
        self.writer = SessionWriter(path, clock=clock, listen=link.listen_addr if link else None,
                                    target=link.target_addr if link else None, framing=framing)
        self.spool_path, self.spool_is_temp = path, True

    def _on_batch(self, records: list[Record]) -> None:
        w = self.writer
        if w is None or self.loading:
            return
        frames = self.w.pump.last_frames
        try:
            if len(frames) == len(records):  # as received: no encoding again on the GUI thread
                w.write_framed(records, frames)
            else:
                w.write_many(records)
            w.flush()
        except OSError as e:
            self._fail(f"recording to {self.spool_path} stopped: {e.strerror or e}")
            self._drop_spool(delete=False)

    def _drop_spool(self, delete: bool = True) -> None:
        w, self.writer = self.writer, None
        if w is not None:
            with contextlib.suppress(OSError):
                w.close()
        if delete and self.spool_is_temp and self.spool_path:
            with contextlib.suppress(OSError):
                os.unlink(self.spool_path)
        self.spool_path = None
        self.spool_is_temp = False
        if self.record_action.isChecked():
            self.record_action.blockSignals(True)
            self.record_action.setChecked(False)
            self.record_action.blockSignals(False)

    def _record_toggled(self, on: bool) -> None:
        if on:
            path, _ = QFileDialog.getSaveFileName(self.widget, "Keep recording to", "capture.sockscope", SESSION_FILTER)
            if not path or not self.record_to(path):
                self.record_action.blockSignals(True)
                self.record_action.setChecked(False)
                self.record_action.blockSignals(False)
        else:
            self.stop_recording_to_file()

    def record_to(self, path: str) -> bool:
        """From now on the spool is ``path``: everything captured so far, then every new record."""
        from inspector.interop.session_io import SessionWriter
        from proxy.session import SessionError

        path = os.path.abspath(path)
        try:
            if self.writer is None:
                self._start_spool(self.w.link)
            assert self.writer is not None and self.spool_path is not None
            self.writer.close()
            if self.spool_is_temp:
                shutil.move(self.spool_path, path)
            elif self.spool_path != path:
                shutil.copyfile(self.spool_path, path)
            self.writer = SessionWriter(path, append=True)
            self.spool_path, self.spool_is_temp = path, False
        except (OSError, SessionError) as e:
            self._fail(f"cannot record to {path}: {e}")
            return False
        if not self.record_action.isChecked():
            self.record_action.blockSignals(True)
            self.record_action.setChecked(True)
            self.record_action.blockSignals(False)
        self.w.statusBar().showMessage(f"recording to {path}", 6000)
        return True

    def stop_recording_to_file(self) -> None:
        """Close the user's file (complete up to now); keep spooling to a temporary copy so Save still works."""
        from inspector.interop.session_io import SessionWriter
        from proxy.session import SessionError

        if self.writer is None or self.spool_is_temp or self.spool_path is None:
            return
        done = self.spool_path
        self.writer.close()
        fd, tmp = tempfile.mkstemp(prefix="sockscope-", suffix=".sockscope")
        os.close(fd)
        try:
            shutil.copyfile(done, tmp)
            self.writer = SessionWriter(tmp, append=True)
            self.spool_path, self.spool_is_temp = tmp, True
        except (OSError, SessionError) as e:
            self.writer = None
            self._fail(f"cannot keep a copy of the capture: {e}")
        if self.record_action.isChecked():
            self.record_action.blockSignals(True)
            self.record_action.setChecked(False)
            self.record_action.blockSignals(False)
        self.w.statusBar().showMessage(f"stopped recording to {done}", 6000)

    # ============================================================================================ save

    def save_session(self, path: str | None = None) -> bool:
        """Save the current capture (exactly the records received or loaded) to ``path`` (asks if None)."""
        from inspector.interop.session_io import SessionWriter, store_records

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.widget, "Save session", "capture.sockscope", SESSION_FILTER)
            if not path:
                return False
        path = os.path.abspath(path)
        try:
            if self.writer is not None and self.spool_path is not None:
                self.writer.flush()
                if self.spool_path != path:
                    shutil.copyfile(self.spool_path, path)
            elif self.source_path is not None:
                if os.path.abspath(self.source_path) != path:
                    shutil.copyfile(self.source_path, path)
            else:  # nothing spooled (e.g. a store filled by hand): write the rows as records
                s = self.w.store
                with SessionWriter(path, clock=self.w.model.clock or Clock.now()) as out:
                    out.write_many(store_records(s, range(len(s))))
        except OSError as e:
            self._fail(f"cannot save {path}: {e.strerror or e}")
            return False
        self.w.statusBar().showMessage(f"saved {path}", 6000)
        self.w._log("info", f"session saved to {path}")
        return True

    # ============================================================================================ open

    def open_file(self, path: str | None = None, *, confirmed: bool = False) -> bool:
        """Open a session or import a capture (asks for the file when ``path`` is None). While the proxy is live,
        the user is asked first (opening stops it; save first?): then this returns False and the file opens once
        the user agrees."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.widget, "Open session or capture", "", SESSION_FILTER)
            if not path:
                return False
        link = self.w.link
        if not confirmed and link is not None and link.alive:
            self._ask_to_stop(path)
            return False
        if os.path.splitext(path)[1].lower() in CAPTURE_EXTS:
            return self.import_capture(path)
        return self.open_session(path)

    def _ask_to_stop(self, path: str) -> None:
        name = os.path.basename(path)
        conns = sum(1 for c in self.w.store.connections.values() if c.is_open)
        n = len(self.w.store)
        detail = (f"Opening it stops the proxy: {conns} open connection{'s' if conns != 1 else ''} through sockscope "
                  "will be closed (your client will notice), " if conns else "Opening it stops the proxy, ")
        detail += (f"and the {n:,} captured message{'s' if n != 1 else ''} in the table are replaced by the file's. "
                   "Save them first?" if n else "and the table shows the file's messages.")
        choices = ["Save, then open", "Open without saving"] if n else ["Stop and open"]

        def then(choice: str | None) -> None:
            if choice is None:
                self.w.statusBar().showMessage(f"did not open {name}: still capturing live", 6000)
                return
            if choice.startswith("Save") and not self.save_session():
                self.w.statusBar().showMessage(f"did not open {name}: the capture was not saved", 6000)
                return
            self.open_file(path, confirmed=True)

        self.w.ask("Stop capturing and open a file?", f"Stop the live capture and open {name}?", detail, choices,
                   then)

    def _reset_for_load(self) -> None:
        self.cancel()
        w = self.w
        w.stop_link()
        self._drop_spool()
        w.note_used_ids()  # a proxy started later goes on after the numbers the table showed
        s = w.store
        s.held.clear()
        s.clear()
        s.connections.clear()
        s.totals_msgs, s.totals_bytes = [0, 0], [0, 0]
        s.rows_refused = s.skipped_while_paused = 0
        w.model.reset()
        w.conn_model.reset()
        w.held_model.reset()
        w.detail.show_row(None)

    def open_session(self, path: str) -> bool:
        """Replace the table with the session at ``path``, streamed in with a progress dialog."""
        from inspector.interop.session_io import SessionLoader
        from proxy.session import SessionError

        try:
            loader = SessionLoader(path)
        except SessionError as e:
            self._fail(str(e))
            return False
        self._reset_for_load()
        self.source_path = os.path.abspath(path)
        self.w.model.clock = loader.header.clock
        title = os.path.basename(path)

        def step() -> bool:
            batch = loader.next_batch(max_records=100_000, max_seconds=STEP_SECONDS)
            self._apply(batch)
            self._set_progress(loader.progress, f"{loader.records:,} records")
            if loader.done:
                if loader.truncated:
                    self.w._log("warning", f"{title} ends inside a record ({loader.truncated_bytes} bytes ignored: "
                                           "the recording was cut short)")
                self._loaded(f"opened {title}: {len(self.w.store):,} messages")
                return False
            return True

        def cancelled() -> None:
            loader.close()
            self._loaded(f"stopped opening {title}: {len(self.w.store):,} messages loaded", cancelled=True)

        return self._run(f"Opening {title}…", step, cancelled, loader.total_bytes, on_error=loader.close)

    def import_capture(self, path: str) -> bool:
        """Import a pcap/pcapng capture (framing from the toolbar) into the table and a spool (so it can be saved)."""
        from inspector.interop.pcap_import import CaptureError, CaptureImporter
        from inspector.interop.session_io import SessionWriter
        from proxy.codec import framing_to_dict
        from proxy.framing import FramingError, parse_framing

        framing = self.w.framing_combo.currentText().strip() or "auto"
        try:
            imp = CaptureImporter(path, framing=framing)
            spec = parse_framing(framing)
            it = imp.records()
            first = list(islice(it, 1))  # opens the file: "not a capture" fails here, before the table is emptied
        except (CaptureError, FramingError) as e:
            self._fail(str(e))
            return False
        self._reset_for_load()
        fd, spool = tempfile.mkstemp(prefix="sockscope-", suffix=".sockscope")
        os.close(fd)
        self.writer = SessionWriter(spool, clock=Clock(0, 0), target=imp.first_target, framing=framing_to_dict(spec))
        self.spool_path, self.spool_is_temp = spool, True
        self.w.model.clock = Clock(0, 0)
        size = max(1, os.path.getsize(path))
        title = os.path.basename(path)
        pending: Iterator[Record] = iter(first)

        def step() -> bool:
            deadline = time.perf_counter() + STEP_SECONDS
            batch = list(pending)
            while time.perf_counter() < deadline:
                more = list(islice(it, 2000))
                batch += more
                if not more:
                    break
            else:
                more = [None]  # type: ignore[list-item]
            assert self.writer is not None
            self.writer.write_many(batch)
            self._apply(batch)
            self._set_progress(min(1.0, imp.report.packets * 80 / size), f"{imp.report.packets:,} packets")
            if not more:
                self.writer.flush()
                r = imp.report
                for text in r.warnings:
                    self.w._log("warning", text)
                for gap in r.gaps:
                    self.w._log("warning", str(gap))
                self._loaded(f"imported {title}: {r.messages:,} messages in {r.connections} connections"
                             + (f", {len(r.gaps)} gaps (see the log)" if r.gaps else ""))
                if r.damage is not None:  # the file is damaged further in: what came before stays in the table
                    self._fail(r.damage)
                return False
            return True

        def cancelled() -> None:
            self._loaded(f"stopped importing {title}", cancelled=True)

        return self._run(f"Importing {title}…", step, cancelled, size)

    def _apply(self, batch: list[Record]) -> None:
        if not batch:
            return
        w = self.w
        for consumer in w.pump.on_batch:
            if consumer != self._on_batch:
                consumer(batch)
        w._on_applied(w.store.apply(batch))
        if self.first_rows_s is None and len(w.store):
            self.first_rows_s = time.perf_counter() - self._started

    def _loaded(self, text: str, cancelled: bool = False) -> None:
        w = self.w
        w.filter_bar.set_counts(w.store.visible_count, len(w.store))
        w._update_status()
        w.statusBar().showMessage(text, 10000)
        w._log("warning" if cancelled else "info", text)
        if w.options is not None:  # the window had a proxy of its own: say how to get back to it
            w.show_banner(f"{text[:1].upper() + text[1:]}. The proxy is stopped: nothing is captured live. Start "
                          "again captures live again (with the numbering going on after the file's).", error=False,
                          restart=True)

    # ============================================================================================ export

    def export_visible(self, fmt: str, path: str | None = None) -> bool:
        """Export the visible messages (``pcapng``, ``jsonl`` or ``script``) to ``path`` (asks if None)."""
        from inspector.interop.session_io import store_records

        names = {"pcapng": ("capture.pcapng", "pcapng (*.pcapng)"), "jsonl": ("messages.jsonl", "JSON lines (*.jsonl)"),
                 "script": ("replay.py", "Python script (*.py)")}
        if path is None:
            default, filt = names[fmt]
            path, _ = QFileDialog.getSaveFileName(self.widget, "Export visible messages", default, filt)
            if not path:
                return False
        w = self.w
        rows = w.store.visible[:]
        clock = w.model.clock or Clock.now()
        exporter: Any
        try:
            if fmt == "pcapng":
                from inspector.interop.pcapng_export import PcapngExporter

                exporter = PcapngExporter(path, clock=clock)
            elif fmt == "jsonl":
                from inspector.interop.jsonl import JsonlExporter

                def view(m: Any) -> Any:  # the table's decoding, so "decode as" choices apply
                    row = w.store.row_of(m.id)
                    return w.decoding.view(row, detail=False) if row is not None else _default_view(m)

                exporter = JsonlExporter(path, clock=clock, decoder=view)
            else:
                from inspector.interop.replay_script import ReplayScriptExporter

                exporter = ReplayScriptExporter(path, source=w.windowTitle() or "a sockscope capture")
        except (OSError, ValueError) as e:
            self._fail(f"cannot export to {path}: {e}")
            return False
        records = store_records(w.store, rows)
        total = max(1, len(rows))
        done = [0]

        def step() -> bool:
            deadline = time.perf_counter() + STEP_SECONDS
            while time.perf_counter() < deadline:
                chunk = list(islice(records, 5000))
                if not chunk:
                    exporter.close()
                    self.exporting = False
                    w.statusBar().showMessage(f"exported {len(rows):,} messages to {path}", 8000)
                    w._log("info", f"exported {len(rows):,} visible messages to {path}")
                    return False
                exporter.add_many(chunk)
                done[0] += len(chunk)
            self._set_progress(min(1.0, done[0] / total), f"{min(done[0], total):,} of {total:,}")
            return True

        def cancelled() -> None:
            with contextlib.suppress(Exception):
                exporter.close()
            self.exporting = False
            with contextlib.suppress(OSError):
                os.unlink(path)  # type: ignore[arg-type]
            w.statusBar().showMessage("export cancelled", 6000)

        self.exporting = True
        return self._run(f"Exporting {len(rows):,} messages…", step, cancelled, len(rows) * 100,
                         on_error=lambda: setattr(self, "exporting", False))

    # ============================================================================================ stepping

    def _run(self, label: str, step: Callable[[], bool], cancelled: Callable[[], None], size: int,
             on_error: Callable[[], None] | None = None) -> bool:
        from proxy.session import SessionError

        self.cancel()
        self._started = time.perf_counter()
        self.first_rows_s = None
        self.loading = not label.startswith("Exporting")
        dlg = QProgressDialog(label, "Cancel", 0, 1000, self.widget)
        dlg.setWindowTitle("sockscope")
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.setMinimumDuration(0 if size >= PROGRESS_AT_ONCE_BYTES else 500)
        dlg.setValue(0)
        self.progress = dlg
        self._cancelled = cancelled
        self._on_error = on_error

        def guarded() -> bool:
            try:
                return step()
            except (SessionError, OSError) as e:
                if self._on_error is not None:
                    self._on_error()
                self._fail(str(e))
                return False

        self._step = guarded
        dlg.canceled.connect(self.cancel)
        self._tick()  # the first batch at once: the first rows show without waiting for a timer
        if self._step is not None:
            self._timer.start()
        return True

    def _tick(self) -> None:
        step = self._step
        if step is None:
            self._timer.stop()
            return
        if self.progress is not None and self.progress.wasCanceled():  # Esc, or cancel() without the signal
            self.cancel()
            return
        if not step():
            self._finish()

    def _finish(self) -> None:
        self._timer.stop()
        self._step = None
        self.loading = False
        dlg, self.progress = self.progress, None
        if dlg is not None:
            dlg.canceled.disconnect(self.cancel)
            dlg.close()
            dlg.deleteLater()

    def cancel(self) -> None:
        """Stop a running load or export (the Cancel button); what was loaded stays."""
        if self._step is None:
            return
        cancelled = self._cancelled
        self._finish()
        cancelled()

    @property
    def busy(self) -> bool:
        return self._step is not None

    def _set_progress(self, fraction: float, text: str) -> None:
        dlg = self.progress
        if dlg is not None:
            dlg.setValue(min(999, int(fraction * 1000)))
            dlg.setLabelText(f"{dlg.labelText().split(chr(10))[0]}\n{text}")

    def _fail(self, text: str) -> None:
        self.last_error = text
        self.w._report_error(text)

    # ============================================================================================ events

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        t = event.type()
        if t == QEvent.Type.DragEnter and isinstance(event, QDragEnterEvent):
            if _local_file(event.mimeData()) is not None:
                event.acceptProposedAction()
                return True
        elif t == QEvent.Type.Drop and isinstance(event, QDropEvent):
            path = _local_file(event.mimeData())
            if path is not None:
                event.acceptProposedAction()
                QTimer.singleShot(0, lambda: self.open_file(path))
                return True
        elif t == QEvent.Type.Close:
            self.cancel()
            self._drop_spool()
        return False


def _local_file(mime: Any) -> str | None:
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            return str(url.toLocalFile())
    return None


def _default_view(m: Any) -> Any:
    from inspector.decode import decode_message

    return decode_message(m, detail=False)

"""``python docs/tutorial/browser_shots.py OUTDIR [--size WxH]``: the pictures of docs/tutorial/browser.md.

Role: drive the real window (``tools.tutorial_shots.Shooter``: a ``MainWindow`` and its proxy, an engine on a thread
of this process attached over loopback) in front of ``browser_game.py --role server``, play
``browser_game.py --role client`` through it, and save what the chapter shows: the session decoded
(``browser-1-session.png``), a held input being edited (``browser-2-edit.png``) and the table after it was
forwarded, with sockscope's notice that the rest of that direction now goes uncompressed (``browser-3-edited.png``).
Run it under ``xvfb-run -a -s "-screen 0 1600x1000x24"`` (or ``QT_QPA_PLATFORM=offscreen``). A development tool.
Must not import at module level: PySide6 or the window.
Thread: GUI thread; one daemon thread per child process reads its stdout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.tutorial_shots import Shooter, pick_ports  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="1600x1000")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    suffix = "" if args.size == "1600x1000" else f"-{args.size}"
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from proxy.model import Direction

    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        scripts = Path(tmp)
        shutil.copy(HERE / "browser_game.py", scripts / "browser_game.py")
        server_port, client_port = pick_ports(prefer_doc=False)
        sh = Shooter(app, args.out, scripts, (server_port, client_port), size)  # type: ignore[arg-type]
        w = sh.w
        try:
            server = sh.run("browser_game.py", "--role", "server", "--port", str(server_port))
            sh.wait_until(lambda: server.saw("game server on"), "the game server")

            # 1. a whole session: handshake, inputs, snapshots, binary state, ping/pong, fragments, close
            client = sh.run("browser_game.py", "--role", "client", "--port", str(client_port))
            sh.finish(client)
            sh.wait_until(lambda: sh.rows() >= 23, "the session's 23 messages")
            w.follow_action.setChecked(False)
            sh.select(lambda row: sh.c2s(row) and '"seq": 3' in w.decoding.summary(row))
            w.table.scrollToTop()
            w.detail.tree.expandAll()
            sh.choose_field("masking key")
            save(sh, args.out / f"browser-1-session{suffix}.png")

            # 2. hold the next input and edit it
            sh.front(w.intercept_dock)
            client = sh.run("browser_game.py", "--role", "client", "--port", str(client_port), "--tick", "1.5")
            sh.wait_until(lambda: any(w.store.conn_ids[r] == 2 and "welcome" in w.decoding.summary(r)
                                      for r in range(len(w.store))), "the second game's welcome")
            sh.select(lambda row: w.store.conn_ids[row] == 2)
            w.hold_next(Direction.C2S)
            sh.barrier()
            sh.wait_until(lambda: w.store.held_count == 1, "an input to be held")
            mid = next(iter(w.store.held))
            row = w.store.row_of(mid)
            assert row is not None
            pos = w.store.visible_position(row)
            if pos is not None:
                w.select_visible(pos)
            dlg = w.edit_and_forward(mid)
            assert dlg is not None
            dlg.edit.setPlainText(dlg.edit.toPlainText().replace('"right"', '"left"'))
            dlg.resize(640, 300)
            from tools.screenshots import window_with_dialog

            sh.settle_for_picture()
            shot = window_with_dialog(w, dlg)
            if not shot.save(str(args.out / f"browser-2-edit{suffix}.png")):
                raise RuntimeError("could not write browser-2-edit.png")
            print("saved browser-2-edit.png", flush=True)

            # 3. forwarded: the server moved the player left; the rest of c2s goes uncompressed
            dlg.accept()
            sh.wait_until(lambda: "uncompressed" in w.statusBar().currentMessage(), "sockscope's notice")
            sh.select(lambda r: w.store.conn_ids[r] == 2 and w.store.ids[r] == mid)
            w.detail.tree.expandAll()
            save(sh, args.out / f"browser-3-edited{suffix}.png")
            sh.finish(client)
            if not client.saw('"tick": 1, "you": {"x": 100.0'):  # moved left, not right
                raise RuntimeError("the server did not get the edited input:\n" + "\n".join(client.output()))
        finally:
            for child in sh.children:
                child.stop()
            w.close()


def save(sh: Shooter, path: Path) -> None:
    sh.settle_for_picture()
    if not sh.w.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    print(f"saved {path.name}", flush=True)


if __name__ == "__main__":
    main()

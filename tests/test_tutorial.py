"""Every shell command in docs/tutorial.md (and docs/lessons.md) is run here, and ``python
tools/tutorial_shots.py`` makes the tutorial's PNGs.

The commands are read from the doc's ``bash``/``console``/``sh``/untagged fenced blocks (``text`` blocks are
output, ``python`` blocks are code). ``COMMANDS`` maps each one to how it is exercised; a command in the doc
that is not in the table (or a table entry no longer in the doc) fails ``test_every_tutorial_command_is_tested``;
``LESSON_COMMANDS`` and ``test_every_lessons_command_is_tested`` do the same for docs/lessons.md.

How a doc command becomes a process (``Sandbox.argv``):

- ``sockscope`` -> ``python -m inspector`` (``sockscope run`` included), ``sockscope-proxy`` -> ``python -m proxy``,
  ``python`` -> this interpreter: the entry points' own modules, from the checkout under test.
- Ports: 5555 and 5556 may be busy on a test machine. Every 5555 becomes a free port ``server`` and every 5556 a
  free port ``client``, in the command and in the scripts, which are copied (``docs/tutorial/*.py`` and
  ``docs/examples/game/*.py``) to a temporary directory with the same replacement. The tutorial's one-line edit
  (``CLIENT_PORT = 5556`` in exercise.py) is a second copy, ``edited/``.
- The one install command is not run (it needs the network and changes the environment): its test checks that
  the distribution it installs is there with both commands, and that they start.

Real sockets on 127.0.0.1; long-running commands are started, read until their expected line with a deadline,
then stopped (their whole process group, so a ``sockscope run`` child goes too). No sleep is a synchronisation;
the one poll (the window's port accepting) has a deadline. GUI commands run offscreen (Qt) or with SDL's dummy
video driver (pygame).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.framing import FramingSpec
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from tools.tutorial_shots import STEPS, copy_scripts

pytestmark = pytest.mark.slow  # every test here runs the documented commands as processes (about 17 s in all)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tutorial.md"
TUTORIAL = ROOT / "docs" / "tutorial"
GAME = ROOT / "docs" / "examples" / "game"
DEADLINE = 15.0
COMMAND_BLOCKS = {"", "bash", "console", "sh", "shell"}
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1", "QT_QPA_PLATFORM": "offscreen",
       "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
REPLY_LINE = "[SERVER] Client says: Ping received! 📥"


# ------------------------------------------------------------------------------------------ the doc's commands


def doc_commands(text: str) -> list[str]:
    """The shell commands of the fenced command blocks, in order (``$ `` prompts stripped, ``\\`` lines joined)."""
    commands: list[str] = []
    for m in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        info, body = m.group(1).lower(), m.group(2)
        if info not in COMMAND_BLOCKS:
            continue
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            line = line.strip()
            if info == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_doc_commands_parser() -> None:
    text = "```bash\na --x \\\n  1\n# note\n```\n```text\nout\n```\n```console\n$ b\noutput\n```\n```\nc\n```\n"
    assert doc_commands(text) == ["a --x    1", "b", "c"]


# ------------------------------------------------------------------------------------------ processes


class Proc:
    """A child in its own process group, its stdout and stderr read line by line into one queue."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(argv, cwd=cwd, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                      start_new_session=os.name != "nt")
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name, stream in (("out", self.popen.stdout), ("err", self.popen.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put((name, line.rstrip("\n")))

    def expect(self, pattern: str, stream: str | None = None, deadline: float = DEADLINE,
               count: int = 1) -> re.Match[str]:
        """Read lines until ``count`` lines so far match ``pattern`` (a regex); fail with everything seen."""
        rx = re.compile(pattern)
        found = 0
        for name, line in self.seen:
            if (stream is None or name == stream) and (m := rx.search(line)):
                found += 1
                if found >= count:
                    return m
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            try:
                name, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append((name, line))
            if (stream is None or name == stream) and (m := rx.search(line)):
                found += 1
                if found >= count:
                    return m
        self.stop()
        raise AssertionError(f"{shlex.join(self.argv)}: no line matching {pattern!r} within {deadline} s; "
                             "saw:\n" + "\n".join(f"{n}: {t}" for n, t in self.seen))

    def finish(self, deadline: float = DEADLINE) -> int:
        try:
            code = self.popen.wait(deadline)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{shlex.join(self.argv)} did not finish within {deadline} s") from None
        self.expect_nothing_more()
        return code

    def expect_nothing_more(self) -> None:
        """Collect the remaining lines (the pipes close when the process group has exited)."""
        with contextlib.suppress(AssertionError):
            self.expect(r"\A\Z(?!x)x", deadline=0.5)  # matches nothing: drains what is left

    def output(self) -> str:
        return "\n".join(f"{n}: {t}" for n, t in self.seen)

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.name != "nt":
                    os.killpg(self.popen.pid, signal.SIGTERM)
                else:
                    self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.name != "nt":
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    else:
                        self.popen.kill()
                self.popen.wait(5)
        for s in (self.popen.stdout, self.popen.stderr):
            if s is not None:
                s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Sandbox:
    server: int
    client: int
    scripts: Path  # docs/tutorial copied, 5555 -> server
    edited: Path  # the same, with the exercise's client on `client` (the tutorial's one-line edit)
    game: Path  # docs/examples/game copied, 5555 -> server
    procs: list[Proc]

    def argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        head = {"python": [sys.executable], "sockscope-proxy": [sys.executable, "-m", "proxy"]}
        if words[0] == "sockscope":
            out, words = [sys.executable, "-m", "inspector"], words[1:]
        else:
            out, words = head[words[0]], words[1:]
        for w in words:
            w = w.replace("docs/tutorial/", f"{self.scripts}{os.sep}").replace("docs/examples/game/",
                                                                                f"{self.game}{os.sep}")
            out.append(w.replace("5555", str(self.server)).replace("5556", str(self.client)))
        return out

    def start(self, command: str, *, edited: bool = False) -> Proc:
        argv = self.argv(command)
        if edited:
            argv = [a.replace(str(self.scripts), str(self.edited)) for a in argv]
        p = Proc(argv, ROOT)
        self.procs.append(p)
        return p

    def relay(self) -> ProxyThread:
        """A proxy on the window's port (`client`) in front of `server`: what the open window provides."""
        cfg = ProxyConfig(listen_port=self.client, target_port=self.server, framing=FramingSpec())
        return ProxyThread(cfg, ()).start()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    server, client = _free_port(), _free_port()
    while client == server:
        client = _free_port()
    dirs = {name: tmp_path / name for name in ("tutorial", "edited", "game")}
    for d in dirs.values():
        d.mkdir()
    copy_scripts(TUTORIAL, dirs["tutorial"], server, server)
    copy_scripts(TUTORIAL, dirs["edited"], server, client)
    for f in GAME.glob("*.py"):
        (dirs["game"] / f.name).write_text(f.read_text(encoding="utf-8").replace("5555", str(server)),
                                           encoding="utf-8")
    box = Sandbox(server, client, dirs["tutorial"], dirs["edited"], dirs["game"], [])
    yield box
    for p in box.procs:
        p.stop()


# ------------------------------------------------------------------------------------------ how each is exercised


def installed(box: Sandbox, command: str) -> None:
    dist = importlib.metadata.distribution("sockscope")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"sockscope": "inspector.app:main", "sockscope-proxy": "proxy.cli:main"}
    import inspector
    import proxy

    for pkg in (inspector, proxy):  # the editable install points at this checkout
        assert Path(pkg.__file__ or "").resolve().parent.parent == ROOT


def proxy_help(box: Sandbox, command: str) -> None:
    p = box.start(command)
    p.expect(r"^usage: ", "out")
    assert p.finish() == 0


def exercise_alone(box: Sandbox, command: str) -> None:
    p = box.start(command)
    p.expect(r"^\[CLIENT\] Message received: Hello from the exercise server! 🚀$", "out")
    p.expect(re.escape(REPLY_LINE) + r"  \(round trip \d+ ms\)$", "out")
    assert p.finish() == 0, p.output()


def sockscope_run_exercise(box: Sandbox, command: str) -> None:
    p = box.start(command)
    p.expect(re.escape(REPLY_LINE), "out")
    p.expect(r'#1 ← s2c +36 B +"Hello from the exercise server! 🚀"', "err")
    p.expect(r'#1 → c2s +19 B +"Ping received! 📥"', "err")
    assert p.finish() == 0, p.output()


def _wait_accepting(port: int, p: Proc) -> None:
    """Poll until the window's proxy accepts on `port` (it prints nothing); a deadline, not a sleep, bounds it."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if p.popen.poll() is not None or time.monotonic() > end:
                p.expect_nothing_more()
                raise AssertionError(f"the window never listened on {port}:\n{p.output()}") from None
            threading.Event().wait(0.05)  # poll interval


def window_in_front_of_exercise(box: Sandbox, command: str) -> None:
    window = box.start(command)
    _wait_accepting(box.client, window)
    ex = box.start("python docs/tutorial/exercise.py", edited=True)  # CLIENT_PORT = 5556: through the window
    ex.expect(re.escape(REPLY_LINE), "out")
    assert ex.finish() == 0, ex.output()
    assert window.popen.poll() is None, "the window exited by itself"


def proxy_with_latency(box: Sandbox, command: str) -> None:
    proxy = box.start(command)
    proxy.expect(rf"listening on 127\.0\.0\.1:{box.client} → 127\.0\.0\.1:{box.server}", "out")
    proxy.expect(r"conditions c2s: 200 ms; s2c: 200 ms", "out")
    ex = box.start("python docs/tutorial/exercise.py", edited=True)
    m = ex.expect(re.escape(REPLY_LINE) + r"  \(round trip (\d+) ms\)", "out")
    assert ex.finish() == 0, ex.output()
    assert 390 <= int(m.group(1)) < 5000, "200 ms each way makes a round trip of about 400 ms"
    proxy.expect(r'→ c2s +19 B \[scheduled\] \+200\.0ms +"Ping received! 📥"', "out")


def exercise_keep_serving(box: Sandbox, command: str) -> None:
    ex = box.start(command)
    ex.expect(re.escape(REPLY_LINE), "out")
    ex.expect(r"still listening on port", "out")
    with socket.create_connection(("127.0.0.1", box.server), timeout=DEADLINE) as c:  # what a replay does
        c.settimeout(DEADLINE)
        c.sendall("Ping received! 📥".encode())
        assert c.recv(2048).decode() == "Hello from the exercise server! 🚀"
    ex.expect(re.escape(REPLY_LINE), "out", count=2)
    ex.stop()


def position_through_window(expected: str) -> Callable[[Sandbox, str], None]:
    def run(box: Sandbox, command: str) -> None:
        relay = box.relay()
        try:
            p = box.start(command)
            p.expect(r"^\[CLIENT\] sending", "out")
            p.expect(expected, "out")
            assert p.finish() == 0, p.output()
        finally:
            relay.stop()

    return run


def game_server(box: Sandbox, command: str) -> None:
    p = box.start(command)
    p.expect(rf"^\[SERVER\] listening on 127\.0\.0\.1:{box.server} \(json, 30 ticks/s\)", "out")
    p.stop()


def game_client_through_sockscope(box: Sandbox, command: str) -> None:
    server = box.start("python docs/examples/game/server.py --format json")
    server.expect(r"^\[SERVER\] listening", "out")
    client = box.start(command)
    client.expect(r"framing len32be", "err")
    client.expect(r"#1 ← s2c +26 B", "err")  # the welcome: 4-byte length + {"t":"welcome","id":1}
    client.expect(r"#1 ← s2c .*\"t\":\"state\"", "err")
    server.expect(r"^\[SERVER\] player 1 joined", "out")
    client.stop()
    server.expect(r"^\[SERVER\] player 1 left", "out")


POSITION = "{'player': 1, 'name': 'Ada', 'x': 120, 'y': 80}"
COMMANDS: dict[str, Callable[[Sandbox, str], None]] = {
    "python -m pip install -e .": installed,
    "sockscope-proxy --help": proxy_help,
    "python docs/tutorial/exercise.py": exercise_alone,
    "sockscope run --port 5555 -- python docs/tutorial/exercise.py": sockscope_run_exercise,
    "sockscope --listen 127.0.0.1:5556 --target 127.0.0.1:5555": window_in_front_of_exercise,
    "sockscope-proxy --listen 127.0.0.1:5556 --target 127.0.0.1:5555 --latency 200": proxy_with_latency,
    "python docs/tutorial/exercise.py --keep-serving": exercise_keep_serving,
    "python docs/tutorial/positions_json.py 5556":
        position_through_window(re.escape(f"[SERVER] got 47 bytes of json: {POSITION}")),
    "python docs/tutorial/positions_msgpack.py 5556":
        position_through_window(re.escape(f"[SERVER] got 24 bytes of msgpack: {POSITION}")),
    "python docs/tutorial/positions_pickle.py 5556":
        position_through_window(re.escape(f"[SERVER] got 52 bytes of pickle: {POSITION}")),
    "python docs/tutorial/hostile_pickle.py 5556":
        position_through_window(r"^\[SERVER\] got \d+ bytes of pickle and did NOT unpickle them$"),
    "python docs/examples/game/server.py --format json": game_server,
    "sockscope run --port 5555 --framing len32 -- python docs/examples/game/client.py --format json":
        game_client_through_sockscope,
}


def test_every_tutorial_command_is_tested() -> None:
    in_doc = doc_commands(DOC.read_text(encoding="utf-8"))
    assert in_doc, "no commands found in docs/tutorial.md"
    missing = [c for c in in_doc if c not in COMMANDS]
    stale = [c for c in COMMANDS if c not in in_doc]
    assert not missing, f"commands in docs/tutorial.md with no test: add them to COMMANDS: {missing}"
    assert not stale, f"COMMANDS entries no longer in docs/tutorial.md: {stale}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_tutorial_command(command: str, sandbox: Sandbox) -> None:
    COMMANDS[command](sandbox, command)


# ------------------------------------------------------------------------------------------ docs/lessons.md


def lesson_example(*expected: str) -> Callable[[Sandbox, str], None]:
    def run(box: Sandbox, command: str) -> None:
        p = box.start(command)
        for pattern in expected:
            p.expect(pattern)
        assert p.finish() == 0, p.output()

    return run


def demo_flags(box: Sandbox, command: str) -> None:
    """The window's demo shows nothing on a terminal to wait for: check its flags with its own parsers."""
    from inspector.app import build_parser
    from proxy.options import conditions_from_cli

    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "demo"
    cond = conditions_from_cli(args.latency, args.jitter, args.bandwidth, args.spike, args.preset, now_ns=0)
    assert cond.c2s.loss_pct > 0


LESSON_COMMANDS: dict[str, Callable[[Sandbox, str], None]] = {
    "sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py coalesce": lesson_example(
        re.escape('''[SERVER] one recv() returned b'{"x": 120, "y": 80}{"x": 124, "y": 80}''')),
    "sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py split": lesson_example(
        re.escape("[SERVER] one recv() returned b'Ping received! \\xf0\\x9f'"),
        re.escape("[SERVER] one recv() returned b'\\x93\\xa5'")),
    "sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py nagle": lesson_example(
        r"round trip 5: \d+\.\d ms"),  # how long depends on the OS's delayed ACK: not checked
    "sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py nagle --nodelay": lesson_example(
        r"c2s +8 B .*\"headbody\"", r"round trip 5: "),
    "sockscope run --port 5555 -- python docs/tutorial/hostile_pickle.py": lesson_example(
        r"did NOT unpickle them"),
    "sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py halfclose": lesson_example(
        r"client finished sending \(FIN passed on\)", r"server answered after my FIN: you sent 17 bytes"),
    'sockscope demo --preset "Mobile 4G"': demo_flags,
}


def test_every_lessons_command_is_tested() -> None:
    in_doc = doc_commands((ROOT / "docs" / "lessons.md").read_text(encoding="utf-8"))
    assert sorted(set(in_doc)) == sorted(LESSON_COMMANDS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", list(LESSON_COMMANDS))
def test_lessons_command(command: str, sandbox: Sandbox) -> None:
    LESSON_COMMANDS[command](sandbox, command)


def test_lessons_link_every_one_page_lesson() -> None:
    text = (ROOT / "docs" / "lessons.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs" / "lessons").glob("*.md")):
        assert f"(lessons/{page.name})" in text, f"docs/lessons.md does not link lessons/{page.name}"


# ------------------------------------------------------------------------------------------ the pictures


def test_every_picture_in_the_doc_is_taken() -> None:
    text = DOC.read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(tutorial/([^)]+\.png)\)", text)
    assert sorted(set(pictures)) == sorted(name for name, _ in STEPS.values())
    for name in pictures:
        assert (TUTORIAL / name).is_file(), f"run: python tools/tutorial_shots.py docs/tutorial ({name})"


@pytest.mark.timeout(60)
def test_tutorial_shots_smoke(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "tutorial_shots.py"), str(tmp_path), "--only", "1",
                        "--only", "3", "--free-ports"],
                       env=ENV, capture_output=True, text=True, encoding="utf-8", timeout=45)
    assert p.returncode == 0, p.stdout + p.stderr
    for n in (1, 3):
        png = tmp_path / STEPS[n][0]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"saved {STEPS[n][0]}" in p.stdout
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(STEPS[n][0] for n in (1, 3))

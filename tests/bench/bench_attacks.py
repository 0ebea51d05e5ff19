"""Attacks on the proxy engine's own surface, measured: what each costs the proxy and the game meanwhile.

Run by hand from the repository root on a quiet machine (not collected by pytest; Linux, it reads /proc):

    python tests/bench/bench_attacks.py [--quick]

Each attack runs against a fresh ``python -m proxy`` child process, with a paced game connection (a 64-byte
request/response every 2 ms, like a game's tick) doing round trips through the same proxy throughout. Prints one
JSON object, one entry per attack:

- ``control_flood``: unauthenticated control connections each sending the 48 MiB frame of 50 million empty msgpack
  arrays (issue 16 item 5);
- ``json_nesting``: game connections with ``--framing json`` each sending 1,000 nested brackets, plus one 16 MiB
  value of the costliest shape for the framer (``[[[0]]],`` items) (issue 16 item 4); also ``framer_ms``: the
  framer alone, in this process, per input and per MiB read;
- ``slow_terminal``: short connections (6 printed lines each) with the proxy's stdout a pipe nobody reads
  (issue 16 item 7);
- ``connections_2000``: 2,000 concurrent connections open, echo and close (the load test's scenario);
- ``decoded_rule``: with a rule on a decoded field (``json.type == "drop-me"``, so the relay's thread decodes every
  message), every file of the hostile corpus (tests/hostile/{pickle,msgpack,json}) sent length-prefixed (issue 16
  items 1 and 9 as they reach the relay);
- ``regex_rule``: with a rule ``bytes_regex`` ``(a+)+$``, messages of 31 and 60,000 ``a`` then ``!`` (item 2);
- ``decoders``: every hostile corpus file decoded in this process, summary-only (the table, rules) and in full
  (the detail pane), with the window's deadlines: the slowest, in ms (the target is under 100 ms).

For each: ``rss_mb_before``/``rss_mb_peak`` (VmRSS, VmHWM), the game's ``p50_ms``/``p99_ms``/``max_ms`` during the
attack (and ``baseline_p99_ms`` before it), and ``relay_cpu_ms_per_input``: the proxy process's CPU time during
the attack, less what the game alone cost in a baseline of the same length, per hostile input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from proxy.framing import make_framer  # noqa: E402

TOKEN = "bench-attacks"
GAME_INTERVAL = 0.002
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ peers


class Echo:
    """A one-thread echo server (selectors) for any number of connections; half-closes back on EOF. Writes never
    block: what a connection's peer has not taken yet waits in its own buffer (reading from that connection pauses
    past 4 MiB), so a big echo cannot delay the game's (a blocking ``sendall`` here once showed as 0.5-0.8 s game
    round trips during the 16 MiB JSON attack: the benchmark's own stall, not the proxy's)."""

    PAUSE_AT = 4 << 20

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self._out: dict[socket.socket, bytearray] = {}
        self._eof: set[socket.socket] = set()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _close(self, sock: socket.socket) -> None:
        self.sel.unregister(sock)
        self._out.pop(sock, None)
        self._eof.discard(sock)
        for op in (lambda s=sock: s.shutdown(socket.SHUT_WR), sock.close):
            try:
                op()
            except OSError:
                pass

    def _interest(self, sock: socket.socket) -> None:
        out = self._out[sock]
        ev = 0 if sock in self._eof or len(out) > self.PAUSE_AT else selectors.EVENT_READ
        if out:
            ev |= selectors.EVENT_WRITE
        if not ev:
            self._close(sock)
        else:
            self.sel.modify(sock, ev)

    def _run(self) -> None:
        while not self._stop:
            for key, events in self.sel.select(0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self.listener:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    self._out[conn] = bytearray()
                    self.sel.register(conn, selectors.EVENT_READ)
                    continue
                out = self._out[sock]
                if events & selectors.EVENT_WRITE and out:
                    try:
                        del out[:sock.send(out)]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._close(sock)
                        continue
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(1 << 20)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except OSError:
                        data = b""
                    if data:
                        out += data
                        try:
                            del out[:sock.send(out)]
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            self._close(sock)
                            continue
                    elif data is not None:
                        self._eof.add(sock)
                self._interest(sock)

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)


class Proxy:
    """``python -m proxy`` as a child; stdout read only up to its start-up lines unless ``drain``."""

    def __init__(self, target: int, *extra: str, drain: bool = True) -> None:
        env = {**os.environ, "SOCKSCOPE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--target",
                                      f"127.0.0.1:{target}", "--control", "127.0.0.1:0", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        assert self.proc.stdout is not None
        self.port = self.control_port = 0
        while not (self.port and self.control_port):
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("the proxy did not start")
            if "control on" in line:
                self.control_port = int(line.split()[3].rsplit(":", 1)[1])
            if "listening on" in line:
                self.port = int(line.split()[3].rsplit(":", 1)[1])
        if drain:
            out = self.proc.stdout

            def read_all() -> None:
                while os.read(out.fileno(), 65536):
                    pass

            threading.Thread(target=read_all, daemon=True).start()

    def status(self) -> dict[str, int]:
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
        return out

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


GAME = r"""
import json, socket, sys, threading, time
port, interval, as_json = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
out, errors, i, next_at = [], 0, 0, time.monotonic()
print("ready", flush=True)
while not stop.is_set():
    msg = (('{"seq": %d, "pad": "' % i).encode().ljust(61, b".") + b'"}\n' if as_json
           else ("%08d" % i).encode().ljust(64, b"."))
    t = time.monotonic()
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                raise EOFError
            got += chunk
    except (OSError, EOFError):
        errors += 1
        break
    out.append((t, time.monotonic() - t))
    errors += got != msg
    i += 1
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
print(json.dumps({"rtts": out, "errors": errors}), flush=True)
"""


class Game:
    """A paced game connection in a process of its own (so this process's threads cannot slow it down): a
    numbered 64-byte request every ``GAME_INTERVAL`` s, its echo checked; round trips are stamped with
    ``time.monotonic()``, the same clock in every process, so each window of the run gets its own figures."""

    def __init__(self, port: int, as_json: bool = False) -> None:
        args = [sys.executable, "-c", GAME, str(port), str(GAME_INTERVAL), "1" if as_json else "0"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.windows: list[tuple[float, float]] = []
        self.errors = 0

    def window(self, fn: Callable[[], int]) -> tuple[int, float, int]:
        """Run ``fn()`` (returns its number of hostile inputs): the window's index, its seconds, the count."""
        t = time.monotonic()
        n = fn()
        self.windows.append((t, time.monotonic()))
        return len(self.windows) - 1, self.windows[-1][1] - t, n

    def stop(self) -> list[dict[str, float]]:
        """Stop the game; the figures of each window."""
        out, _ = self.proc.communicate("", timeout=30)
        result = json.loads(out.strip().splitlines()[-1])
        self.errors = result["errors"]
        return [_pcts([rtt for at, rtt in result["rtts"] if a <= at <= b]) for a, b in self.windows]


def _pcts(rtts: list[float]) -> dict[str, float]:
    if not rtts:
        return {"round_trips": 0}
    r = sorted(rtts)
    return {"round_trips": len(r), "p50_ms": round(r[len(r) // 2] * 1e3, 3),
            "p99_ms": round(r[min(len(r) - 1, int(len(r) * 0.99))] * 1e3, 3), "max_ms": round(r[-1] * 1e3, 3)}


# ------------------------------------------------------------------------------------------ attacks


def control_flood(p: Proxy, n: int) -> int:
    count = 50_000_000
    chunk = b"\x90" * (1 << 20)
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", p.control_port), timeout=60) as s:
            try:
                s.sendall((5 + count).to_bytes(4, "big") + b"\xdd" + count.to_bytes(4, "big"))
                sent = 0
                while sent < count:
                    s.sendall(chunk[:count - sent])
                    sent += len(chunk)
                while s.recv(65536):
                    pass
            except OSError:
                pass
    return n


BIG_JSON = 16 << 20
WORST_JSON_ITEM = b"[[[0]]],"
"""The costliest shape per byte for the JSON framer (measured: items three containers deep)."""


def _big_json(size: int) -> bytes:
    return b"[" + WORST_JSON_ITEM * ((size - 3) // len(WORST_JSON_ITEM)) + b"0]"


def json_nesting(p: Proxy, n: int) -> int:
    nested = b"[" * 1000 + b"]" * 1000 + b"\n"
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", p.port), timeout=60) as s:
            s.sendall(nested)
            got = b""
            while len(got) < len(nested):
                got += s.recv(65536)
            assert got == nested
    big = _big_json(BIG_JSON)
    with socket.create_connection(("127.0.0.1", p.port), timeout=120) as s:
        threading.Thread(target=s.sendall, args=(big,), daemon=True).start()
        got_n = 0
        while got_n < len(big):
            got_n += len(s.recv(1 << 20))
    return n + 1


def slow_terminal(p: Proxy, n: int) -> int:
    msg = b"x" * 100
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", p.port), timeout=30) as s:
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(65536)
    return n


def connections(p: Proxy, n: int) -> int:
    async def run() -> None:
        opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", p.port) for _ in range(n)))

        async def one(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"hello\n")
            await r.readexactly(6)
            w.write_eof()
            await r.read()
            w.close()
            await w.wait_closed()

        await asyncio.gather(*(one(r, w) for r, w in opened))

    asyncio.run(run())
    return n


HOSTILE = ROOT / "tests" / "hostile"


def _corpus(*kinds: str) -> list[Path]:
    return [f for kind in kinds for f in sorted((HOSTILE / kind).iterdir()) if f.suffix != ".md"]


def _set_rules(p: Proxy, rules: list[dict[str, Any]]) -> None:
    from proxy.control.client import ControlClient

    with ControlClient("127.0.0.1", p.control_port, TOKEN) as c:
        c.call("set_rules", rules=rules)


def _send_all(p: Proxy, frames: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", p.port), timeout=60) as s:
        for frame in frames:
            s.sendall(frame)
            got = 0
            while got < len(frame):
                got += len(s.recv(1 << 20))


def decoded_rule(p: Proxy, n: int) -> int:
    bodies = [f.read_bytes() for f in _corpus("pickle", "msgpack", "json")]
    frames = [len(b).to_bytes(4, "big") + b for b in bodies]
    for _ in range(n):
        _send_all(p, frames)
    return n * len(frames)


def regex_rule(p: Proxy, n: int) -> int:
    frames = [b"a" * 31 + b"!", b"a" * 60_000 + b"!"]
    frames = [len(b).to_bytes(4, "big") + b for b in frames]
    for _ in range(n):
        _send_all(p, frames)
    return n * len(frames)


SETUP: dict[str, list[dict[str, Any]]] = {
    "decoded_rule": [{"action": "drop", "direction": "c2s", "filter": 'json.type == "drop-me"'}],
    "regex_rule": [{"action": "drop", "direction": "c2s", "bytes_regex": "(a+)+$"}],
}
"""Rules an attack runs under, set before the game's measured windows: setting a rule on a decoded field costs
the relay a one-off ~40 ms (imports, the decoders' first calls) at the user's action, not per hostile input."""


def decoders() -> dict[str, Any]:
    """Every corpus file, decoded as the window does (summary row, then detail pane, each with its deadline) and
    with no deadline (dump's default budget is 1 s): the slowest file and its time."""
    from inspector.decode import DecodeContext, default_registry

    reg = default_registry()
    worst: dict[str, tuple[float, str]] = {}
    files = _corpus("pickle", "msgpack", "json", "struct", "text")
    for f in files:
        data = f.read_bytes()
        # A layout file is a struct format; it decodes 64 bytes and 1 MB, as the corpus's tests do.
        layout = data.decode() if f.suffix == ".layout" else None
        for message in ([bytes(64), bytes(2000) * 500] if layout else [data]):
            for label, detail, budget_ms in (("summary_50ms", False, 50), ("detail_250ms", True, 250),
                                             ("summary_no_deadline", False, None),
                                             ("detail_no_deadline", True, None)):
                t = time.perf_counter()
                deadline = None if budget_ms is None else time.monotonic_ns() + budget_ms * 1_000_000
                reg.decode(message, DecodeContext(detail=detail, deadline_ns=deadline, struct_format=layout,
                                                  decode_as="struct" if layout else None))
                ms = (time.perf_counter() - t) * 1e3
                if ms > worst.get(label, (0.0, ""))[0]:
                    worst[label] = (ms, f.relative_to(HOSTILE).as_posix())
    return {"files": len(files), **{k: {"ms": round(v[0], 2), "file": v[1]} for k, v in worst.items()}}


def framer_ms(nested_inputs: int) -> dict[str, float]:
    """The JSON framer alone, in this process, fed 1 MiB reads (the relay's read size): ms per hostile input,
    and per MiB of the costliest shape."""
    out = {}
    for name, data in (("json_nested_1000", b"[" * 1000 + b"]" * 1000 + b"\n"),
                       ("json_worst_shape_per_mib", _big_json(1 << 20)),
                       ("json_empty_arrays_per_mib", b"[" + b"[]," * ((1 << 20) // 3 - 2) + b"[]]")):
        reps = nested_inputs if len(data) < 1 << 20 else 3
        t = time.perf_counter()
        for _ in range(reps):
            f = make_framer("json")
            for i in range(0, len(data), 1 << 20):
                f.feed(data[i:i + (1 << 20)])
        out[name] = round((time.perf_counter() - t) * 1e3 / reps, 3)
    return out


def _idle(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def measure(attack: Callable[[Proxy, int], int], n: int, *extra: str, drain: bool = True,
            settle: float = 2.0) -> dict[str, Any]:
    echo = Echo()
    p = Proxy(echo.port, *extra, drain=drain)
    try:
        game = Game(p.port, as_json="json" in extra)
        rules = SETUP.get(attack.__name__)
        if rules:
            _set_rules(p, rules)
        time.sleep(0.5)  # warm up
        before = p.status()
        cpu0 = p.cpu_s()
        game.window(lambda: _idle(settle))
        game_cpu_per_s = (p.cpu_s() - cpu0) / settle
        cpu1 = p.cpu_s()
        _, dt, inputs = game.window(lambda: attack(p, n))
        cpu = p.cpu_s() - cpu1 - game_cpu_per_s * dt
        after = p.status()
        baseline, during = game.stop()
        return {"inputs": inputs, "seconds": round(dt, 3), "rss_mb_before": round(before["VmRSS"] / 1024, 1),
                "rss_mb_peak": round(after["VmHWM"] / 1024, 1), "baseline_p99_ms": baseline.get("p99_ms"),
                **during, "game_errors": game.errors,
                "relay_cpu_ms_per_input": round(max(0.0, cpu) * 1e3 / max(1, inputs), 3)}
    finally:
        p.stop()
        echo.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few inputs per attack (checks the script runs)")
    args = ap.parse_args()
    q = args.quick
    global BIG_JSON
    if q:
        BIG_JSON = 1 << 20
    results = {
        "control_flood": measure(control_flood, 10 if q else 200, "--quiet"),
        "json_nesting": {**measure(json_nesting, 20 if q else 500, "--quiet", "--framing", "json"),
                         "framer_ms": framer_ms(20 if q else 500)},
        "slow_terminal": measure(slow_terminal, 500 if q else 5000, drain=False),
        "connections_2000": measure(connections, 200 if q else 2000, drain=False),
        "decoded_rule": measure(decoded_rule, 2 if q else 20, "--quiet", "--framing", "len32"),
        "regex_rule": measure(regex_rule, 20 if q else 500, "--quiet", "--framing", "len32"),
        "decoders": decoders(),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

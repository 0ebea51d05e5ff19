"""By hand: ``python tests/bench/bench_enet.py [--ticks 600] [--rounds 5]`` prints JSON: how fast ENet datagrams
decode on one core, and that the UDP relay's small-datagram figures do not change with the ENet decoder installed.

Traffic (recorded, not synthesised): a pyenet client and server through the in-process engine play a game-like
loop: each tick the client sends its position unreliably on channel 1 (JSON) and its input as msgpack unsequenced
on channel 2, every 10th tick a reliable chat/event on channel 0; the server answers with a reliable state snapshot
every 3rd tick and an unreliable one otherwise, and a 6 KB reliable "map chunk" (fragmented) every 100 ticks; acks,
pings and the handshake come with it. A second mix carries Godot-shaped payloads (SceneMultiplayer remote calls with
Variant arguments, syncs), as a Godot 4 game sends them.

Measures (best of ``--rounds``, one core, this process):

- ``enet_layer_per_s``: the ENet decoder's own work, as the table, filters and rules get it (``detail=False``):
  header, every command's fields, channel and reliability, fragments looked up in the flow book, the summary;
  payloads shown by size (their decoding is the JSON, msgpack ... decoders' cost, benchmarked by
  bench_decode.py) -- target >= 50,000/s;
- ``summary_per_s``: datagrams decoded as the window does (auto, ``detail=False``, payloads decoded by the usual
  decoders), after a real MessageStore fed them in order (so fragments are reassembled) -- target >= 50,000/s for
  both mixes;
- ``detail_per_s``: full views (field tree, text), as the detail pane does;
- ``parse_per_s``: parsing alone (header and commands);
- ``relay``: p50 round trip of 64-byte datagrams through ``python -m proxy --udp-only`` run from this worktree and
  from the main checkout (``--main``, default /work/main), interleaved, and whether the proxy process imported any
  decoder (it must not: nothing ENet runs on the relay unless a rule's filter needs it).
Run it with nothing else running. Must not import: Qt. Thread: the main thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import enet  # noqa: E402  (pyenet, in the test extra)
import msgpack  # noqa: E402

from inspector.decode import DecodeContext, DecoderRegistry, builtin_decoders  # noqa: E402
from inspector.decode._enet import EnetDecoder, best_parse  # noqa: E402
from inspector.store import MessageStore  # noqa: E402
from proxy.model import ConnectionOpened, Message  # noqa: E402
from proxy.runner import ProxyThread  # noqa: E402
from proxy.server import ProxyConfig  # noqa: E402
from tests import enet_bytes as gd  # noqa: E402


def record(ticks: int, godot: bool) -> list[Any]:
    """Records (ConnectionOpened, Message ...) of one pyenet game through the engine."""
    records: list[Any] = []
    channels = 255 if godot else 4  # a Godot 4 client asks for 255 channels and sends its peer id
    server = enet.Host(enet.Address(b"127.0.0.1", 0), 4, channels, 0, 0)
    proxy = ProxyThread(ProxyConfig(listen_port=0, target_port=server.address.port, udp=True, tcp=False),
                        (records.append,)).start()
    client = enet.Host(None, 1, channels, 0, 0)
    peer = client.connect(enet.Address(b"127.0.0.1", proxy.port), channels, 1234567 if godot else 0)
    state = {"connected": False, "server_peer": None}

    def service() -> None:
        for name, host in (("server", server), ("client", client)):
            ev = host.service(1)
            while ev is not None and ev.type != enet.EVENT_TYPE_NONE:
                if ev.type == enet.EVENT_TYPE_CONNECT:
                    state["connected" if name == "client" else "server_peer"] = True if name == "client" else ev.peer
                ev = host.check_events()

    while not (state["connected"] and state["server_peer"] is not None):
        service()
    sp = state["server_peer"]
    for t in range(ticks):
        x, y = t * 0.5, 100 - t * 0.25
        if godot:
            peer.send(1, enet.Packet(gd.rpc(3, 1, [gd.Vec2((x, y)), t]), 0))
            peer.send(2, enet.Packet(gd.rpc(3, 2, [{"jump": t % 7 == 0, "fire": False}]),
                                     enet.PACKET_FLAG_UNSEQUENCED))
            if t % 10 == 0:
                peer.send(0, enet.Packet(gd.rpc(5, 0, ["gg", t]), enet.PACKET_FLAG_RELIABLE))
            snap = gd.sync(t, [(0x80000001, [gd.Vec2((x, y)), 100 - t % 100]), (0x80000002, [gd.Vec2((y, x)), 3])])
        else:
            peer.send(1, enet.Packet(json.dumps({"t": "pos", "tick": t, "x": x, "y": y}).encode(), 0))
            peer.send(2, enet.Packet(msgpack.packb({"in": "move", "dx": 1, "dy": -1, "tick": t}),
                                     enet.PACKET_FLAG_UNSEQUENCED))
            if t % 10 == 0:
                peer.send(0, enet.Packet(json.dumps({"t": "chat", "text": f"gg {t}"}).encode(),
                                         enet.PACKET_FLAG_RELIABLE))
            snap = json.dumps({"t": "state", "tick": t, "players": [{"id": i, "x": x + i, "y": y} for i in range(4)]
                               }).encode()
        sp.send(0 if t % 3 == 0 else 1, enet.Packet(snap, enet.PACKET_FLAG_RELIABLE if t % 3 == 0 else 0))
        if t % 100 == 50:
            sp.send(3, enet.Packet(bytes(range(256)) * 24, enet.PACKET_FLAG_RELIABLE))
        client.flush()
        server.flush()
        service()
    for _ in range(50):
        service()
    proxy.stop()
    return [r for r in records if isinstance(r, ConnectionOpened | Message)]


def rates(records: list[Any], rounds: int) -> dict[str, Any]:
    store = MessageStore()
    store.apply(records)  # feeds the ENet book in capture order, as the window does
    msgs = [store.message(r) for r in range(len(store))]
    reg = DecoderRegistry(builtin_decoders())
    views = [reg.decode_message(m, detail=False) for m in msgs]
    out: dict[str, Any] = {"datagrams": len(msgs), "mean_bytes": round(sum(len(m.data) for m in msgs) / len(msgs), 1),
                           "decoded_as_enet": sum(v.decoder == "enet" for v in views),
                           "commands": sum(len(v.values) for v in views),
                           "payload_decoders": sorted({c.get("payload_decoder") for v in views for c in v.values
                                                       if c.get("payload_decoder")})}
    for label, detail in (("summary_per_s", False), ("detail_per_s", True)):
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for m in msgs:
                reg.decode_message(m, detail=detail)
            best = min(best, time.perf_counter() - t)
        out[label] = round(len(msgs) / best)
    layer = DecoderRegistry([d for d in builtin_decoders() if d.name != "enet"])
    layer.register(EnetDecoder(decode_payloads=False))
    ctxs = [layer.context_for(m.conn_id, m.direction, detail=False) for m in msgs]
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for m, c in zip(msgs, ctxs, strict=True):
            layer.decode_with("enet", m.data, c)
        best = min(best, time.perf_counter() - t)
    out["enet_layer_per_s"] = round(len(msgs) / best)
    best = float("inf")
    datas = [m.data for m in msgs]
    for _ in range(rounds):
        t = time.perf_counter()
        for d in datas:
            best_parse(d)
        best = min(best, time.perf_counter() - t)
    out["parse_per_s"] = round(len(msgs) / best)
    ctx = DecodeContext(detail=False)
    t = time.perf_counter()
    for d in datas[:200]:
        reg.confidences(d, ctx)
    out["auto_ranking_us"] = round((time.perf_counter() - t) / min(200, len(datas)) * 1e6, 1)
    return out


PROBE = r"""
import socket, sys, time
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); echo.bind(("127.0.0.1", 0))
p = ProxyThread(ProxyConfig(listen_port=0, target_port=echo.getsockname()[1], udp=True, tcp=False)).start()
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(200):
    c.sendto(b"\x80\x00\x01\x02\x86\x00\x00\x01\x00\x02hi", ("127.0.0.1", p.port))
    echo.recvfrom(100)
p.stop()
print(sorted(m for m in sys.modules if m.startswith("inspector")))
"""


def relay(main: Path, rounds: int, n: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    from bench_udp import ECHO, free_port, rtt, start, stop

    echo = start([sys.executable, "-c", ECHO], None)
    assert echo.stdout is not None
    target = int(echo.stdout.readline())
    p50: dict[str, list[float]] = {"worktree": [], "main": []}
    try:
        for _ in range(rounds):
            for label, root in (("worktree", ROOT), ("main", main)):
                port = free_port()
                proc = start([sys.executable, "-m", "proxy", "--udp-only", "--listen", f"127.0.0.1:{port}",
                              "--target", f"127.0.0.1:{target}", "--quiet"], "UDP on",
                             {**os.environ, "PYTHONPATH": str(root)})
                try:
                    p50[label].append(rtt(port, n)["p50_us"])
                finally:
                    stop(proc)
    finally:
        stop(echo)
    imported = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    w, m = statistics.median(p50["worktree"]), statistics.median(p50["main"])
    return {"rtt_p50_us_worktree": w, "rtt_p50_us_main": m, "ratio": round(w / m, 3),
            "inspector_modules_in_the_engine": imported}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ticks", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=3000, help="ping-pongs per relay measurement")
    ap.add_argument("--main", default="/work/main", help="a checkout without the ENet decoder, for the relay check")
    ap.add_argument("--no-relay", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"python": sys.version.split()[0], "ticks": args.ticks}
    out["pyenet_game"] = rates(record(args.ticks, godot=False), args.rounds)
    out["godot_shaped"] = rates(record(args.ticks, godot=True), args.rounds)
    out["target_enet_layer_per_s"] = 50_000
    out["target_summary_per_s"] = 50_000
    if not args.no_relay and Path(args.main).is_dir():
        out["relay"] = relay(Path(args.main), args.rounds, args.n)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The example game's client: sends your input, draws what the server says, and shows how games hide lag.

    python docs/examples/game/client.py [--port 5555] [--format msgpack|json|pickle]
        [--predict] [--reconcile] [--interpolate]
    arrow keys / WASD move your square;  P, R and I switch the three techniques below on and off

The server owns the truth (server.py): it applies your inputs 30 times a second and tells you where you are.
Under lag (sockscope's --latency 100 adds 100 ms each way) that answer is a round trip old when it arrives.
Three techniques, named as in Gabriel Gambetta's "Fast-Paced Multiplayer" articles
(https://www.gabrielgambetta.com/client-server-game-architecture.html), hide that:

* Client-side prediction (P). Without it your square moves only when the server's answer comes back: a round
  trip after you press the key. With it, the client applies each input at once with the server's own rule
  (protocol.move) and shows the result: the movement rule is deterministic, so the guess is what the server
  will say.
* Server reconciliation (R). The server's answers still arrive a round trip late: the position in a state is
  where you were *before* the inputs still in flight. Prediction alone jumps back to it on every state (and
  then forward again: "rubber-banding"). With reconciliation the client keeps the inputs the server has not
  acknowledged yet, and on each state starts from the server's position and replays them on top.
* Entity interpolation (I). Other players' positions arrive 30 times a second. Drawing the latest one makes
  them jump from one to the next; drawing them INTERP_DELAY in the past, sliding between the two positions
  around that moment, moves them smoothly, at the cost of showing them slightly late.

The HUD (top of the window) shows which techniques are on, the measured round trip (from sending an input to the
first state that acknowledges it), the inputs not yet acknowledged, and the last correction: how far the
position the client showed after input N was from where the server put it after input N.

--bot plays by itself (a square, the same every time) and prints a JSON summary of what it measured when it
stops (--duration); --headless has no window (SDL's dummy video driver): for tests, and for watching the traffic
in sockscope. --stats FILE writes one JSON line per input with its input-to-display delay.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import select
import socket
import statistics
import time
from dataclasses import dataclass, field

import protocol

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before importing pygame: no banner on stdout
import pygame

# Valve's rule of thumb: draw others two snapshots in the past, so one late or lost snapshot never leaves the
# client with nothing to slide towards (Source Multiplayer Networking: 100 ms at 20 snapshots a second).
INTERP_DELAY = 2 / protocol.TICK_HZ
HUD_HEIGHT, LEGEND_HEIGHT = 56, 28  # pixels above and below the arena
BOT_LEG = 45  # inputs the bot moves in one direction before turning
KEYS = {pygame.K_LEFT: (-1, 0), pygame.K_a: (-1, 0), pygame.K_RIGHT: (1, 0), pygame.K_d: (1, 0),
        pygame.K_UP: (0, -1), pygame.K_w: (0, -1), pygame.K_DOWN: (0, 1), pygame.K_s: (0, 1)}
GREEN, BLUE, RED, GREY, WHITE = (90, 200, 120), (110, 150, 230), (220, 90, 90), (140, 140, 150), (230, 230, 230)


@dataclass
class Techniques:
    """The three switches (keys P, R, I)."""

    predict: bool
    reconcile: bool
    interpolate: bool


@dataclass
class Input:
    """One input sent, kept until the server acknowledges it (reconciliation replays these)."""

    seq: int
    dx: int
    dy: int


@dataclass
class Me:
    """What this client knows, and guesses, about its own player."""

    id: int = 0
    known: bool = False  # has a state told us where we start? Until then we cannot predict anything
    server: tuple[int, int] = (0, 0)  # where the server last said we are: after our input number `ack`
    ack: int = 0  # the last of our inputs the server has applied
    seq: int = 0  # the last input we sent
    shown: tuple[int, int] = (0, 0)  # where we draw ourselves
    pending: list[Input] = field(default_factory=list)  # sent, not yet acknowledged: what reconciliation replays
    predicted: dict[int, tuple[int, int]] = field(default_factory=dict)  # seq -> where we showed ourselves after it
    sent_at: dict[int, float] = field(default_factory=dict)  # seq -> when we sent it


@dataclass
class Measures:
    """What the HUD shows and the bot's summary reports."""

    round_trips: collections.deque = field(default_factory=lambda: collections.deque(maxlen=30))  # ms
    corrections: list[float] = field(default_factory=list)  # px, one per acknowledged input we predicted for
    unacked: list[int] = field(default_factory=list)  # inputs in flight, once per frame
    delays: list[float] = field(default_factory=list)  # input-to-display, ms
    other_frames: int = 0  # frames drawn while another player was moving...
    in_between: int = 0  # ...in which it was drawn between two positions the server sent (interpolated)
    starved: int = 0  # ...in which the interpolation had no newer position to slide towards


# ------------------------------------------------------------------------------------------ my own player


def send_input(sock: socket.socket, fmt: str, me: Me, tech: Techniques, dx: int, dy: int, now: float) -> None:
    """Send one input. With prediction, apply it here too, at once, with the server's own rule."""
    me.seq += 1
    if tech.predict:
        me.shown = protocol.move(*me.shown, dx, dy)
    # x, y: where we show ourselves after this input. The server ignores them; they are there so that you (and
    # sockscope) can compare the client's guess with the server's answer for the same input.
    protocol.send(sock, {"t": "input", "seq": me.seq, "dx": dx, "dy": dy, "x": me.shown[0], "y": me.shown[1]}, fmt)
    me.pending.append(Input(me.seq, dx, dy))
    me.predicted[me.seq] = me.shown
    me.sent_at[me.seq] = now


def on_my_state(me: Me, tech: Techniques, measures: Measures, msg: dict, now: float) -> None:
    """The server says where we are after our input `ack`: measure how good our guess was, then believe it."""
    ack, server = msg["ack"], (msg["x"], msg["y"])
    if ack in me.predicted:  # the first state that includes input `ack`
        measures.corrections.append(math.dist(me.predicted[ack], server))
        measures.round_trips.append((now - me.sent_at[ack]) * 1000)
    for seq in [s for s in me.predicted if s <= ack]:
        del me.predicted[seq], me.sent_at[seq]
    me.server, me.ack, me.known = server, ack, True
    me.pending = [i for i in me.pending if i.seq > ack]  # the server has applied the rest: they are in `server`
    me.shown = where_to_show_me(me, tech)


def where_to_show_me(me: Me, tech: Techniques) -> tuple[int, int]:
    """Where to draw ourselves now that a state has arrived: the heart of the three switches P and R."""
    if not tech.predict:
        return me.server  # no prediction: only ever what the server said, a round trip late
    if not tech.reconcile:
        # Prediction alone: accept the server's position as it is. It does not include the inputs still in
        # flight, so the square is pulled back to where the server was a round trip ago, and only the inputs
        # sent from now on move it forward again.
        return me.server
    # Server reconciliation: the server's position is the truth as of input `ack`; the inputs after it are on
    # their way to the server, which will apply them exactly as we do. Replay them on top.
    x, y = me.server
    for i in me.pending:
        x, y = protocol.move(x, y, i.dx, i.dy)
    return x, y


# ------------------------------------------------------------------------------------------ other players


def remember_others(others: dict[int, collections.deque], msg: dict, my_id: int, now: float) -> None:
    """Keep each other player's recent positions with the time they arrived (what interpolation slides along)."""
    for pid, x, y, _ in msg["players"]:
        if pid != my_id:
            others.setdefault(pid, collections.deque(maxlen=16)).append((now, x, y))
    seen = {p[0] for p in msg["players"]}
    for pid in [p for p in others if p not in seen]:
        del others[pid]  # that player left


def interpolate(history: collections.deque, at: float) -> tuple[float, float, bool]:
    """Where a player was at time `at`, sliding between the two received positions around it.
    The bool says `at` is after the newest position (starved: nothing to slide towards, so it stops there)."""
    older = history[0]
    for newer in history:
        if newer[0] >= at:
            if newer is older:
                break
            f = (at - older[0]) / (newer[0] - older[0])
            return older[1] + (newer[1] - older[1]) * f, older[2] + (newer[2] - older[2]) * f, False
        older = newer
    return older[1], older[2], at > older[0]


def other_position(history: collections.deque, tech: Techniques, measures: Measures,
                   now: float) -> tuple[float, float]:
    """Where to draw another player: its newest position, or (interpolation) INTERP_DELAY in the past."""
    if tech.interpolate:
        x, y, starved = interpolate(history, now - INTERP_DELAY)
    else:
        (_, x, y), starved = history[-1], False
    if len(history) >= 2 and history[-1][1:] != history[-2][1:]:  # it is moving: count how we draw it
        measures.other_frames += 1
        measures.in_between += (x, y) not in {h[1:] for h in history}
        measures.starved += starved
    return x, y


# ------------------------------------------------------------------------------------------ network, keys, screen


def read_network(sock: socket.socket, reader: protocol.FrameReader, me: Me, tech: Techniques, measures: Measures,
                 others: dict[int, collections.deque], now: float) -> bool:
    """Handle whatever has arrived, without waiting (select with timeout 0 answers "anything?").
    False when the server has gone."""
    while select.select([sock], [], [], 0)[0]:
        data = sock.recv(65536)
        if not data:
            print("[CLIENT] the server closed the connection", flush=True)
            return False
        for msg in reader.feed(data):
            if msg["t"] == "welcome":
                me.id = msg["id"]
                pygame.display.set_caption(f"sockscope example game: player {me.id}")
            elif msg["t"] == "state":
                on_my_state(me, tech, measures, msg, now)
                remember_others(others, msg, me.id, now)
    return True


def handle_keys(tech: Techniques) -> bool:
    """P, R, I switch the techniques; False when the window is closed or Escape pressed."""
    for event in pygame.event.get():
        if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
            return False
        if event.type == pygame.KEYDOWN and event.key == pygame.K_p:
            tech.predict = not tech.predict
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
            tech.reconcile = not tech.reconcile
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_i:
            tech.interpolate = not tech.interpolate
    return True


def bot_input(me: Me) -> tuple[int, int]:
    """Walk in a square, BOT_LEG inputs a side, each bot starting at a different corner of it."""
    return [(1, 0), (0, 1), (-1, 0), (0, -1)][(me.seq // BOT_LEG + me.id) % 4]


def keyboard_input() -> tuple[int, int]:
    pressed = pygame.key.get_pressed()
    dx = dy = 0
    for key, (kx, ky) in KEYS.items():
        if pressed[key]:
            dx, dy = dx + kx, dy + ky
    return max(-1, min(1, dx)), max(-1, min(1, dy))


def hud_lines(me: Me, tech: Techniques, measures: Measures) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """The HUD's lines, each a list of (text, colour) pieces."""
    def switch(key: str, name: str, on: bool, note: str = "") -> tuple[str, tuple[int, int, int]]:
        return f"[{key}] {name} {'ON' if on else 'off'}{note}   ", GREEN if on else GREY

    rtt = f"{statistics.median(measures.round_trips):.0f} ms" if measures.round_trips else "-"
    last = f"{measures.corrections[-1]:.0f} px" if measures.corrections else "-"
    return [[switch("P", "prediction", tech.predict),
             switch("R", "reconciliation", tech.reconcile, "" if tech.predict or not tech.reconcile else " (needs P)"),
             switch("I", "interpolation", tech.interpolate)],
            [(f"round trip {rtt}   unacknowledged inputs {len(me.pending)}   last correction {last}", WHITE)]]


def draw(screen: pygame.Surface, font: pygame.font.Font, me: Me, others: dict[int, collections.deque],
         tech: Techniques, measures: Measures, now: float) -> None:
    """The HUD on top, the arena (protocol.WIDTH x HEIGHT) below it, a legend at the bottom."""
    screen.fill((0, 0, 0))
    for row, pieces in enumerate(hud_lines(me, tech, measures)):
        x = 8
        for text, colour in pieces:
            image = font.render(text, True, colour)
            screen.blit(image, (x, 8 + 22 * row))
            x += image.get_width()
    arena = screen.subsurface((0, HUD_HEIGHT, protocol.WIDTH, protocol.HEIGHT))  # draws in game coordinates
    arena.fill((24, 26, 33))
    size = protocol.SIZE
    for history in others.values():
        x, y = other_position(history, tech, measures, now)
        if tech.interpolate:  # outline: the newest position received, ahead of where we draw it
            pygame.draw.rect(arena, RED, (*history[-1][1:], size, size), 1)
        pygame.draw.rect(arena, RED, (round(x), round(y), size, size))
    if me.known:
        pygame.draw.rect(arena, BLUE, (*me.server, size, size), 2)  # outline: where the server last said I am
        pygame.draw.rect(arena, GREEN, (*me.shown, size, size))
    legend = "you: green (blue outline: where the server last said you are)   others: red"
    screen.blit(font.render(legend, True, GREY), (8, HUD_HEIGHT + protocol.HEIGHT + 6))
    pygame.display.flip()


# ------------------------------------------------------------------------------------------ the game loop


def summary(me: Me, tech: Techniques, measures: Measures, seconds: float) -> dict:
    """What the bot measured, as printed on its last line."""
    c, u, r, d = measures.corrections, measures.unacked, list(measures.round_trips), measures.delays
    frames = measures.other_frames or 1
    return {"player": me.id, "predict": tech.predict, "reconcile": tech.reconcile, "interpolate": tech.interpolate,
            "seconds": round(seconds, 2), "inputs": me.seq,
            "corrections_px": {"count": len(c), "max": max(c, default=0), "mean": round(statistics.fmean(c), 2)
                               if c else 0},
            "unacked_inputs": {"max": max(u, default=0), "mean": round(statistics.fmean(u), 2) if u else 0},
            "round_trip_ms": {"median": round(statistics.median(r), 1) if r else None,
                              "max": round(max(r), 1) if r else None},
            "input_to_display_ms": {"median": round(statistics.median(d), 1) if d else None},
            "others": {"frames": measures.other_frames, "in_between_share": round(measures.in_between / frames, 3),
                       "starved_share": round(measures.starved / frames, 3)}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="the example game's client")
    parser.add_argument("--host", default=protocol.HOST)
    parser.add_argument("--port", type=int, default=protocol.PORT)
    parser.add_argument("--format", choices=protocol.FORMATS, default="msgpack")
    on_off = argparse.BooleanOptionalAction
    parser.add_argument("--predict", action=on_off, default=False,
                        help="start with client-side prediction on (key P)")
    parser.add_argument("--reconcile", action=on_off, default=False,
                        help="start with server reconciliation on (key R; it needs prediction)")
    parser.add_argument("--interpolate", "--interp", action=on_off, default=False,
                        help="start with interpolation of the other players on (key I)")
    parser.add_argument("--bot", action="store_true",
                        help="move by itself in a square; print a JSON summary of what it measured when it stops")
    parser.add_argument("--headless", action="store_true", help="no window (SDL's dummy video driver)")
    parser.add_argument("--duration", type=float, default=0, help="quit after this many seconds (0: never)")
    parser.add_argument("--stats", metavar="FILE", help="write each input's input-to-display delay as JSON lines")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    pygame.display.init()
    pygame.font.init()  # not pygame.init(): no sound needed, and audio start-up can be slow or fail headless
    screen = pygame.display.set_mode((protocol.WIDTH, HUD_HEIGHT + protocol.HEIGHT + LEGEND_HEIGHT))
    pygame.display.set_caption("sockscope example game")
    font = pygame.font.Font(None, 22)

    sock = socket.create_connection((args.host, args.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # send each input now, do not batch them
    reader = protocol.FrameReader(args.format)
    stats_file = open(args.stats, "w", encoding="utf-8") if args.stats else None

    tech = Techniques(args.predict, args.reconcile, args.interpolate)
    me, measures = Me(), Measures()
    others: dict[int, collections.deque] = {}  # player id -> recent (time received, x, y)
    unshown: collections.deque = collections.deque()  # (seq, time sent) of inputs not yet visible on screen
    clock = pygame.time.Clock()
    start = last_report = time.perf_counter()
    running = True
    while running:
        now = time.perf_counter()
        if args.duration and now - start >= args.duration:
            break
        running = handle_keys(tech) and read_network(sock, reader, me, tech, measures, others, now)

        # Input: only once the server has told us where we are (a prediction needs a starting point).
        dx, dy = bot_input(me) if args.bot else keyboard_input()
        if me.known and (dx or dy):
            send_input(sock, args.format, me, tech, dx, dy, now)
            unshown.append((me.seq, now))
        measures.unacked.append(len(me.pending))

        draw(screen, font, me, others, tech, measures, now)

        # Input-to-display delay: every input the drawn position now includes has just become visible. With
        # prediction that is the newest input; without, only those the server has acknowledged.
        shown, shown_seq = time.perf_counter(), me.seq if tech.predict else me.ack
        while unshown and unshown[0][0] <= shown_seq:
            seq, sent = unshown.popleft()
            measures.delays.append((shown - sent) * 1000)
            if stats_file:
                stats_file.write(json.dumps({"t": round(shown - start, 4), "seq": seq,
                                             "delay_ms": round(measures.delays[-1], 2), "predict": tech.predict,
                                             "interp": tech.interpolate}) + "\n")
        if shown - last_report >= 2 and me.known:  # the HUD on the terminal too, every two seconds
            hud = "   ".join("".join(text for text, _ in line).strip() for line in hud_lines(me, tech, measures))
            recent = statistics.median(measures.delays[-120:]) if measures.delays else 0.0
            print(f"[CLIENT] {hud}   input-to-display {recent:.0f} ms", flush=True)
            last_report = shown
        clock.tick(protocol.FPS)  # wait for the next frame: 60 frames a second

    if stats_file:
        stats_file.close()
    sock.close()
    pygame.quit()
    if args.bot:
        print(json.dumps(summary(me, tech, measures, time.perf_counter() - start)), flush=True)


if __name__ == "__main__":
    main()

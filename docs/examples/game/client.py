"""The example game's client: sends your input, draws what the server says, and shows why lag hurts.

    python docs/examples/game/client.py [--port 5555] [--format msgpack|json|pickle]
    arrow keys / WASD move your square;  P toggles client-side prediction;  I toggles interpolation

Two tricks every networked game uses, each switchable so you can see (under sockscope's --latency 150) what
it does:

* Prediction (P). Without it, your square moves only when the server's answer comes back: a full round trip
  after you press the key. With it, the client applies your input at once with the same rule the server uses
  (protocol.move), keeps the inputs the server has not confirmed yet, and re-applies them on top of every
  server position (that re-application is called reconciliation). Your square responds within a frame.
* Interpolation (I). Other players' positions arrive 30 times a second, irregularly. Drawing the latest one
  makes them jump; drawing them a little in the past (INTERP_DELAY), sliding between two known positions,
  makes them move smoothly, at the cost of showing them slightly late.

The client measures its input-to-display delay: the time from an input being applied to the first drawn frame
whose position for you includes it. With prediction that is under one frame; without, about one round trip.
It prints the median every two seconds and with --stats FILE writes one JSON line per input.
--headless --bot plays by itself without a window (for tests and for watching the traffic in sockscope).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import socket
import statistics
import time

import protocol

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before importing pygame: no banner on stdout
import pygame

INTERP_DELAY = 2 / protocol.TICK_HZ  # seconds in the past that other players are drawn (two server ticks)
BOT_LEG = 45  # frames the bot moves in one direction before turning
KEYS = {pygame.K_LEFT: (-1, 0), pygame.K_a: (-1, 0), pygame.K_RIGHT: (1, 0), pygame.K_d: (1, 0),
        pygame.K_UP: (0, -1), pygame.K_w: (0, -1), pygame.K_DOWN: (0, 1), pygame.K_s: (0, 1)}


def bot_input(frame: int, pid: int) -> tuple[int, int]:
    """Walk in a square, each bot starting at a different corner of it."""
    leg = (frame // BOT_LEG + pid) % 4
    return [(1, 0), (0, 1), (-1, 0), (0, -1)][leg]


def keyboard_input() -> tuple[int, int]:
    pressed = pygame.key.get_pressed()
    dx = dy = 0
    for key, (kx, ky) in KEYS.items():
        if pressed[key]:
            dx, dy = dx + kx, dy + ky
    return max(-1, min(1, dx)), max(-1, min(1, dy))


def interpolate(history: collections.deque, at: float) -> tuple[float, float]:
    """Where a player was at time `at`, sliding between the two received positions around it."""
    older = history[0]
    for newer in history:
        if newer[0] >= at:
            if newer is older:
                break
            f = (at - older[0]) / (newer[0] - older[0])
            return older[1] + (newer[1] - older[1]) * f, older[2] + (newer[2] - older[2]) * f
        older = newer
    return older[1], older[2]  # `at` is before or after everything we have: the nearest known position


def main() -> None:
    parser = argparse.ArgumentParser(description="the example game's client")
    parser.add_argument("--host", default=protocol.HOST)
    parser.add_argument("--port", type=int, default=protocol.PORT)
    parser.add_argument("--format", choices=protocol.FORMATS, default="msgpack")
    parser.add_argument("--predict", action=argparse.BooleanOptionalAction, default=False,
                        help="start with client-side prediction on (toggle with P)")
    parser.add_argument("--interp", action=argparse.BooleanOptionalAction, default=True,
                        help="start with interpolation of other players on (toggle with I)")
    parser.add_argument("--bot", action="store_true", help="move by itself in a square")
    parser.add_argument("--headless", action="store_true", help="no window (SDL's dummy video driver)")
    parser.add_argument("--duration", type=float, default=0, help="quit after this many seconds (0: never)")
    parser.add_argument("--stats", metavar="FILE", help="write each input's input-to-display delay as JSON lines")
    args = parser.parse_args()

    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    pygame.display.init()
    pygame.font.init()  # not pygame.init(): no sound needed, and audio start-up can be slow or fail headless
    screen = pygame.display.set_mode((protocol.WIDTH, protocol.HEIGHT))
    font = pygame.font.Font(None, 22)

    sock = socket.create_connection((args.host, args.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # send each input now, do not batch them
    reader = protocol.FrameReader(args.format)
    stats_file = open(args.stats, "w", encoding="utf-8") if args.stats else None

    my_id = 0
    server_pos = (0, 0)  # my position according to the server
    ack = 0  # the last of my inputs the server has applied
    seq = 0  # the last input I sent
    pending: list[tuple[int, int, int]] = []  # (seq, dx, dy) sent but not yet confirmed: for prediction
    unshown: collections.deque = collections.deque()  # (seq, time applied) not yet visible on screen
    others: dict[int, collections.deque] = {}  # player id -> recent (time received, x, y)
    delays: list[float] = []  # ms, since the last printed summary
    predict, interp = args.predict, args.interp
    pygame.display.set_caption("sockscope example game")

    clock = pygame.time.Clock()
    start = last_report = time.perf_counter()
    frame = 0
    running = True
    while running:
        now = time.perf_counter()
        if args.duration and now - start >= args.duration:
            break
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                running = False
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_p:
                predict = not predict
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_i:
                interp = not interp

        # 1. Network: read whatever has arrived, without waiting (select with timeout 0 answers "anything?").
        while select.select([sock], [], [], 0)[0]:
            data = sock.recv(65536)
            if not data:
                print("[CLIENT] the server closed the connection", flush=True)
                running = False
                break
            for msg in reader.feed(data):
                if msg["t"] == "welcome":
                    my_id = msg["id"]
                elif msg["t"] == "state":
                    for pid, x, y, last_seq in msg["players"]:
                        if pid == my_id:
                            server_pos, ack = (x, y), last_seq
                        else:
                            history = others.setdefault(pid, collections.deque(maxlen=16))
                            history.append((now, x, y))
                    seen = {p[0] for p in msg["players"]}
                    for pid in list(others):
                        if pid not in seen:
                            del others[pid]  # that player left
                    pending = [p for p in pending if p[0] > ack]  # the server has applied these

        # 2. Input: send it; with prediction, it counts from now on.
        dx, dy = bot_input(frame, my_id) if args.bot else keyboard_input()
        if my_id and (dx or dy):
            seq += 1
            protocol.send(sock, {"t": "input", "seq": seq, "dx": dx, "dy": dy}, args.format)
            pending.append((seq, dx, dy))
            unshown.append((seq, time.perf_counter()))

        # 3. Where to draw me: the server's position, plus (prediction) my inputs it has not applied yet.
        x, y = server_pos
        if predict:
            for _, pdx, pdy in pending:
                x, y = protocol.move(x, y, pdx, pdy)
        shown_seq = seq if predict else ack  # the newest input my drawn position includes

        # 4. Draw.
        screen.fill((24, 26, 33))
        render_at = now - INTERP_DELAY
        for history in others.values():
            ox, oy = interpolate(history, render_at) if interp else history[-1][1:]
            pygame.draw.rect(screen, (220, 90, 90), (round(ox), round(oy), protocol.SIZE, protocol.SIZE))
        if predict:  # a ghost where the server says I am, to see prediction running ahead of it
            pygame.draw.rect(screen, (90, 120, 200), (*server_pos, protocol.SIZE, protocol.SIZE), 1)
        pygame.draw.rect(screen, (90, 200, 120), (x, y, protocol.SIZE, protocol.SIZE))
        recent = statistics.median(delays) if delays else 0.0
        hud = (f"[P] prediction {'ON' if predict else 'off'}   [I] interpolation {'ON' if interp else 'off'}   "
               f"input-to-display {recent:.0f} ms")
        screen.blit(font.render(hud, True, (230, 230, 230)), (8, 8))
        pygame.display.flip()

        # 5. Measure: every input my drawn position now includes has just become visible.
        shown = time.perf_counter()
        while unshown and unshown[0][0] <= shown_seq:
            s, applied = unshown.popleft()
            delay_ms = (shown - applied) * 1000
            delays.append(delay_ms)
            if stats_file:
                stats_file.write(json.dumps({"t": round(shown - start, 4), "seq": s, "delay_ms": round(delay_ms, 2),
                                             "predict": predict, "interp": interp}) + "\n")
        if shown - last_report >= 2 and delays:
            print(f"[CLIENT] input-to-display: median {statistics.median(delays):.1f} ms over {len(delays)} inputs "
                  f"(prediction {'on' if predict else 'off'})", flush=True)
            delays.clear()
            last_report = shown

        frame += 1
        clock.tick(protocol.FPS)  # wait for the next frame: 60 frames a second

    if stats_file:
        stats_file.close()
    sock.close()
    pygame.quit()


if __name__ == "__main__":
    main()

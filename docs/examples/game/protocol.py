"""What the example game's client and server agree on: the port, the message format, and the movement rule.

Every message is one *frame*: a 4-byte big-endian length, then that many bytes of payload. TCP is a stream of
bytes, not of messages: one recv() can return half a message or three of them, so the receiver needs to know
where each one ends. (Run sockscope with `--framing len32` and it shows one row per frame.)

The payload is a dict serialised with msgpack (default), JSON or pickle, chosen with `--format` on both sides.

Messages (the field names are plain on purpose: sockscope's latency lab finds seq, ack, time and x/y by name):
    server -> client  {"t": "welcome", "id": 1}                      your player id
    client -> server  {"t": "input", "seq": 7, "dx": 1, "dy": 0,     one frame of movement input, numbered,
                       "x": 104, "y": 100}                           and where the client shows itself after it
    server -> client  {"t": "state", "tick": 90, "time": 3000,       30 times a second, to each client:
                       "ack": 7, "x": 104, "y": 100,                 the last of YOUR inputs the server applied
                                                                     and where that put you (the truth),
                       "players": [[id, x, y, last_seq], ...]}       and everyone's position
`time` is the server's clock in ms. `ack` and `last_seq` are the last input of that player the server has
applied: a client needs them for server reconciliation (client.py explains). The `x`, `y` of an input are not
trusted by the server (it only ever applies dx, dy); they let you, and sockscope, compare what the client
predicted for input N with what the server then said: that difference is the *correction* the client had to make.
"""

from __future__ import annotations

import json
import pickle
import socket
import struct

import msgpack

HOST = "127.0.0.1"
PORT = 5555

TICK_HZ = 30  # the server simulates and broadcasts this many times a second
FPS = 60  # the client draws and sends input this many times a second
WIDTH, HEIGHT = 640, 480
SPEED = 4  # pixels per input: whole numbers, so every format sends exactly the same positions
SIZE = 24  # a player is a SIZE x SIZE square

FORMATS = ("msgpack", "json", "pickle")
_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20  # a bigger length prefix means a broken or hostile peer: stop rather than wait for 4 GB


# ----------------------------------------------------------------------------------------- the game rule


def move(x: int, y: int, dx: int, dy: int) -> tuple[int, int]:
    """Apply one input. The server runs it to decide where players are; a predicting client runs the very same
    function on its own inputs, so its guess matches what the server will say."""
    x = min(max(x + dx * SPEED, 0), WIDTH - SIZE)
    y = min(max(y + dy * SPEED, 0), HEIGHT - SIZE)
    return x, y


# ----------------------------------------------------------------------------------------- serialisation


def encode(message: dict, fmt: str) -> bytes:
    """A message as one frame: length prefix + payload."""
    if fmt == "msgpack":
        payload = msgpack.packb(message)
    elif fmt == "json":
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    elif fmt == "pickle":
        payload = pickle.dumps(message)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes, fmt: str) -> dict:
    if fmt == "msgpack":
        return msgpack.unpackb(payload)
    if fmt == "json":
        return json.loads(payload)
    if fmt == "pickle":
        # DANGER: unpickling runs code chosen by whoever made the bytes. A pickle can say "call os.system(...)"
        # and pickle.loads will do it. That is acceptable here only because this game talks to itself: the
        # client and server are the same trusted code on your own machine. Never unpickle data from a
        # stranger (a public server, a player's client, a file you downloaded): use msgpack or JSON, which
        # can only ever produce data. (sockscope itself never unpickles what it captures.)
        return pickle.loads(payload)  # noqa: TID251 - trusted peer only, see above
    raise ValueError(f"unknown format {fmt!r}")


class FrameReader:
    """Collects received bytes and cuts them into complete frames."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        """Add what recv() returned; return the messages that are now complete (maybe none)."""
        self.buffer += data
        messages = []
        while len(self.buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self.buffer)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes is too big")
            if len(self.buffer) < _HEADER.size + length:
                break  # the rest of this frame has not arrived yet
            payload = bytes(self.buffer[_HEADER.size:_HEADER.size + length])
            del self.buffer[:_HEADER.size + length]
            messages.append(decode(payload, self.fmt))
        return messages


def send(sock: socket.socket, message: dict, fmt: str) -> None:
    sock.sendall(encode(message, fmt))

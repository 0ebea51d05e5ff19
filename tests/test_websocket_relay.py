"""WebSocket through the TCP relay with real traffic: a websockets-library server and client (its threaded API)
through the in-process engine with ``--framing auto``, each message decoded and checked field by field; then
hold, edit, drop and inject on a live compressed connection, where the peer must receive exactly the right bytes.

Waits are on records the engine publishes and on the library's own blocking calls with timeouts; nothing sleeps.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from inspector.decode import DecodeContext, View, default_registry, existing_registry
from inspector.store import MessageStore
from proxy.framing import FramingSpec
from proxy.model import ConnectionClosed, Direction, FramingInferred, Message, MessageState, Notice, Origin
from proxy.runner import ProxyThread
from tests.conftest import IO_TIMEOUT, Recorder

C2S, S2C = Direction.C2S, Direction.S2C
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _forget_connections() -> Iterator[None]:
    """The store names each WebSocket direction's framing in the process's registry, as the window's does; a test
    after this one may number its connections from 1 again (a new window forgets them the same way)."""
    yield
    reg = existing_registry()
    if reg is not None:
        reg.clear_settings()


class GameServer:
    """A websockets server on 127.0.0.1 playing a small script; what it received goes to ``got``."""

    def __init__(self, compression: str | None) -> None:
        self.got: queue.Queue[object] = queue.Queue()
        self.compression = compression
        self.server: Server = serve(self._handler, "127.0.0.1", 0, compression=compression, ping_interval=None)
        self.port: int = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self, ws: ServerConnection) -> None:
        try:
            for msg in ws:
                self.got.put(msg)
                if msg == "frag":
                    ws.send(["first, ", "second, ", "third"])
                elif msg == "bye":
                    ws.close(4001, "game over")
                    return
                elif isinstance(msg, bytes):
                    ws.send(msgpack.packb({"t": "state", "x": 1, "y": [2, 3]}))
                elif msg.startswith("{"):
                    ws.send(json.dumps({"type": "echo", "got": json.loads(msg)}))
        except WsClosed:
            pass

    def next(self) -> object:
        return self.got.get(timeout=IO_TIMEOUT)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(IO_TIMEOUT)


@pytest.fixture(params=["deflate", None], ids=["deflate", "plain"])
def game(request: pytest.FixtureRequest) -> Iterator[GameServer]:
    g = GameServer(request.param)
    yield g
    g.close()


@pytest.fixture
def relay(start_proxy: Callable[..., ProxyThread], game: GameServer) -> ProxyThread:
    return start_proxy(game.port, framing=FramingSpec("auto", "auto"))


def client(p: ProxyThread, compression: str | None) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{p.port}/game", compression=compression, proxy=None, ping_interval=None,
                   open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT)


class Views:
    """The records so far, applied to a window's store (which feeds the WebSocket stream tracker), decoded."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.store = MessageStore()
        self.applied = 0
        self.reg = default_registry()

    def update(self) -> None:
        recs = self.recorder.records[self.applied:]
        self.applied += len(recs)
        self.store.apply(recs)

    def of(self, d: Direction) -> list[tuple[Message, View]]:
        self.update()
        s = self.store
        out = []
        for row in s.view:
            m = s.message(row)
            if m.direction is d:
                out.append((m, self.reg.decode_message(m)))
        return out


def frame_values(views: list[tuple[Message, View]]) -> list[dict[str, Any]]:
    out = []
    for _, v in views:
        assert v.decoder == "websocket" and v.error is None, v.summary
        assert isinstance(v.values[0], dict)
        out.append(v.values[0])
    return out


def play(c: ClientConnection) -> list[object]:
    """The client's script; what it received."""
    got: list[object] = []
    c.send(json.dumps({"type": "hello", "name": "alice"}))
    got.append(c.recv(timeout=IO_TIMEOUT))
    c.send(msgpack.packb({"t": "input", "keys": ["left", "jump"]}))
    got.append(c.recv(timeout=IO_TIMEOUT))
    c.send(["part one, ", "part two"])  # a fragmented text message
    c.ping(b"p1").wait(IO_TIMEOUT)
    c.send("frag")
    got.append(c.recv(timeout=IO_TIMEOUT))
    c.send("bye")
    with pytest.raises(WsClosed) as closed:
        c.recv(timeout=IO_TIMEOUT)
    got.append((closed.value.rcvd.code, closed.value.rcvd.reason) if closed.value.rcvd else None)
    return got


def test_a_real_session_is_framed_and_decoded_field_by_field(
        relay: ProxyThread, game: GameServer, recorder: Recorder) -> None:
    compression = game.compression
    with client(relay, compression) as c:
        got = play(c)
    assert got == [json.dumps({"type": "echo", "got": {"type": "hello", "name": "alice"}}),
                   msgpack.packb({"t": "state", "x": 1, "y": [2, 3]}), "first, second, third", (4001, "game over")]
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    framings = {(r.direction, r.framing, r.cause) for r in recorder.of(FramingInferred)}
    assert framings == {(C2S, "websocket", "inferred"), (S2C, "websocket", "inferred")}
    assert game.next() == json.dumps({"type": "hello", "name": "alice"})
    assert game.next() == msgpack.packb({"t": "input", "keys": ["left", "jump"]})
    assert game.next() == "part one, part two"

    views = Views(recorder)
    c2s = frame_values(views.of(C2S))
    s2c = frame_values(views.of(S2C))
    deflate = compression is not None

    # the handshake, both ways
    assert c2s[0]["handshake"] == "request" and c2s[0]["path"] == "/game"
    assert c2s[0]["headers"]["upgrade"] == "websocket"
    assert (c2s[0]["deflate"] is not None) is deflate
    assert s2c[0]["handshake"] == "response" and s2c[0]["status"] == 101
    if deflate:
        assert s2c[0]["deflate"] == {"server_max_window_bits": "12", "client_max_window_bits": "12"}
        accept = next(v for _, v in views.of(S2C))
        assert any("fits the client's Sec-WebSocket-Key" in f.value_repr for f in _walk(accept.fields))

    # the client's frames
    data = list(c2s[1:])
    # (the library sends an iterable as a fragment per item, then an empty last frame)
    assert [v["opcode"] for v in data] == ["text", "binary", "text", "continuation", "continuation", "ping", "text",
                                           "text", "close"]
    assert all(v["masked"] for v in data)  # client to server: always masked
    assert all(v["rsv1"] is deflate for v in data if v["opcode"] in ("text", "binary"))
    hello, inp, first, second, last, ping, frag, bye, close = data
    assert hello["payload"] == {"type": "hello", "name": "alice"} and hello["fin"]
    assert inp["payload"] == {"t": "input", "keys": ["left", "jump"]}
    assert not first["fin"] and first.get("fragment") == 1 and "payload" not in first
    assert not second["fin"] and second.get("fragment") == 2
    assert last["fin"] and last["fragments"] == 3 and last["payload"] == "part one, part two"
    assert ping["payload"] == "p1" and ping["fin"] and not ping["rsv1"]
    assert frag["payload"] == "frag" and bye["payload"] == "bye"
    assert close["close"] == {"code": 4001, "reason": "game over"}  # the client echoes the server's close

    # the server's frames
    data = list(s2c[1:])
    assert [v["opcode"] for v in data] == ["text", "binary", "pong", "text", "continuation", "continuation",
                                           "continuation", "close"]
    assert not any(v["masked"] for v in data)  # server to client: never masked
    welcome, state, pong, f1, f2, f3, f4, close = data
    assert welcome["payload"] == {"type": "echo", "got": {"type": "hello", "name": "alice"}}
    assert welcome["compressed"] is deflate
    assert state["payload"] == {"t": "state", "x": 1, "y": [2, 3]}
    assert pong["payload"] == "p1"
    assert [f1["fin"], f2["fin"], f3["fin"], f4["fin"]] == [False, False, False, True]
    assert f4["fragments"] == 4 and f4["payload"] == "first, second, third"
    assert close["close"] == {"code": 4001, "reason": "game over"}
    # the table's one-line summaries say the same
    summaries = [v.summary for _, v in views.of(S2C)]
    assert summaries[0].startswith("101 Switching Protocols")
    assert summaries[3] == "pong 'p1'"
    assert summaries[-1] == "close 4001 (the application's own code) 'game over'"
    assert any("end of a 4-frame message" in s and "first, second, third" in s for s in summaries)
    if deflate:
        assert "(deflate " in summaries[1]


def _walk(fields: tuple[Any, ...]) -> Iterator[Any]:
    for f in fields:
        yield f
        yield from _walk(f.children)


# ------------------------------------------------------------------------------------------ hold, edit, drop, inject

CHAT = [json.dumps({"type": "hello", "name": "alice"}),
        json.dumps({"type": "chat", "text": "greetings, everyone, from the north tower"}),
        json.dumps({"type": "chat", "text": "greetings, everyone, from the north tower!"}),
        json.dumps({"type": "chat", "text": "greetings, everyone, from the south tower"})]
"""With context takeover, each message after the second refers back to the second: if the server never inflates
the second as it was sent, the later ones read wrong (or fail) unless the proxy sends them uncompressed."""


@pytest.fixture
def deflate_game() -> Iterator[GameServer]:
    g = GameServer("deflate")
    yield g
    g.close()


def held(recorder: Recorder, d: Direction) -> Message:
    m = recorder.wait_for(lambda r: isinstance(r, Message) and r.state is MessageState.HELD and r.direction is d)
    assert isinstance(m, Message)
    return m


def view_of(views: Views, msg: Message) -> View:
    views.update()
    row = views.store.row_of(msg.id)
    assert row is not None
    return views.reg.decode_message(views.store.message(row))


def chat_until_held(p: ProxyThread, game: GameServer, c: ClientConnection, recorder: Recorder) -> Message:
    c.send(CHAT[0])
    assert game.next() == CHAT[0]
    c.recv(timeout=IO_TIMEOUT)
    p.call(p.server.hold_next, C2S, None, 1)
    c.send(CHAT[1])
    return held(recorder, C2S)


def test_edit_a_held_compressed_message_and_the_later_ones_still_read_right(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    game = deflate_game
    p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
    views = Views(recorder)
    with client(p, "deflate") as c:
        m = chat_until_held(p, game, c, recorder)
        view = view_of(views, m)
        assert view.values[0]["rsv1"] is True and view.values[0]["payload"]["text"].startswith("greetings")
        assert view.can_encode and view.editable is not None
        assert view.editable.startswith("# websocket text as=json (was compressed: goes out uncompressed)\n")
        edited_text = view.editable.replace("greetings", "farewell")
        data = views.reg.encode("websocket", edited_text, DecodeContext(direction=C2S))
        assert data[0] == 0x81 and data[1] & 0x80  # FIN, text, RSV1 clear; masked (client to server)
        p.call(p.server.release, m.id, data)
        assert game.next() == CHAT[1].replace("greetings", "farewell")
        c.recv(timeout=IO_TIMEOUT)  # its echo
        for text in CHAT[2:]:
            c.send(text)
            assert game.next() == text  # the server reads them right: the proxy sent them uncompressed
            assert json.loads(c.recv(timeout=IO_TIMEOUT))["got"] == json.loads(text)
    note = recorder.wait_for(lambda r: isinstance(r, Notice) and "uncompressed (RSV1 clear)" in r.text)
    assert isinstance(note, Notice) and note.direction is C2S and "edited" in note.text
    # the edited message's record, and what the table shows for it
    edited = view_of(views, m)
    assert edited.values[0]["rsv1"] is False and edited.values[0]["payload"]["text"].startswith("farewell")


def test_drop_a_held_compressed_message_and_the_later_ones_still_read_right(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    game = deflate_game
    p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
    with client(p, "deflate") as c:
        m = chat_until_held(p, game, c, recorder)
        p.call(p.server.drop, m.id)
        for text in CHAT[2:]:
            c.send(text)
            assert game.next() == text
            c.recv(timeout=IO_TIMEOUT)
    assert recorder.wait_for(lambda r: isinstance(r, Notice) and "was dropped" in r.text)


def test_a_duplicated_compressed_message_reaches_the_server_twice_and_the_rest_reads_right(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    game = deflate_game
    p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
    with client(p, "deflate") as c:
        c.send(CHAT[0])
        assert game.next() == CHAT[0]
        c.recv(timeout=IO_TIMEOUT)
        p.call(p.server.arm_fault, C2S, "duplicate", 1)
        c.send(CHAT[1])
        assert game.next() == CHAT[1]
        assert game.next() == CHAT[1]
        for text in CHAT[2:]:
            c.send(text)
            assert game.next() == text
    dups = [r for r in recorder.of(Message) if r.origin is Origin.DUPLICATE]
    assert len(dups) == 1


def test_inject_both_ways_into_a_compressed_session(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    game = deflate_game
    p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
    reg = default_registry()
    with client(p, "deflate") as c:
        c.send(CHAT[0])
        assert game.next() == CHAT[0]
        c.recv(timeout=IO_TIMEOUT)
        conn_id = recorder.of(Message)[0].conn_id
        to_client = reg.encode("websocket", '# websocket text\n{"type": "announce", "text": "server restarts"}',
                               DecodeContext(direction=S2C))
        assert not to_client[1] & 0x80  # server to client: not masked
        p.call(p.server.inject, conn_id, S2C, to_client)
        assert json.loads(c.recv(timeout=IO_TIMEOUT)) == {"type": "announce", "text": "server restarts"}
        to_server = reg.encode("websocket", '# websocket binary as=hex\n01 02 03', DecodeContext(direction=C2S))
        assert to_server[0] == 0x82 and to_server[1] & 0x80
        p.call(p.server.inject, conn_id, C2S, to_server)
        assert game.next() == b"\x01\x02\x03"
        c.recv(timeout=IO_TIMEOUT)  # the server's answer to binary
        for text in CHAT[1:]:  # compressed traffic goes on, untouched: an uncompressed message does not disturb it
            c.send(text)
            assert game.next() == text
            c.recv(timeout=IO_TIMEOUT)
        injected = [r for r in recorder.of(Message) if r.origin is Origin.INJECTED]
        assert {m.direction for m in injected} == {C2S, S2C}
    assert not any(isinstance(r, Notice) and "uncompressed" in r.text for r in recorder.records)


def test_filters_reach_frames_and_their_decoded_content(
        relay: ProxyThread, game: GameServer, recorder: Recorder) -> None:
    from inspector.filters import parse_filter

    with client(relay, game.compression) as c:
        play(c)
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    views = Views(recorder)
    views.update()
    s = views.store
    msgs = [s.message(row) for row in s.view]

    def matching(text: str) -> list[Message]:
        f = parse_filter(text)
        return [m for m in msgs if f.matches(m)]

    assert [m.direction for m in matching('websocket.opcode == "ping"')] == [C2S]
    assert len(matching('websocket.opcode == "pong" and s2c')) == 1
    assert len(matching("websocket.close.code == 4001")) == 2  # the server's close and the client's echo
    assert len(matching('websocket.payload.type == "hello"')) == 1
    assert len(matching('websocket.payload.t == "state"')) == 1  # msgpack, from the server
    assert len(matching('websocket.payload ~ "part one"')) == 1  # the reassembled fragments, on the last frame
    assert len(matching("websocket.fin == false")) == 2 + 3  # the client's and the server's unfinished fragments
    assert len(matching("websocket.rsv1 == true")) == (5 + 3 if game.compression else 0)  # data messages' first frames
    assert len(matching('websocket.handshake == "response" and websocket.status == 101')) == 1
    assert len(matching('websocket.path == "/game"')) == 1


def test_replaying_a_compressed_client_reaches_the_server_right(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    game = deflate_game
    p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
    with client(p, "deflate") as c:
        for text in CHAT:
            c.send(text)
            assert game.next() == text
            c.recv(timeout=IO_TIMEOUT)
    first = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert isinstance(first, ConnectionClosed)
    new_id = p.run_coroutine(p.server.replay(first.conn_id, mode="wait-reply", reply_timeout=2.0))
    for text in CHAT:  # the server inflates every replayed message in order, with the same negotiation
        assert game.next() == text
    assert new_id != first.conn_id


def test_a_rule_in_the_proxy_holds_pings_and_uncompressed_messages_by_their_frames(
        start_proxy: Callable[..., ProxyThread], recorder: Recorder) -> None:
    """Rules run in the proxy, which decodes each message alone: a control frame, or an uncompressed text frame,
    is recognised by its bytes there (docs/decoders.md#websocket)."""
    from proxy.rules import Rule

    game = GameServer(None)
    try:
        p = start_proxy(game.port, framing=FramingSpec("auto", "auto"))
        p.call(p.server.set_rules, [Rule.from_dict({"filter": 'websocket.opcode == "ping"', "action": "hold"}),
                                    Rule.from_dict({"filter": 'websocket.payload.type == "chat"', "action": "hold"})])
        with client(p, None) as c:
            c.send(CHAT[0])
            assert game.next() == CHAT[0]
            c.recv(timeout=IO_TIMEOUT)
            c.ping(b"are you there")
            ping = held(recorder, C2S)
            p.call(p.server.release, ping.id)
            c.send(CHAT[1])
            chat = recorder.wait_for(lambda r: isinstance(r, Message) and r.state is MessageState.HELD
                                     and r.id != ping.id)
            assert isinstance(chat, Message)
            p.call(p.server.release, chat.id)
            assert game.next() == CHAT[1]
    finally:
        game.close()


def test_a_first_read_of_head_and_frames_is_reframed_and_its_frames_decoded_in_order() -> None:
    """A server that writes its 101 and its first compressed messages at once: the proxy decides websocket at that
    read's end, the window re-frames the read into the head and its frames, and the later frames, which refer
    back to those (context takeover), still inflate right."""
    from proxy.model import ConnectionOpened
    from tests.test_websocket_framing import open_session

    s = open_session()
    for m in CHAT:
        s.server.send_text(m.encode())
    frames = [b for b in s.server.data_to_send() if b]
    first_read = s.s2c[0] + frames[0] + frames[1]
    records = [ConnectionOpened(9, ("127.0.0.1", 1), ("127.0.0.1", 2), 0),
               Message(1, 9, S2C, 0, first_read, 0, 0),
               FramingInferred(9, S2C, "websocket", "inferred", 1, len(first_read), 0, 0, 3, "inferred"),
               Message(2, 9, S2C, 1, frames[2], 0, 0), Message(3, 9, S2C, 2, frames[3], 0, 0)]
    store = MessageStore()
    try:
        store.apply(records)
        reg = default_registry()
        views = [reg.decode_message(store.message(h)) for h in store.view]
        assert [v.values[0].get("handshake") or v.values[0]["payload"] for v in views] == [
            "response", *(json.loads(m) for m in CHAT)]
        assert all(v.decoder == "websocket" and not v.warnings for v in views)
    finally:
        existing = existing_registry()
        if existing is not None:
            existing.clear_settings()


def test_named_websocket_framing_frames_the_same_session_from_its_first_byte(
        start_proxy: Callable[..., ProxyThread], deflate_game: GameServer, recorder: Recorder) -> None:
    p = start_proxy(deflate_game.port, framing=FramingSpec("websocket", "websocket"))
    with client(p, "deflate") as c:
        assert play(c)[-1] == (4001, "game over")
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert not recorder.of(FramingInferred)  # named, not inferred: nothing changed
    views = Views(recorder)
    views.store.new_connection_framing = ("websocket", "websocket")  # what the window learns from the proxy
    c2s = frame_values(views.of(C2S))
    s2c = frame_values(views.of(S2C))
    assert c2s[0]["handshake"] == "request" and s2c[0]["status"] == 101
    assert [v["opcode"] for v in c2s[1:]] == ["text", "binary", "text", "continuation", "continuation", "ping",
                                              "text", "text", "close"]
    assert c2s[5]["payload"] == "part one, part two"

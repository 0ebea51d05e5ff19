"""A tiny two-player game that talks the way a Godot 4 game does on the wire, for docs/tutorial/godot.md.

Godot's high-level multiplayer (``multiplayer.rpc``, ``MultiplayerSpawner``, ``MultiplayerSynchronizer``) sends
its packets over ENet. This script cannot run Godot, so it uses pyenet (the same ENet library) and writes the
packets exactly as Godot's SceneMultiplayer writes them (modules/multiplayer/*.cpp in Godot's source):

- the client connects asking for 255 channels and sending its peer id, as ``ENetMultiplayerPeer.create_client``;
- it announces the node ``Players/Ada`` (SIMPLIFY_PATH), the server confirms it (CONFIRM_PATH);
- every tick the client calls ``move(Vector2)`` on it: an unreliable RPC (Godot's channel 1, unsequenced);
- now and then it calls ``say(text)``: a reliable RPC (channel 0);
- the server spawns an "Enemy" once (SPAWN) and synchronises its position every tick (SYNC, unreliable);
- at the start the server sends the level as one reliable RPC of 6 KB: more than one datagram, so ENet cuts it into
  fragments.

Run it alone, or through sockscope (the server stays on 7000; give the port the client should use):

    python docs/tutorial/godot_game.py              the client talks to the server directly
    python docs/tutorial/godot_game.py 7001         the client talks to 7001 (sockscope, relaying to 7000)
"""

import struct
import sys
import time

import enet  # pip install pyenet

SERVER_PORT = 7000
TICKS = 60  # 3 seconds at 20 ticks a second
PEER_ID = 1_234_567  # Godot picks a random id for each client


def variant(v: object) -> bytes:
    """A value as Godot's multiplayer encodes an argument: ints in as few bytes as fit, the rest in Godot's binary
    serialization (little-endian, padded to 4 bytes)."""
    if isinstance(v, bool):
        return bytes([1 | (0x80 if v else 0)])
    if isinstance(v, int):
        for mode, fmt in enumerate(("<b", "<h", "<i", "<q")):
            try:
                return bytes([2 | mode << 6]) + struct.pack(fmt, v)
            except struct.error:
                continue
    if isinstance(v, float):
        return struct.pack("<If", 3, v)
    if isinstance(v, str):
        raw = v.encode()
        return struct.pack("<II", 4, len(raw)) + raw + b"\0" * (-len(raw) % 4)
    if isinstance(v, tuple):  # a Vector2
        return struct.pack("<Iff", 5, *v)
    raise TypeError(v)


def rpc(node: int, method: int, *args: object) -> bytes:
    """NETWORK_COMMAND_REMOTE_CALL: the node's cached id and the method's id in one byte each, the argument count,
    then the arguments."""
    return bytes([0, node, method, len(args)]) + b"".join(variant(a) for a in args)


def simplify_path(cache_id: int, path: str) -> bytes:
    checksum = b"5d41402abc4b2a76b9719d911017c592"  # the md5 of the node's RPC names
    return b"\x01" + checksum + b"\0" + struct.pack("<I", cache_id) + path.encode() + b"\0"


def confirm_path(path: str) -> bytes:
    return b"\x02\x01" + path.encode() + b"\0"


def spawn(net_id: int, name: str) -> bytes:
    raw = name.encode() + b"\0"
    return bytes([4, 0]) + struct.pack("<IIII", 2, net_id, 0, len(raw)) + raw


def sync(tick: int, net_id: int, x: float, y: float) -> bytes:
    state = variant((x, y))
    return b"\x06" + struct.pack("<H", tick) + struct.pack("<II", net_id, len(state)) + state


def main() -> None:
    client_port = int(sys.argv[1]) if len(sys.argv) > 1 else SERVER_PORT
    server = enet.Host(enet.Address(b"127.0.0.1", SERVER_PORT), 4, 255, 0, 0)
    client = enet.Host(None, 1, 255, 0, 0)
    peer = client.connect(enet.Address(b"127.0.0.1", client_port), 255, PEER_ID)
    player = None
    got = {"server": 0, "client": 0}

    def service() -> None:
        nonlocal player
        for name, host in (("server", server), ("client", client)):
            event = host.service(5)
            while event is not None and event.type != enet.EVENT_TYPE_NONE:
                if event.type == enet.EVENT_TYPE_CONNECT and name == "server":
                    player = event.peer
                elif event.type == enet.EVENT_TYPE_RECEIVE:
                    got[name] += 1
                    if name == "server" and event.packet.data[0] == 1:  # the client announced a node path
                        event.peer.send(0, enet.Packet(confirm_path("Players/Ada"), enet.PACKET_FLAG_RELIABLE))
                event = host.check_events()

    deadline = time.monotonic() + 10
    while (player is None or peer.state != enet.PEER_STATE_CONNECTED) and time.monotonic() < deadline:
        service()
    if player is None:
        sys.exit(f"could not connect to 127.0.0.1:{client_port}")
    print(f"[CLIENT] connected through port {client_port} as peer {PEER_ID}", flush=True)
    unreliable = enet.PACKET_FLAG_UNSEQUENCED | enet.PACKET_FLAG_UNRELIABLE_FRAGMENT  # Godot's "unreliable"
    level = "".join(f"row {i}: " + "#." * 40 + "\n" for i in range(70))  # the level, 6 KB: several datagrams
    player.send(0, enet.Packet(rpc(1, 2, level), enet.PACKET_FLAG_RELIABLE))
    peer.send(0, enet.Packet(simplify_path(1, "Players/Ada"), enet.PACKET_FLAG_RELIABLE))
    player.send(0, enet.Packet(spawn(7, "Enemy"), enet.PACKET_FLAG_RELIABLE))
    for tick in range(TICKS):
        x, y = 100.0 + tick * 2, 80.0
        peer.send(1, enet.Packet(rpc(1, 0, (x, y)), unreliable))  # move(position)
        if tick % 20 == 10:
            peer.send(0, enet.Packet(rpc(1, 1, f"hello at tick {tick}"), enet.PACKET_FLAG_RELIABLE))  # say(text)
        player.send(1, enet.Packet(sync(tick, 7, 300.0 - tick, 50.0), unreliable))
        end = time.monotonic() + 0.05  # 20 ticks a second
        while time.monotonic() < end:
            service()
    peer.disconnect()
    end = time.monotonic() + 1
    while peer.state != enet.PEER_STATE_DISCONNECTED and time.monotonic() < end:
        service()
    print(f"[SERVER] got {got['server']} packets, [CLIENT] got {got['client']} packets", flush=True)


if __name__ == "__main__":
    main()

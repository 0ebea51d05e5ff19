"""Small live examples for docs/lessons.md: each runs a server and a client in one program on port 5555.

    python docs/tutorial/lessons_demo.py coalesce    two sends arrive in one recv()
    python docs/tutorial/lessons_demo.py split       one message arrives in two recv() calls
    python docs/tutorial/lessons_demo.py nagle       small writes without TCP_NODELAY wait for an ACK
    python docs/tutorial/lessons_demo.py halfclose   the client stops sending but still receives

Run one through sockscope to see it: sockscope run --port 5555 -- python docs/tutorial/lessons_demo.py coalesce
"""

import json
import socket
import sys
import threading
import time

SERVER_PORT = 5555


def serve_once(handle) -> threading.Thread:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", SERVER_PORT))
    srv.listen()

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            handle(conn)
        srv.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def read_all(conn: socket.socket) -> list[bytes]:
    chunks = []
    while chunk := conn.recv(2048):
        chunks.append(chunk)
    return chunks


def coalesce() -> None:
    """Two send() calls, one after the other: the receiver usually gets both in a single recv()."""
    def handle(conn: socket.socket) -> None:
        time.sleep(0.2)  # a busy server: by the time it reads, both messages are waiting
        for chunk in read_all(conn):
            print(f"[SERVER] one recv() returned {chunk!r}", flush=True)

    t = serve_once(handle)
    c = socket.create_connection(("127.0.0.1", SERVER_PORT))
    c.send(json.dumps({"x": 120, "y": 80}).encode())
    c.send(json.dumps({"x": 124, "y": 80}).encode())
    c.close()
    t.join()


def split() -> None:
    """One message sent in two parts, as a big message or a slow network would deliver it."""
    def handle(conn: socket.socket) -> None:
        for chunk in read_all(conn):
            print(f"[SERVER] one recv() returned {chunk!r}", flush=True)

    t = serve_once(handle)
    c = socket.create_connection(("127.0.0.1", SERVER_PORT))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = "Ping received! 📥".encode()
    c.send(data[:17])  # cuts the emoji's 4 bytes in the middle
    time.sleep(0.1)
    c.send(data[17:])
    c.close()
    t.join()


def nagle() -> None:
    """Write, write, read: the second small write waits for the ACK of the first (Nagle + delayed ACK)."""
    def handle(conn: socket.socket) -> None:
        for _ in range(5):
            got = b""
            while len(got) < 8:
                got += conn.recv(2048)
            conn.sendall(b"ok")

    t = serve_once(handle)
    c = socket.create_connection(("127.0.0.1", SERVER_PORT))
    if "--nodelay" in sys.argv:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(5):
        t0 = time.perf_counter()
        c.send(b"head")  # a message written in two small pieces
        c.send(b"body")
        c.recv(2048)
        print(f"[CLIENT] round trip {i + 1}: {(time.perf_counter() - t0) * 1000:.1f} ms", flush=True)
    c.close()
    t.join()


def halfclose() -> None:
    """The client says "I have finished sending" (shutdown) and keeps reading the server's answer."""
    def handle(conn: socket.socket) -> None:
        request = b"".join(read_all(conn))  # read until the client's FIN: the request is complete
        conn.sendall(f"you sent {len(request)} bytes".encode())

    t = serve_once(handle)
    c = socket.create_connection(("127.0.0.1", SERVER_PORT))
    c.sendall(b"all of my request")
    c.shutdown(socket.SHUT_WR)  # FIN: no more data from the client, but the connection stays open
    print(f"[CLIENT] server answered after my FIN: {c.recv(2048).decode()}", flush=True)
    c.close()
    t.join()


if __name__ == "__main__":
    examples = {"coalesce": coalesce, "split": split, "nagle": nagle, "halfclose": halfclose}
    if len(sys.argv) < 2 or sys.argv[1] not in examples:
        sys.exit(f"usage: python {sys.argv[0]} {'|'.join(examples)}")
    examples[sys.argv[1]]()

"""The tutorial's mini-exercise (docs/tutorial/exercise.py) as functions a test can call.

The server sends a welcome and waits for the answer; the client reads the welcome and answers
"Ping received! 📥". Your game keeps its own port (the tutorial's is 5555); tests pass port 0 so that the system
picks a free one and several test runs never collide.
"""

import socket
import time

BUFFER_SIZE = 2048
WELCOME = "Hello from the exercise server! 🚀"
REPLY = "Ping received! 📥"


def listen(port=5555):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen()
    return srv


def serve_one(srv):
    """Serve one client: send the welcome, wait for the answer; returns it and the round trip in seconds."""
    conn, _ = srv.accept()
    with conn:
        sent_at = time.perf_counter()
        conn.send(WELCOME.encode())
        data = conn.recv(BUFFER_SIZE)
        return data.decode("utf-8"), time.perf_counter() - sent_at


def client(host="127.0.0.1", port=5555):
    """Connect, read the welcome, answer it; returns the welcome."""
    with socket.create_connection((host, port), timeout=10) as c:
        welcome = c.recv(BUFFER_SIZE).decode("utf-8")
        c.send(REPLY.encode())
        return welcome

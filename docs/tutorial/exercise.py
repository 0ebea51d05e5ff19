"""The tutorial's mini-exercise in one script: a server and a client in the same program.

The server waits on port 5555 and sends a welcome; the client reads it and answers "Ping received! 📥"; the
server prints the answer and how long it waited for it (the round trip).

    python docs/tutorial/exercise.py                  run it once
    python docs/tutorial/exercise.py --keep-serving   keep the server running afterwards (Ctrl+C stops it),
                                                      so sockscope can replay the conversation to it
"""

import socket
import sys
import threading
import time

BUFFER_SIZE = 2048
SERVER_PORT = 5555  # the server listens here
CLIENT_PORT = 5555  # the client connects here: change it to 5556 to go through sockscope's window

ready = threading.Event()


def server(keep_serving: bool) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", SERVER_PORT))
    srv.listen()
    ready.set()
    while True:
        conn, _ = srv.accept()
        sent_at = time.perf_counter()
        conn.send("Hello from the exercise server! 🚀".encode())
        data = conn.recv(BUFFER_SIZE)
        round_trip_ms = (time.perf_counter() - sent_at) * 1000
        print(f"[SERVER] Client says: {data.decode('utf-8')}  (round trip {round_trip_ms:.0f} ms)", flush=True)
        conn.close()
        if not keep_serving:
            break
        print(f"[SERVER] still listening on port {SERVER_PORT} (Ctrl+C to stop)", flush=True)
    srv.close()


def client() -> None:
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.connect(("127.0.0.1", CLIENT_PORT))
    msg = c.recv(BUFFER_SIZE).decode("utf-8")
    print(f"[CLIENT] Message received: {msg}", flush=True)
    c.send("Ping received! 📥".encode())
    c.close()


if __name__ == "__main__":
    keep = "--keep-serving" in sys.argv[1:]
    server_thread = threading.Thread(target=server, args=(keep,), daemon=keep)
    server_thread.start()
    ready.wait()
    client()
    try:
        while server_thread.is_alive():
            server_thread.join(0.5)
    except KeyboardInterrupt:
        print("[SERVER] stopped", flush=True)

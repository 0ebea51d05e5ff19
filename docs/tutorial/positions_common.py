"""What positions_json.py, positions_msgpack.py and positions_pickle.py share: one player's position, and a
server and a client in one program (like exercise.py) that send it once.

The client turns the position into bytes (encode), sends them and closes the connection; closing is how the
server knows the message is complete. The server reads until the end, turns the bytes back into a
position (decode) and prints it.

Run a format script directly, or with a port to send through sockscope's window:

    python docs/tutorial/positions_json.py          the client connects to 5555 (the server)
    python docs/tutorial/positions_json.py 5556     the client connects to 5556 (sockscope), the server stays on 5555
"""

import socket
import sys
import threading
from collections.abc import Callable

SERVER_PORT = 5555

# The same message in every format: where player 1 ("Ada") is.
POSITION = {"player": 1, "name": "Ada", "x": 120, "y": 80}


def run(fmt: str, encode: Callable[[dict], bytes], decode: Callable[[bytes], dict]) -> None:
    client_port = int(sys.argv[1]) if len(sys.argv) > 1 else SERVER_PORT
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", SERVER_PORT))
    srv.listen()

    def server() -> None:
        conn, _ = srv.accept()
        data = b""
        while chunk := conn.recv(2048):  # an empty chunk means the client closed: the message is complete
            data += chunk
        conn.close()
        srv.close()
        print(f"[SERVER] got {len(data)} bytes of {fmt}: {decode(data)}", flush=True)

    server_thread = threading.Thread(target=server)
    server_thread.start()

    data = encode(POSITION)
    print(f"[CLIENT] sending {len(data)} bytes of {fmt}: {data!r}", flush=True)
    c = socket.create_connection(("127.0.0.1", client_port))
    c.sendall(data)
    c.close()
    server_thread.join()

"""What a hostile pickle looks like. This client sends a pickle that, if the server called pickle.loads on it,
would run a shell command on the server's machine. This server never unpickles it: it only counts the bytes.
Watch it through sockscope, whose pickle reader shows what the pickle would call without running it.

    python docs/tutorial/hostile_pickle.py [CLIENT_PORT]
"""

import os
import pickle
import socket
import sys
import threading

SERVER_PORT = 5555


class Innocent:
    """Pickle asks an object how to rebuild it (__reduce__). This one answers: "call os.system(...)"."""

    def __reduce__(self):
        return (os.system, ("echo this command would run on the server",))


if __name__ == "__main__":
    client_port = int(sys.argv[1]) if len(sys.argv) > 1 else SERVER_PORT
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", SERVER_PORT))
    srv.listen()

    def server() -> None:
        conn, _ = srv.accept()
        data = b""
        while chunk := conn.recv(2048):
            data += chunk
        conn.close()
        srv.close()
        # pickle.loads(data) here would run the command. We only look at the size.
        print(f"[SERVER] got {len(data)} bytes of pickle and did NOT unpickle them", flush=True)

    server_thread = threading.Thread(target=server)
    server_thread.start()
    data = pickle.dumps(Innocent())  # dumps only writes bytes: nothing runs here
    print(f"[CLIENT] sending a {len(data)}-byte pickle that says: call os.system(...)", flush=True)
    c = socket.create_connection(("127.0.0.1", client_port))
    c.sendall(data)
    c.close()
    server_thread.join()

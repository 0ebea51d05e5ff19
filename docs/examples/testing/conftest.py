import socket
import threading

import game
import pytest


class GameServer:
    """The tutorial's server on a thread, on a free port of 127.0.0.1."""

    def __init__(self):
        self.srv = game.listen(port=0)
        self.address = self.srv.getsockname()
        self.heard = None  # what the client answered
        self.round_trip = None  # seconds from the welcome to the answer, as the server saw it
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        self.heard, self.round_trip = game.serve_one(self.srv)

    def close(self):
        if self.thread.is_alive():  # no client came: wake accept() with one
            socket.create_connection(self.address, timeout=10).close()
        self.thread.join(10)
        self.srv.close()


@pytest.fixture
def game_server():
    server = GameServer()
    yield server
    server.close()

"""Send one position as pickle: Python's own format. It can hold any Python object, which is the problem.

    python docs/tutorial/positions_pickle.py [CLIENT_PORT]     (see positions_common.py)

DANGER: pickle.loads runs code chosen by whoever made the bytes (see hostile_pickle.py). It is acceptable here
only because this program talks to itself. Never unpickle bytes from a stranger: a public server, another
player's client, a file you downloaded. Use JSON or msgpack for anything that crosses a network.
"""

import pickle

from positions_common import run


def encode(message: dict) -> bytes:
    return pickle.dumps(message)


def decode(data: bytes) -> dict:
    return pickle.loads(data)  # noqa: TID251 - trusted: this program's own client made these bytes


if __name__ == "__main__":
    run("pickle", encode, decode)

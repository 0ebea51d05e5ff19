"""Send one position as msgpack: like JSON, but binary and smaller. It can only ever produce data.

    python docs/tutorial/positions_msgpack.py [CLIENT_PORT]     (see positions_common.py; needs msgpack,
                                                                 which sockscope installs)
"""

import msgpack
from positions_common import run


def encode(message: dict) -> bytes:
    return msgpack.packb(message)


def decode(data: bytes) -> dict:
    return msgpack.unpackb(data)


if __name__ == "__main__":
    run("msgpack", encode, decode)

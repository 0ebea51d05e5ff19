"""Send one position as JSON: text that any language can read, and that can only ever produce data.

    python docs/tutorial/positions_json.py [CLIENT_PORT]     (see positions_common.py)
"""

import json

from positions_common import run


def encode(message: dict) -> bytes:
    return json.dumps(message).encode("utf-8")


def decode(data: bytes) -> dict:
    return json.loads(data)


if __name__ == "__main__":
    run("json", encode, decode)

"""Field paths into decoded values (inspector/fields.py): one walk for the filter language and the timeline's keys.

Values come from real decoders over real bytes (JSON, msgpack with bytes keys, a pickle read without running it);
the filter bar and a pairing key given the same path must find the same value.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass

import msgpack
import pytest

from inspector.decode import PickleObject, View, default_registry
from inspector.fields import MISSING, resolve
from inspector.filters import parse_filter
from inspector.timeline.pairing import KeySpec
from proxy.model import Direction, Message


@dataclass
class Player:  # pickled below, read back by the safe reader as a PickleObject (never imported or called)
    name: str
    seq: int


class Inventory(list[str]):
    pass


def decoded(ns: str, data: bytes) -> View:
    view = default_registry().decode_with(ns, data)
    assert view.error is None and view.decoder == ns, view.error
    return view


def root(ns: str, data: bytes) -> object:
    return decoded(ns, data).values[0]


def test_names_and_indexes_walk_dicts_and_lists() -> None:
    value = root("json", json.dumps({"pos": {"x": 3, "y": [10, 20, 30]}, "0": "zero", "n": None}).encode())
    assert resolve(value, ("pos", "x")) == 3
    assert resolve(value, ("pos", "y", -1)) == 30
    assert resolve(value, ("pos", "y", "1")) == 20  # a quoted index: ["1"]
    assert resolve(value, (0,)) == "zero"  # json.0 finds the key "0"
    assert resolve(value, ("n",)) is None and resolve(value, ("n",)) is not MISSING
    assert resolve(value, ()) is value
    for path in [("pos", "z"), ("pos", "y", 3), ("pos", "y", -4), ("pos", "y", "x"), ("pos", "y", "²"),
                 ("pos", "x", "deeper"), ("pos", "y", "9" * 40)]:
        assert resolve(value, path) is MISSING, path


def test_a_name_finds_a_bytes_key_as_msgpack_maps_often_have() -> None:
    value = root("msgpack", msgpack.packb({b"type": b"ping", b"players": [{b"seq": 7}]}, use_bin_type=True))
    assert resolve(value, ("type",)) == b"ping"
    assert resolve(value, ("players", 0, "seq")) == 7


def test_a_pickled_object_gives_its_attributes_class_and_items() -> None:
    obj = root("pickle", pickle.dumps(Player("ann", 4)))
    assert isinstance(obj, PickleObject)
    assert resolve(obj, ("name",)) == "ann" and resolve(obj, ("seq",)) == 4
    assert resolve(obj, ("class",)) == "Player"
    assert resolve(obj, ("age",)) is MISSING
    inv = root("pickle", pickle.dumps(Inventory(["sword", "shield"])))
    assert isinstance(inv, PickleObject)
    assert resolve(inv, (1,)) == "shield" and resolve(inv, (-2,)) == "sword" and resolve(inv, (2,)) is MISSING


CASES = [  # (decoder, bytes, path as typed, the value found there as the key text)
    ("json", json.dumps({"id": "a7", "pos": [1, 2]}).encode(), ".id", "a7"),
    ("json", json.dumps({"0": "zero"}).encode(), ".0", "zero"),
    ("json", json.dumps([["x", "y"]]).encode(), "[0][-1]", "y"),
    ("msgpack", msgpack.packb({b"seq": 12, b"t": [b"ping"]}, use_bin_type=True), ".seq", "12"),
    ("msgpack", msgpack.packb({b"t": [b"ping"]}, use_bin_type=True), ".t[0]", "ping"),
    ("pickle", pickle.dumps(Player("bo", 9)), ".seq", "9"),
    ("pickle", pickle.dumps(Inventory(["sword", "shield"])), ".1", "shield"),
]


@pytest.mark.parametrize("ns, data, path, key", CASES, ids=[f"{c[0]}{c[2]}" for c in CASES])
def test_the_filter_bar_and_a_pairing_key_find_the_same_field(ns: str, data: bytes, path: str, key: str) -> None:
    view = decoded(ns, data)
    spec = KeySpec.parse(ns + path)
    assert spec.path, spec
    assert spec.extract(data, lambda: view) == key
    msg = Message(1, 1, Direction.C2S, 1, data, 0, 0)
    value = resolve(view.values[0], spec.path)
    literal = json.dumps(value.decode() if isinstance(value, bytes) else value)
    assert parse_filter(f"{ns}{path} == {literal}").matches(msg, lambda m: view)
    assert not parse_filter(f"{ns}{path} != {literal}").matches(msg, lambda m: view)

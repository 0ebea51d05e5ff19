"""Generators of the hostile decoder inputs in ``tests/hostile/{pickle,msgpack,json,struct,text}/``.

Each file there is the output of one function here (``tests/test_hostile_decoders.py`` checks that they agree),
so a reader can see how an input is built and regenerate the corpus with ``python -m tests.hostile_decoders_corpus``.
Pickles are written opcode by opcode: ``pickle.dumps`` never makes these shapes. Struct inputs are layouts (the
text a user would type); the test decodes messages of several sizes with them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "hostile"

# ---------------------------------------------------------------------------------------------------------
# Hash collisions: CPython's hash of ints (mod 2**61 - 1) and of tuples (xxHash-like) is public arithmetic, so a
# sender can make thousands of distinct keys share one hash. These build such keys.

_M64 = (1 << 64) - 1
_XX1, _XX2, _XX5 = 11400714785074694791, 14029467366897019727, 2870177450012600261
_XX1_INV, _XX2_INV = pow(_XX1, -1, 1 << 64), pow(_XX2, -1, 1 << 64)
_MERSENNE = (1 << 61) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _rotr(x: int, r: int) -> int:
    return ((x >> r) | (x << (64 - r))) & _M64


def _signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def _int_with_hash(h: int) -> int | None:
    """An int whose ``hash`` is ``h``, if there is a small one."""
    if 0 <= h < _MERSENNE or -_MERSENNE < h <= -2:
        return h
    return None


def _after_first(first_hash: int) -> int:
    return (_rotl((_XX5 + (first_hash & _M64) * _XX2) & _M64, 31) * _XX1) & _M64


def _second_hash(acc1: int, target: int) -> int:
    """The hash the second item of a pair needs for the pair to hash to ``target``."""
    acc2 = ((target & _M64) - (2 ^ (_XX5 ^ 3527539))) & _M64
    return _signed(((_rotr((acc2 * _XX1_INV) & _M64, 31) - acc1) * _XX2_INV) & _M64)


def colliding_pairs(n: int, target: int = 12345) -> list[tuple[int, int]]:
    """``n`` distinct pairs of ints with ``hash(pair) == target``."""
    out: list[tuple[int, int]] = []
    a = 0
    while len(out) < n:
        a += 1
        b = _int_with_hash(_second_hash(_after_first(a), target))
        if b is not None:
            out.append((a, b))
    return out


def colliding_timestamps(n: int, target: int = 777) -> list[tuple[int, int]]:
    """``n`` (seconds, nanoseconds) pairs whose msgpack ``Timestamp`` hashes to ``target`` (its hash is
    ``hash((seconds, nanoseconds))``); seconds fit in an int64."""
    out: list[tuple[int, int]] = []
    ns = 0
    while len(out) < n:
        acc2 = ((target & _M64) - (2 ^ (_XX5 ^ 3527539))) & _M64
        acc1 = (_rotr((acc2 * _XX1_INV) & _M64, 31) - ns * _XX2) & _M64
        seconds = _int_with_hash(_signed(((_rotr((acc1 * _XX1_INV) & _M64, 31) - _XX5) * _XX2_INV) & _M64))
        if seconds is not None:
            out.append((seconds, ns))
        ns += 1
    return out


# ---------------------------------------------------------------------------------------------------------
# Pickle opcodes


def _put(i: int) -> bytes:
    return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)


def _get(i: int) -> bytes:
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)


def _long1(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def memo_tuple(depth: int) -> bytes:
    """Opcodes leaving t(depth) on the stack, where t(0) = () and t(k+1) = (t(k), t(k)) through the memo:
    5 bytes a level, 2**depth leaves as a tree."""
    out = bytearray(b")")
    for k in range(depth):
        out += _put(k) + _get(k) + b"\x86"  # BINPUT k, BINGET k, TUPLE2
    return bytes(out)


def pickle_memo_tuple_dict_key(depth: int = 40) -> bytes:
    return b"\x80\x04}" + memo_tuple(depth) + b"K\x01s."  # EMPTY_DICT, key, BININT1 1, SETITEM


def pickle_memo_tuple_set_member(depth: int = 40) -> bytes:
    return b"\x80\x04\x8f(" + memo_tuple(depth) + b"\x90."  # EMPTY_SET, MARK, member, ADDITEMS


def pickle_memo_tuple_frozenset_member(depth: int = 40) -> bytes:
    return b"\x80\x04(" + memo_tuple(depth) + b"\x91."  # MARK, member, FROZENSET


def pickle_memo_tuple_value(depth: int = 40) -> bytes:
    return b"\x80\x04" + memo_tuple(depth) + b"."


def pickle_memo_tuple_reduce_set(depth: int = 40) -> bytes:
    """Protocol 2's way to pickle a set: ``set([member])`` through REDUCE."""
    return b"\x80\x02c__builtin__\nset\n]" + memo_tuple(depth) + b"a\x85R."


def pickle_memo_tuple_ordereddict_key(depth: int = 40) -> bytes:
    return b"\x80\x02ccollections\nOrderedDict\n]" + memo_tuple(depth) + b"K\x01\x86a\x85R."


def pickle_self_list(n: int = 14_000) -> bytes:
    """A list that holds itself ``n`` times: 2 bytes per reference."""
    return b"\x80\x04]" + _put(0) + b"(" + _get(0) * n + b"e."


def pickle_colliding_int_keys(n: int = 5000) -> bytes:
    """A dict whose ``n`` int keys (multiples of 2**61 - 1) all hash to 0."""
    return b"\x80\x04}(" + b"".join(_long1(k * _MERSENNE) + b"N" for k in range(1, n + 1)) + b"u."


def pickle_colliding_tuple_keys(n: int = 2000) -> bytes:
    """A dict whose ``n`` keys are pairs of ints that all hash to the same value."""
    return b"\x80\x04}(" + b"".join(_long1(a) + _long1(b) + b"\x86N" for a, b in colliding_pairs(n)) + b"u."


def pickle_shared_string(size: int = 30_000, n: int = 5000) -> bytes:
    """A list holding one ``size``-character string ``n`` times: its repr would be size * n characters."""
    return b"\x80\x04X" + struct.pack("<I", size) + b"a" * size + _put(0) + b"0](" + _get(0) * n + b"e."


def pickle_big_int_keys(bits: int = 200_000, n: int = 1000) -> bytes:
    """One ``bits``-bit int used as the key of ``n`` dicts (an int's hash is not cached: each costs its size)."""
    v = (1 << bits) - 12345
    raw = v.to_bytes(bits // 8 + 1, "little", signed=True)
    dicts = b"".join(b"}" + _get(0) + b"Ns" for _ in range(n))
    return b"\x80\x04\x8b" + struct.pack("<i", len(raw)) + raw + _put(0) + b"0](" + dicts + b"e."


def pickle_many_modules(n: int = 5000) -> bytes:
    """``n`` GLOBALs naming distinct modules (the reader lists the modules loading would import)."""
    return b"\x80\x02" + b"".join(b"cm%d\nx\n0" % i for i in range(n)) + b"N."


def pickle_colliding_memo_indexes(n: int = 2000) -> bytes:
    """Protocol 0 PUTs whose decimal indexes (multiples of 2**61 - 1) all hash to 0."""
    return b"N" + b"".join(b"p%d\n" % (k * _MERSENNE) for k in range(1, n + 1)) + b"."


def pickle_protocol0_probe(n: int = 1000) -> bytes:
    """A 4 KiB protocol 0 list of ints: what "auto" simulates to tell a pickle from text."""
    return b"(lp0\n" + b"".join(b"I%d\na" % (i % 10) for i in range(n)) + b"."


def pickle_many_calls(n: int = 3000) -> bytes:
    """``n`` REDUCE calls of one global: each is a stand-in whose call the view describes."""
    return b"\x80\x02(" + b"cgame\nf\n)R" * n + b"l."


def _rebuilt_many_times(glob: bytes, item: bytes, n_items: int, n_calls: int) -> bytes:
    """A list of ``n_items`` shared through the memo as the argument of ``n_calls`` calls of ``glob``."""
    return (b"\x80\x02" + glob + _put(0) + b"0](" + item * n_items + b"e" + _put(1) + b"0("
            + (_get(0) + _get(1) + b"\x85R") * n_calls + b"l.")


def pickle_memo_list_rebuilt_by_set(n: int = 5000) -> bytes:
    """``set(the same list)`` 5,000 times: rebuilding each set copies the list (25 million items)."""
    return _rebuilt_many_times(b"c__builtin__\nset\n", b"K\x01", n, n)


def pickle_memo_pairs_rebuilt_by_ordereddict(n: int = 4000) -> bytes:
    """``OrderedDict(the same list of pairs)`` 4,000 times."""
    return _rebuilt_many_times(b"ccollections\nOrderedDict\n", b"K\x01K\x02\x86", n, n)


# ---------------------------------------------------------------------------------------------------------
# msgpack


def msgpack_colliding_timestamp_keys(n: int = 2000) -> bytes:
    out = bytearray(b"\xde" + struct.pack(">H", n))
    for seconds, ns in colliding_timestamps(n):
        out += b"\xc7\x0c\xff" + struct.pack(">Iq", ns, seconds) + b"\xc0"  # timestamp 96 -> nil
    return bytes(out)


def msgpack_colliding_array_keys(n: int = 2000) -> bytes:
    out = bytearray(b"\xde" + struct.pack(">H", n))
    for a, b in colliding_pairs(n):
        out += b"\x92\xcf" + struct.pack(">Q", a) + (b"\xd3" + struct.pack(">q", b)) + b"\xc0"
    return bytes(out)


def msgpack_nested_arrays(depth: int = 20_000) -> bytes:
    return b"\x91" * depth + b"\xc0"


def msgpack_array32_claims_4g_items() -> bytes:
    return b"\xdd\xff\xff\xff\xff" + b"\xc0" * 16


def msgpack_map32_claims_4g_pairs() -> bytes:
    return b"\xdf\xff\xff\xff\xff" + b"\xc0" * 16


def msgpack_str32_claims_4g_bytes() -> bytes:
    return b"\xdb\xff\xff\xff\xff" + b"a" * 16


def msgpack_many_small_objects(n: int = 30_000) -> bytes:
    return b"\x90" * n


# ---------------------------------------------------------------------------------------------------------
# JSON


def json_nested_arrays(depth: int = 20_000) -> bytes:
    return b"[" * depth + b"]" * depth


def json_nested_objects(depth: int = 5000) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def json_long_number(digits: int = 5000) -> bytes:
    return b"[" + b"7" * digits + b"]"


def json_many_values(n: int = 30_000) -> bytes:
    return b"1 " * n


def json_indent_bomb(depth: int = 300, n: int = 60) -> bytes:
    """``n`` arrays ``depth`` deep: indented, each line of each is up to ``2 * depth`` spaces."""
    return (b"[" * depth + b"]" * depth) * n


# ---------------------------------------------------------------------------------------------------------
# struct layouts (text)


def struct_4097_fields() -> bytes:
    return b"<" + b"Q" * 4097


def struct_zero_count_fields() -> bytes:
    return b"<" + b"0Q" * 20_000 + b"8B"


def struct_zero_size_strings() -> bytes:
    return b"<" + b"0s" * 4000 + b"B"


def struct_huge_repeat_count() -> bytes:
    return b"<" + b"9" * 5000 + b"B"


def struct_wide_records() -> bytes:
    return b"<" + b"B" * 2000


def struct_one_record_million_values() -> bytes:
    return b"<1000000B"


# ---------------------------------------------------------------------------------------------------------
# text


def text_control_bytes() -> bytes:
    return bytes(range(32)) * 512


def text_invalid_utf8() -> bytes:
    return b"\xff\xfe\xc0" * 5000


def text_newlines() -> bytes:
    return b"\n" * 16_000


def text_bidi_and_zero_width() -> bytes:
    return "\u202e\u200b\u2066x".encode() * 2000


def text_cut_characters() -> bytes:
    return "📥".encode()[1:] + "é".encode() * 4000 + "📥".encode()[:3]


CORPUS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pickle/memo_tuple_d40_dict_key.pickle": (
        pickle_memo_tuple_dict_key, "a tuple reused 40 levels deep through the memo (2**40 leaves) as a dict key"),
    "pickle/memo_tuple_d40_set_member.pickle": (
        pickle_memo_tuple_set_member, "the same tuple as a member added to a set (ADDITEMS)"),
    "pickle/memo_tuple_d40_frozenset_member.pickle": (
        pickle_memo_tuple_frozenset_member, "the same tuple as a frozenset member (FROZENSET)"),
    "pickle/memo_tuple_d40_value.pickle": (
        pickle_memo_tuple_value, "the same tuple as the value itself: exactness walk, repr, rendering, export"),
    "pickle/memo_tuple_d40_reduce_set.pickle": (
        pickle_memo_tuple_reduce_set, "the same tuple in set([...]) through REDUCE (protocol 2's sets)"),
    "pickle/memo_tuple_d40_ordereddict_key.pickle": (
        pickle_memo_tuple_ordereddict_key, "the same tuple as an OrderedDict key through REDUCE"),
    "pickle/self_list_14000.pickle": (
        pickle_self_list, "a list holding itself 14,000 times (28 KB): the tree view was quadratic"),
    "pickle/colliding_int_keys_5000.pickle": (
        pickle_colliding_int_keys, "5,000 int keys that all hash to 0: dict insertion was quadratic"),
    "pickle/colliding_tuple_keys_2000.pickle": (
        pickle_colliding_tuple_keys, "2,000 pair keys with one crafted tuple hash"),
    "pickle/shared_string_30k_x5000.pickle": (
        pickle_shared_string, "one 30 KB string referenced 5,000 times: a 150 MB repr"),
    "pickle/big_int_key_x1000.pickle": (
        pickle_big_int_keys, "one 200,000-bit int as the key of 1,000 dicts (int hashes are not cached)"),
    "pickle/many_modules_5000.pickle": (
        pickle_many_modules, "5,000 GLOBALs of distinct modules: the module list was searched linearly"),
    "pickle/colliding_memo_indexes.pickle": (
        pickle_colliding_memo_indexes, "protocol 0 PUTs with huge indexes that all hash to 0"),
    "pickle/protocol0_probe_4k.pickle": (
        pickle_protocol0_probe, "a 4 KiB protocol 0 pickle: auto simulates it to tell it from text"),
    "pickle/many_calls_3000.pickle": (
        pickle_many_calls, "3,000 REDUCE calls: each warning renders a call"),
    "pickle/memo_list_rebuilt_by_set_x5000.pickle": (
        pickle_memo_list_rebuilt_by_set, "set() of one memo-shared 5,000-item list, 5,000 times: 25 million copies"),
    "pickle/memo_pairs_rebuilt_by_ordereddict_x4000.pickle": (
        pickle_memo_pairs_rebuilt_by_ordereddict, "OrderedDict() of one memo-shared list of 4,000 pairs, 4,000 times"),
    "msgpack/colliding_timestamp_keys_2000.msgpack": (
        msgpack_colliding_timestamp_keys, "a map with 2,000 timestamp keys of one hash (Python-level __eq__)"),
    "msgpack/colliding_array_keys_2000.msgpack": (
        msgpack_colliding_array_keys, "a map with 2,000 array keys (read as tuples) of one hash"),
    "msgpack/nested_arrays_20000.msgpack": (
        msgpack_nested_arrays, "20,000 nested one-element arrays"),
    "msgpack/array32_claims_4g_items.msgpack": (
        msgpack_array32_claims_4g_items, "an array32 header claiming 2**32 - 1 items in a 21-byte message"),
    "msgpack/map32_claims_4g_pairs.msgpack": (
        msgpack_map32_claims_4g_pairs, "a map32 header claiming 2**32 - 1 pairs"),
    "msgpack/str32_claims_4g_bytes.msgpack": (
        msgpack_str32_claims_4g_bytes, "a str32 header claiming 4 GiB"),
    "msgpack/many_small_objects_30000.msgpack": (
        msgpack_many_small_objects, "30,000 empty arrays back to back"),
    "json/nested_arrays_20000.json": (
        json_nested_arrays, "20,000 nested arrays: RecursionError in the scanner"),
    "json/nested_objects_5000.json": (
        json_nested_objects, "5,000 nested objects"),
    "json/long_number_5000_digits.json": (
        json_long_number, "a 5,000-digit number: past Python's int conversion limit"),
    "json/many_values_30000.json": (
        json_many_values, "30,000 values back to back"),
    "json/indent_bomb.json": (
        json_indent_bomb, "60 arrays 300 deep: their indented text is 300 lines of up to 600 spaces each"),
    "struct/fields_4097.layout": (
        struct_4097_fields, "one field over the cap of 4096"),
    "struct/zero_count_fields.layout": (
        struct_zero_count_fields, "20,000 '0Q' items: no bytes, no values, one 64-byte record"),
    "struct/zero_size_strings.layout": (
        struct_zero_size_strings, "4,000 '0s' fields in a 1-byte record"),
    "struct/huge_repeat_count.layout": (
        struct_huge_repeat_count, "a 5,000-digit repeat count"),
    "struct/wide_records_2000.layout": (
        struct_wide_records, "2,000 one-byte fields a record"),
    "struct/one_record_million_values.layout": (
        struct_one_record_million_values, "one field of a million values"),
    "text/control_bytes.bin": (text_control_bytes, "16 KiB of control bytes"),
    "text/invalid_utf8.bin": (text_invalid_utf8, "15,000 bytes that are not UTF-8"),
    "text/newlines.bin": (text_newlines, "16,000 newlines: one field per line"),
    "text/bidi_and_zero_width.bin": (text_bidi_and_zero_width, "bidi overrides and zero-width characters"),
    "text/cut_characters.bin": (text_cut_characters, "a message that starts and ends inside a character"),
}
"""Path under tests/hostile/ -> (generator, what the input attacks)."""


def readme(kind: str) -> str:
    lines = [f"# Hostile {kind} inputs for the decoders", "",
             "Generated by `tests/hostile_decoders_corpus.py`; used by `tests/test_hostile_decoders.py`.", ""]
    for path, (_, what) in CORPUS.items():
        if path.startswith(kind + "/"):
            lines.append(f"- `{path.split('/', 1)[1]}`: {what}")
    return "\n".join(lines) + "\n"


def write_corpus() -> None:
    for path, (make, _) in CORPUS.items():
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(make())
    for kind in sorted({p.split("/", 1)[0] for p in CORPUS}):
        (ROOT / kind / "README.md").write_text(readme(kind), encoding="utf-8")


if __name__ == "__main__":
    write_corpus()

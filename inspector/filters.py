"""The filter language: one parser for the filter bar, hold rules and condition rules.

Role: ``parse_filter('json.type == "ping" and s2c')`` gives a :class:`Filter` whose ``matches(msg)`` is a chain
of closures built once at parse time. Predicates on direction, connection, origin, state, size and raw bytes
never decode; decoded fields (``json.pos.x > 3``, ``pickle.class == "Game"``) ask a view provider for the
message's decoded :class:`~inspector.decode.View` only when evaluation reaches them, so a store can hand in its
cache of decoded views. No ``eval``: a hand-written lexer and recursive-descent parser.

Nothing a user types may hang or crash what evaluates a filter (the window, or a rule on the relay's thread):
regexes run on RE2 (linear time; :mod:`proxy.userregex`), ``and``/``or`` chains of any length are evaluated by
loops, parentheses and ``not`` nest at most :data:`MAX_NESTING` deep, number literals are at most
:data:`MAX_NUMBER_CHARS` long, and anything else that goes wrong while matching means "no match". As a rule
(:func:`compile_for_engine`), a filter decodes a message only up to :data:`RULE_DECODE_MAX_BYTES` and within
:data:`RULE_DECODE_BUDGET_NS`, and runs a regex only within :data:`~proxy.userregex.RULE_REGEX_WORK`; past those it
raises :class:`~proxy.model.RuleUndecided`, which the relay turns into "no match" and a one-time warning.

Grammar (``and`` binds tighter than ``or``; ``not`` tighter than both)::

    expr       := and_expr (("or" | "||") and_expr)*
    and_expr   := not_expr (("and" | "&&") not_expr)*
    not_expr   := ("not" | "!") not_expr | "(" expr ")" | comparison
    comparison := field [op value]          # a bare field means "exists and is truthy"
    field      := name ("." name | "." int | "[" (int | string) "]")*
    op         := "==" | "!=" | "<" | "<=" | ">" | ">=" | "~" | "!~" | "contains"
    value      := string | number | true | false | null | bare word

Must not import: Qt, or anything from ``proxy`` except ``proxy.model`` and ``proxy.userregex``.
Thread: any thread; pure. A :class:`Filter` is immutable and can be shared between threads; an
:class:`EngineViews` (the rules' one-message decode cache) is meant for the relay's thread, and is still correct
shared between threads (its cache entry is replaced whole: at worst a message is decoded twice).
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from inspector.decode import View, default_registry, gave_up
from inspector.fields import MISSING, resolve
from proxy.model import Direction, Message, MessageState, Origin, RuleUndecided
from proxy.userregex import RegexError, UserRegex, compile_user_regex

if TYPE_CHECKING:
    from inspector.decode import DecoderRegistry

__all__ = [
    "DECODED_NAMESPACES",
    "FIELD_NAMES",
    "KEYWORDS",
    "MAX_NESTING",
    "MAX_NUMBER_CHARS",
    "MESSAGE_FIELDS",
    "OPERATORS",
    "RULE_DECODE_BUDGET_NS",
    "RULE_DECODE_BURST_NS",
    "RULE_DECODE_MAX_BYTES",
    "RULE_DECODE_SHARE",
    "VALUE_NAMES",
    "EngineViews",
    "Filter",
    "FilterError",
    "ViewProvider",
    "compile_for_engine",
    "engine_views",
    "parse_filter",
]

ViewProvider: TypeAlias = Callable[[Message], "View | None"]
"""Gives the decoded view of a message (a store passes its cache); None when it has none."""

MESSAGE_FIELDS = ("c2s", "s2c", "conn", "dir", "origin", "state", "size", "id", "seq", "bytes", "text")
DECODED_NAMESPACES = ("json", "msgpack", "pickle", "struct", "enet", "godot", "hex")
FIELD_NAMES: tuple[str, ...] = (
    *MESSAGE_FIELDS,
    *DECODED_NAMESPACES,
    "pickle.class",
    "pickle.module",
    "enet.channel",
    "enet.reliable",
    "enet.lane",
    "enet.command",
    "enet.payload",
    "godot.command",
)
"""Names the filter bar can complete (decoded namespaces take a dotted path after them)."""
KEYWORDS = ("and", "or", "not", "contains", "true", "false", "null")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "~", "!~", "contains")
VALUE_NAMES: dict[str, tuple[str, ...]] = {
    "dir": ("c2s", "s2c"),
    "origin": tuple(o.value for o in Origin),
    "state": tuple(s.value for s in MessageState),
}
"""The values a field accepts, for completion after ``dir ==`` etc."""

MAX_NESTING = 64
"""How deep parentheses and ``not``/``!`` may nest, together. Parsing and compiling recurse once per level;
chains of ``and``/``or`` are flat and may be any length."""
MAX_NUMBER_CHARS = 100
"""Longest number literal: enough for any 256-bit value, short of ``int()``'s quadratic conversion."""
RULE_DECODE_BUDGET_NS = 2_000_000
"""Time a rule's filter may spend decoding one message on the relay's thread (2 ms: with the decoders' checking
interval a message costs the relay well under the 10 ms target, and other connections' round trips stay short)."""
RULE_DECODE_MAX_BYTES = 64 << 10
"""Largest message a rule's filter decodes; bigger ones do not match decoded-field conditions (with a warning)."""
RULE_DECODE_SHARE = 0.2
"""Share of the relay's time rules may spend decoding, on average: the credit refills at this rate with the clock.
A game's messages decode in tens of microseconds, so this is thousands of messages per second."""
RULE_DECODE_BURST_NS = 3_000_000
"""Most credit that builds up: what a burst of messages (one read of many, all hostile) may cost the relay before
rules stop decoding until the credit refills. With one message's budget on top, other connections wait at most
about 5 ms."""

_NUMERIC_FIELDS: dict[str, Callable[[Message], int]] = {
    "conn": lambda m: m.conn_id,
    "id": lambda m: m.id,
    "seq": lambda m: m.seq,
}


class FilterError(ValueError):
    """A filter that does not parse; ``column`` (0-based) is where the problem is."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column


# ---------------------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ident number string op ( ) [ ] . eof
    text: str
    col: int
    value: object = None
    raw: bytes = b""
    """For strings: the bytes a ``bytes`` predicate matches (``\\xNN`` is one raw byte, other text is UTF-8)."""


# The lexer's own patterns stay on `re`: each is anchored at the current position and every repeat is followed by
# something its characters cannot be (or by nothing), so a match costs at most a few passes over one token.
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)")
_PATH_INDEX = re.compile(r"\d+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("==", "!=", "<=", ">=", "!~", "=~", "&&", "||", "<", ">", "~", "!", "=")
_SIMPLE_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        prev = tokens[-1].kind if tokens else ""
        if ch == "." and prev in ("ident", "]", "number") and (prev != "number" or tokens[-1].text.isdigit()):
            tokens.append(_Token(".", ".", i))
            i += 1
            continue
        if ch in "()[]":
            tokens.append(_Token(ch, ch, i))
            i += 1
            continue
        if ch in "\"'":
            tok, i = _lex_string(text, i)
            tokens.append(tok)
            continue
        m = _PATH_INDEX.match(text, i) if prev == "." else _NUMBER.match(text, i)
        if m and (ch != "-" or prev not in ("ident", "number", "string", ")", "]")):
            word = m.group()
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] == "_"):
                raise FilterError(f"bad number {_clip(text[i : end + 1])!r}", i)
            if len(word) > MAX_NUMBER_CHARS:
                raise FilterError(f"number too long: {len(word)} characters, at most {MAX_NUMBER_CHARS}", i)
            digits = word.lstrip("-")
            value: object
            if digits[:2].lower() == "0x":
                value = int(word, 16)
            elif any(c in digits for c in ".eE"):
                value = float(word)
            else:
                value = int(word)
            tokens.append(_Token("number", word, i, value))
            i = end
            continue
        m = _IDENT.match(text, i)
        if m:
            tokens.append(_Token("ident", m.group(), i))
            i = m.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, i))
                i += len(op)
                break
        else:
            raise FilterError(f"unexpected character {ch!r}", i)
    tokens.append(_Token("eof", "", n))
    return tokens


def _lex_string(text: str, start: int) -> tuple[_Token, int]:
    quote = text[start]
    i = start + 1
    chars: list[str] = []
    raw = bytearray()
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            s = "".join(chars)
            return _Token("string", text[start : i + 1], start, s, bytes(raw)), i + 1
        if ch == "\\" and i + 1 < n:
            esc = text[i + 1]
            if esc in _SIMPLE_ESCAPES:
                c = _SIMPLE_ESCAPES[esc]
                chars.append(c)
                raw += c.encode()
                i += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            if width is not None:
                digits = text[i + 2 : i + 2 + width]
                if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise FilterError(f"bad \\{esc} escape: expected {width} hex digits", i)
                code = int(digits, 16)
                if code > 0x10FFFF:
                    raise FilterError("bad \\U escape: beyond U+10FFFF", i)
                chars.append(chr(code))
                if esc == "x":
                    raw.append(code)
                else:
                    raw += chr(code).encode("utf-8", "surrogatepass")
                i += 2 + width
                continue
            # Unknown escapes stay as written so regexes like "\d+" work unchanged.
            chars.append("\\" + esc)
            raw += ("\\" + esc).encode("utf-8", "surrogatepass")
            i += 2
            continue
        chars.append(ch)
        raw += ch.encode("utf-8", "surrogatepass")
        i += 1
    raise FilterError("unterminated string", start)


# ---------------------------------------------------------------------------------------------------------
# Parser: builds a small tree of _Node whose leaves already hold their compiled predicates; _plain and
# _with_view then fold it into closures taking (msg), or (msg, get_view) when the filter reads decoded fields.


@dataclass(slots=True)
class _Node:
    kind: str  # "leaf" | "and" | "or" | "not" | "const"
    plain: Callable[[Message], bool] | None = None
    """For message-only leaves: the predicate on the record alone."""
    decoded: Callable[[Message, Callable[[Message], View | None]], bool] | None = None
    children: tuple[_Node, ...] = ()
    value: bool = True


class _Parser:
    def __init__(self, text: str, namespaces: Iterable[str] | None, for_rules: bool = False) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.pos = 0
        self.namespaces_given = set(namespaces) if namespaces is not None else None
        self.fields_needed: set[str] = set()
        self.depth = 0
        self.for_rules = for_rules

    # -- token helpers --

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def at_word(self, *words: str) -> bool:
        t = self.tok
        return t.kind == "ident" and t.text.lower() in words

    def at_op(self, *ops: str) -> bool:
        t = self.tok
        return t.kind == "op" and t.text in ops

    @staticmethod
    def describe(t: _Token) -> str:
        return "the end of the filter" if t.kind == "eof" else repr(_clip(t.text))

    # -- grammar --

    def parse(self) -> _Node:
        if self.tok.kind == "eof":
            return _Node("const", value=True)
        node = self.or_expr()
        if self.tok.kind != "eof":
            t = self.tok
            hint = " (a quoted string?)" if t.kind == "ident" else ""
            raise FilterError(f"unexpected {self.describe(t)}{hint}: expected 'and', 'or' or the end", t.col)
        return node

    def or_expr(self) -> _Node:
        parts = [self.and_expr()]
        while self.at_word("or") or self.at_op("||"):
            op = self.advance()
            if self.tok.kind == "eof":
                raise FilterError(f"expected a condition after {op.text!r}", self.tok.col)
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _Node("or", children=_flat("or", parts))

    def and_expr(self) -> _Node:
        parts = [self.not_expr()]
        while self.at_word("and") or self.at_op("&&"):
            op = self.advance()
            if self.tok.kind == "eof":
                raise FilterError(f"expected a condition after {op.text!r}", self.tok.col)
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else _Node("and", children=_flat("and", parts))

    def not_expr(self) -> _Node:
        if self.at_word("not") or self.at_op("!"):
            op = self.enter()
            if self.tok.kind == "eof":
                raise FilterError(f"expected a condition after {op.text!r}", self.tok.col)
            node = _Node("not", children=(self.not_expr(),))
            self.depth -= 1
            return node
        if self.tok.kind == "(":
            open_tok = self.enter()
            if self.tok.kind == ")":
                raise FilterError("expected a condition inside '()'", self.tok.col)
            node = self.or_expr()
            if self.tok.kind != ")":
                raise FilterError(
                    f"expected ')' to close the '(' at column {open_tok.col}, found {self.describe(self.tok)}",
                    self.tok.col,
                )
            self.advance()
            self.depth -= 1
            return node
        return self.comparison()

    def enter(self) -> _Token:
        """Take a '(' or 'not': one level deeper, refused past MAX_NESTING (parsing recurses per level)."""
        t = self.tok
        if self.depth >= MAX_NESTING:
            raise FilterError(f"nested more than {MAX_NESTING} levels deep (parentheses and 'not' together)", t.col)
        self.depth += 1
        return self.advance()

    def comparison(self) -> _Node:
        t = self.tok
        if t.kind != "ident" or t.text.lower() in ("and", "or", "not", "contains"):
            raise FilterError(f"expected a field name, 'not' or '(', found {self.describe(t)}", t.col)
        name_tok = self.advance()
        path = self.path()
        op_tok: _Token | None = None
        if self.tok.kind == "op" and self.tok.text in ("==", "!=", "<", "<=", ">", ">=", "~", "!~", "=~", "="):
            op_tok = self.advance()
        elif self.at_word("contains"):
            op_tok = self.advance()
        if op_tok is None:
            return self.leaf(name_tok, path, None, None)
        op = {"=": "==", "=~": "~"}.get(op_tok.text, op_tok.text.lower())
        value_tok = self.tok
        if value_tok.kind not in ("string", "number", "ident"):
            raise FilterError(f"expected a value after {op_tok.text!r}", value_tok.col)
        if value_tok.kind == "ident" and value_tok.text.lower() in ("and", "or", "not", "contains"):
            raise FilterError(f"expected a value after {op_tok.text!r}", value_tok.col)
        self.advance()
        return self.leaf(name_tok, path, op, value_tok, op_tok)

    def path(self) -> list[str | int]:
        segs: list[str | int] = []
        while True:
            if self.tok.kind == ".":
                self.advance()
                t = self.tok
                if t.kind == "ident":
                    segs.append(t.text)
                elif t.kind == "number" and isinstance(t.value, int) and t.text.isdigit():
                    segs.append(t.value)
                else:
                    raise FilterError(f"expected a field name after '.', found {self.describe(t)}", t.col)
                self.advance()
            elif self.tok.kind == "[":
                self.advance()
                t = self.tok
                if t.kind == "number" and isinstance(t.value, int):
                    segs.append(t.value)
                elif t.kind == "string":
                    segs.append(str(t.value))
                else:
                    raise FilterError(f"expected an index or a quoted key after '[', found {self.describe(t)}", t.col)
                self.advance()
                if self.tok.kind != "]":
                    raise FilterError(f"expected ']', found {self.describe(self.tok)}", self.tok.col)
                self.advance()
            else:
                return segs

    # -- leaves --

    def leaf(
        self,
        name_tok: _Token,
        path: list[str | int],
        op: str | None,
        value_tok: _Token | None,
        op_tok: _Token | None = None,
    ) -> _Node:
        name = name_tok.text
        lname = name.lower()
        if lname in MESSAGE_FIELDS and not path:
            return _Node("leaf", plain=_message_leaf(lname, name_tok, op, value_tok, op_tok, self.for_rules))
        if lname in MESSAGE_FIELDS:
            raise FilterError(f"{_clip(name)!r} has no sub-fields", name_tok.col)
        if not self.is_namespace(lname):
            choices = list(MESSAGE_FIELDS) + sorted(self.all_namespaces())
            close = difflib.get_close_matches(lname, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; fields are {', '.join(choices)}"
            raise FilterError(f"unknown field {_clip(name)!r}{hint}", name_tok.col)
        self.fields_needed.add(lname)
        test = _value_test(op, value_tok, op_tok, self.for_rules) if op is not None else _truthy
        return _Node("leaf", decoded=_decoded_leaf(lname, tuple(path), test, op is None))

    def all_namespaces(self) -> set[str]:
        if self.namespaces_given is not None:
            return self.namespaces_given
        return set(DECODED_NAMESPACES) | {n for n in default_registry() if n != "text"}

    def is_namespace(self, name: str) -> bool:
        if self.namespaces_given is not None:
            return name in self.namespaces_given
        return name in DECODED_NAMESPACES or name in self.all_namespaces()


def _need_op(name: str, op: str | None, allowed: Iterable[str], tok: _Token | None) -> None:
    if op is not None and op not in allowed:
        col = tok.col if tok is not None else 0
        raise FilterError(f"{name!r} cannot be compared with {op!r}; use {', '.join(allowed)}", col)


def _message_leaf(
    name: str, name_tok: _Token, op: str | None, value_tok: _Token | None, op_tok: _Token | None, bounded: bool
) -> Callable[[Message], bool]:
    if name in ("c2s", "s2c"):
        if op is not None:
            raise FilterError(f"{name!r} is a direction, not a field: write 'dir == {name}'", name_tok.col)
        d = Direction.C2S if name == "c2s" else Direction.S2C
        return lambda m: m.direction is d
    if op is None:
        if name == "size" or name == "bytes":
            return lambda m: len(m.data) > 0
        if name == "text":
            return lambda m: bool(m.data.strip())
        return lambda m: True  # conn/dir/origin/state/id/seq always exist
    assert value_tok is not None
    if name in ("dir", "origin", "state"):
        _need_op(name, op, ("==", "!="), op_tok)
        word = str(value_tok.value if value_tok.kind == "string" else value_tok.text)
        try:
            if name == "dir":
                target: object = Direction.parse(word)
            elif name == "origin":
                target = Origin(word.lower())
            else:
                target = MessageState(word.lower())
        except ValueError:
            raise FilterError(
                f"unknown {name} {_clip(word)!r}: expected one of {', '.join(VALUE_NAMES[name])}", value_tok.col
            ) from None
        attr = {"dir": "direction", "origin": "origin", "state": "state"}[name]
        if op == "==":
            if attr == "direction":
                return lambda m: m.direction is target
            return lambda m: getattr(m, attr) == target
        if attr == "direction":
            return lambda m: m.direction is not target
        return lambda m: getattr(m, attr) != target
    if name in ("size", "conn", "id", "seq"):
        _need_op(name, op, ("==", "!=", "<", "<=", ">", ">="), op_tok)
        if value_tok.kind != "number":
            raise FilterError(f"{name!r} needs a number after {op!r}", value_tok.col)
        n = value_tok.value
        if name == "size":
            return _size_pred(op, n)
        get = _NUMERIC_FIELDS[name]
        cmp = _COMPARE[op]
        return lambda m: cmp(get(m), n)
    # bytes / text
    _need_op(name, op, ("==", "!=", "~", "!~", "contains"), op_tok)
    if value_tok.kind != "string":
        raise FilterError(f"{name!r} needs a quoted string after {op!r}", value_tok.col)
    if name == "bytes":
        raw = value_tok.raw
        if op in ("~", "!~"):
            rx = _compile_regex(raw, value_tok)
            lit = rx.literal
            if lit is not None and not bounded:  # a plain word: the substring test, without a call in between
                if op == "~":
                    return lambda m: lit in m.data
                return lambda m: lit not in m.data
            search = _searcher(rx, bounded)
            if op == "~":
                return lambda m: search(m.data)
            return lambda m: not search(m.data)
        if op == "contains":
            return lambda m: raw in m.data
        if op == "==":
            return lambda m: m.data == raw
        return lambda m: m.data != raw
    s = str(value_tok.value)
    if op in ("~", "!~"):
        ssearch = _searcher(_compile_regex(s, value_tok), bounded)
        if op == "~":
            return lambda m: ssearch(_utf8(m.data))
        return lambda m: not ssearch(_utf8(m.data))
    if op == "contains":
        return lambda m: s in m.data.decode("utf-8", "replace")
    if op == "==":
        return lambda m: m.data.decode("utf-8", "replace") == s
    return lambda m: m.data.decode("utf-8", "replace") != s


def _size_pred(op: str, n: Any) -> Callable[[Message], bool]:
    # One closure per operator: the hot path of a million-row filter is exactly this call.
    if op == ">":
        return lambda m: len(m.data) > n
    if op == ">=":
        return lambda m: len(m.data) >= n
    if op == "<":
        return lambda m: len(m.data) < n
    if op == "<=":
        return lambda m: len(m.data) <= n
    if op == "==":
        return lambda m: len(m.data) == n
    return lambda m: len(m.data) != n


def _compile_regex(pattern: str | bytes, tok: _Token) -> UserRegex:
    try:
        return compile_user_regex(pattern)
    except RegexError as exc:
        # The offset is in the pattern, the column in the filter: escapes make it approximate, never outside.
        col = min(tok.col + 1 + exc.offset, tok.col + len(tok.text) - 1)
        raise FilterError(f"bad regular expression: {exc.message}", max(col, tok.col)) from None


def _searcher(rx: UserRegex, bounded: bool) -> Callable[[bytes], bool]:
    """``rx.search``; for a rule, refusing (RuleUndecided) an input longer than the regex's work bound."""
    search = rx.searcher()
    if not bounded:
        return search
    limit = rx.max_bytes

    def bounded_search(data: bytes) -> bool:
        if len(data) > limit:
            raise RuleUndecided(
                f"message of {_size(len(data))} is too long for the regex {_clip(repr(rx.pattern))}, which rules "
                f"run on at most {_size(limit)} (RE2 program of {rx.program_size} instructions)")
        return search(data)

    return bounded_search


def _utf8(data: bytes) -> bytes:
    """The message as text (bad bytes read as U+FFFD), as the UTF-8 a text regex searches."""
    return data if data.isascii() else data.decode("utf-8", "replace").encode("utf-8")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = (n / 1024, "KiB") if n < 1 << 20 else (n / (1 << 20), "MiB")
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.2g} {unit}"


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return bool(a <= b)


def _gt(a: Any, b: Any) -> bool:
    return bool(a > b)


def _ge(a: Any, b: Any) -> bool:
    return bool(a >= b)


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


def _ne(a: Any, b: Any) -> bool:
    return bool(a != b)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "==": _eq,
    "!=": _ne,
}


# ---------------------------------------------------------------------------------------------------------
# Decoded fields


def _truthy(v: object) -> bool:
    try:
        return bool(v)
    except Exception:  # a stand-in object without __bool__ problems is truthy; be safe anyway
        return True


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _value_test(op: str, tok: _Token | None, op_tok: _Token | None, bounded: bool) -> Callable[[object], bool]:
    assert tok is not None
    lit: object
    if tok.kind == "ident":
        word = tok.text
        lit = {"true": True, "false": False, "null": None, "none": None}.get(word.lower(), word)
        raw = word.encode()
    else:
        lit = tok.value
        raw = tok.raw if tok.kind == "string" else str(tok.value).encode()

    if op in ("~", "!~"):
        pattern = str(lit) if tok.kind == "string" else tok.text
        ssearch = _searcher(_compile_regex(pattern, tok), bounded)
        if tok.kind == "string":
            bsearch = _searcher(_compile_regex(raw, tok), bounded)
        else:  # a bare word or number against bytes: the literal itself

            def bsearch(data: bytes) -> bool:
                return raw in data

        def search(v: object) -> bool:
            if isinstance(v, str):
                return ssearch(v.encode("utf-8", "surrogatepass"))
            if isinstance(v, bytes | bytearray):
                return bsearch(bytes(v))
            if isinstance(v, int | float | bool) or v is None:
                return ssearch(str(v).encode())
            return False

        if op == "~":
            return search
        return lambda v: not search(v)

    if op == "contains":

        def contains(v: object) -> bool:
            if isinstance(v, str):
                return isinstance(lit, str) and lit in v
            if isinstance(v, bytes | bytearray):
                return raw in v
            if isinstance(v, list | tuple | set | frozenset | dict):
                try:
                    return lit in v or (isinstance(lit, str) and raw in v)
                except TypeError:
                    return False
            return False

        return contains

    if op in ("==", "!="):
        # here, not at the top: the decoders load when a filter is first compiled, not with the window
        from inspector.decode import PickleObject

        negate = op == "!="

        def equal(v: object) -> bool:
            if isinstance(v, bytes | bytearray) and isinstance(lit, str):
                same = v == raw
            elif isinstance(v, PickleObject) and isinstance(lit, str):
                same = v.class_name == lit
            else:
                same = v == lit
            return same is not negate

        return equal

    cmp = _COMPARE[op]

    def order(v: object) -> bool:
        if _number(v) and _number(lit):
            return cmp(v, lit)
        if isinstance(v, str) and isinstance(lit, str):
            return cmp(v, lit)
        return False

    if op_tok is not None and not (_number(lit) or isinstance(lit, str)):
        raise FilterError(f"{op!r} needs a number or a string", tok.col)
    return order


def _decoded_leaf(
    ns: str, path: tuple[str | int, ...], test: Callable[[object], bool], bare: bool
) -> Callable[[Message, Callable[[Message], View | None]], bool]:
    def leaf(m: Message, get_view: Callable[[Message], View | None]) -> bool:
        view = get_view(m)  # may raise RuleUndecided (a rule that cannot decode this message): it must propagate
        if view is None or view.error is not None or view.decoder != ns:
            return False
        if bare and not path:
            return True
        for root in view.values:
            try:
                v = resolve(root, path) if path else root
                if v is not MISSING and test(v):
                    return True
            except RuleUndecided:
                raise
            except Exception:  # exotic values (a cyclic list compared to a list) never break a filter
                continue
        return False

    return leaf


# ---------------------------------------------------------------------------------------------------------
# Compilation


def _flat(kind: str, parts: list[_Node]) -> tuple[_Node, ...]:
    """Children of an n-ary and/or node, with same-kind children spliced in: ``(a and b) and c`` is one node."""
    out: list[_Node] = []
    for p in parts:
        if p.kind == kind:
            out.extend(p.children)
        else:
            out.append(p)
    return tuple(out)


def _plain(node: _Node) -> Callable[[Message], bool]:
    """Closures on the record alone (the filter needs no decoding)."""
    if node.kind == "const":
        v = node.value
        return lambda m: v
    if node.kind == "leaf":
        assert node.plain is not None
        return node.plain
    if node.kind == "not":
        f = _plain(node.children[0])
        return lambda m: not f(m)
    fs = [_plain(c) for c in node.children]
    return _all(fs) if node.kind == "and" else _any(fs)


# One closure per operand count up to three (the usual filter) beats a loop; longer chains loop, so a chain of any
# length costs one Python frame, never one per operand.


def _all(fs: list[Callable[[Message], bool]]) -> Callable[[Message], bool]:
    if len(fs) == 2:
        a, b = fs
        return lambda m: a(m) and b(m)
    if len(fs) == 3:
        a, b, c = fs
        return lambda m: a(m) and b(m) and c(m)
    chain = tuple(fs)

    def all_(m: Message) -> bool:
        for f in chain:
            if not f(m):
                return False
        return True

    return all_


def _any(fs: list[Callable[[Message], bool]]) -> Callable[[Message], bool]:
    if len(fs) == 2:
        a, b = fs
        return lambda m: a(m) or b(m)
    if len(fs) == 3:
        a, b, c = fs
        return lambda m: a(m) or b(m) or c(m)
    chain = tuple(fs)

    def any_(m: Message) -> bool:
        for f in chain:
            if f(m):
                return True
        return False

    return any_


Decoded = Callable[[Message, Callable[[Message], "View | None"]], bool]


def _with_view(node: _Node) -> Decoded:
    """Closures that also take a view getter (the filter uses decoded fields)."""
    if node.kind == "const":
        v = node.value
        return lambda m, g: v
    if node.kind == "leaf":
        if node.decoded is not None:
            return node.decoded
        plain = node.plain
        assert plain is not None
        return lambda m, g: plain(m)
    if node.kind == "not":
        f = _with_view(node.children[0])
        return lambda m, g: not f(m, g)
    fs = [_with_view(c) for c in node.children]
    return _vall(fs) if node.kind == "and" else _vany(fs)


def _vall(fs: list[Decoded]) -> Decoded:
    if len(fs) == 2:
        a, b = fs
        return lambda m, g: a(m, g) and b(m, g)
    chain = tuple(fs)

    def all_(m: Message, g: Callable[[Message], View | None]) -> bool:
        for f in chain:
            if not f(m, g):
                return False
        return True

    return all_


def _vany(fs: list[Decoded]) -> Decoded:
    if len(fs) == 2:
        a, b = fs
        return lambda m, g: a(m, g) or b(m, g)
    chain = tuple(fs)

    def any_(m: Message, g: Callable[[Message], View | None]) -> bool:
        for f in chain:
            if f(m, g):
                return True
        return False

    return any_


def _default_provider(msg: Message) -> View | None:
    return default_registry().decode_message(msg, detail=False)


class _OneView:
    """Decodes a message at most once while one filter evaluates it."""

    __slots__ = ("_msg", "_provider", "_view")

    def __init__(self, provider: ViewProvider) -> None:
        self._provider = provider
        self._msg: Message | None = None
        self._view: View | None = None

    def __call__(self, msg: Message) -> View | None:
        if self._msg is not msg:
            self._view = self._provider(msg)
            self._msg = msg
        return self._view


class EngineViews:
    """The view provider of filters used as rules, on the relay's thread: bounded, and shared by the rules.

    A message is decoded at most once however many rules read decoded fields (the relay hands every rule the same
    record), only if it is at most ``max_bytes`` long, with a deadline ``budget_ns`` from now, and only while the
    rules have credit left: decoding may take :data:`RULE_DECODE_SHARE` of the relay's time on average and
    :data:`RULE_DECODE_BURST_NS` at once (a read of many hostile messages, each within its budget, would otherwise
    hold every connection for the sum). Past any of these it raises :class:`~proxy.model.RuleUndecided` saying
    why: the rule does not match and the relay warns once. ``clock`` is ``time.monotonic_ns`` but for tests.
    """

    __slots__ = ("_at", "_clock", "_credit", "_last", "_registry", "_warm", "budget_ns", "max_bytes")

    def __init__(self, registry: DecoderRegistry | None = None, budget_ns: int = RULE_DECODE_BUDGET_NS,
                 max_bytes: int = RULE_DECODE_MAX_BYTES, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._registry = registry
        self.budget_ns = budget_ns
        self.max_bytes = max_bytes
        self._clock = clock
        self._credit = float(RULE_DECODE_BURST_NS)
        self._at = clock()
        self._warm = False
        self._last: tuple[Message, View | str] | None = None
        """The last message and its view, or why it has none. Holding the record keeps its identity unique."""

    def __call__(self, msg: Message) -> View:
        last = self._last
        if last is not None and last[0] is msg:
            got = last[1]
        else:
            got = self._decode(msg)
            self._last = (msg, got)
        if isinstance(got, str):
            raise RuleUndecided(got)  # a fresh exception each time: re-raising one would grow its traceback
        return got

    def warm(self) -> None:
        """Build the registry and run each decoder once now (when a rule is set), so that the first message a rule
        decodes does not pay for imports and first calls (about 25 ms) on the relay's time."""
        if self._warm:
            return
        self._warm = True
        if self._registry is not None:
            return  # a registry of one's own (a plugin's, a test's) is warmed by whoever built it
        registry = default_registry()
        for sample in (b'{"type": "x"}', b"\x81\xa4type\xa1x", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.",
                       b"hello"):
            try:
                registry.decode(sample)
            except Exception:
                pass
        self._at = self._clock()

    def has_credit(self) -> bool:
        """Whether the next message would be decoded (the credit has refilled since the last burst)."""
        return self._credit + (self._clock() - self._at) * RULE_DECODE_SHARE > 0

    def _decode(self, msg: Message) -> View | str:
        n = len(msg.data)
        if n > self.max_bytes:
            return f"message of {_size(n)} is larger than the {_size(self.max_bytes)} that rules decode"
        now = self._clock()
        credit = min(float(RULE_DECODE_BURST_NS), self._credit + (now - self._at) * RULE_DECODE_SHARE)
        self._at = now
        if credit <= 0:
            self._credit = credit
            return (f"message {msg.id} was not decoded: rule filters used their share of the relay's time "
                    f"({RULE_DECODE_SHARE:.0%}, {RULE_DECODE_BURST_NS / 1e6:g} ms at once) on messages just before it")
        registry = self._registry if self._registry is not None else default_registry()
        view = registry.decode_message(msg, detail=False, deadline_ns=now + min(self.budget_ns, int(credit) + 1))
        end = self._clock()
        # One decode past its deadline (a single C call is not interrupted) costs at most one burst of debt.
        self._credit = max(-float(RULE_DECODE_BURST_NS), credit - (end - now))
        self._at = end
        if gave_up(view):
            return f"rule filter gave up decoding message {msg.id} ({view.decoder}, {self.budget_ns / 1e6:g} ms budget)"
        return view


_ENGINE_VIEWS = EngineViews()
"""What rules compiled by :func:`compile_for_engine` share (one engine thread per process)."""


def engine_views() -> EngineViews:
    """The views (and decoding credit) that rules compiled by :func:`compile_for_engine` share."""
    return _ENGINE_VIEWS


class Filter:
    """A compiled filter. Build with :func:`parse_filter`."""

    __slots__ = ("_fast", "_for_rules", "_namespaces", "_slow", "fields_needed", "needs_decode", "text")

    def __init__(self, text: str, node: _Node, fields_needed: set[str], namespaces: tuple[str, ...] | None = None,
                 for_rules: bool = False) -> None:
        self.text = text
        self.fields_needed: frozenset[str] = frozenset(fields_needed)
        """Decoder namespaces the filter reads, e.g. ``{"json"}``."""
        self.needs_decode = bool(fields_needed)
        self._fast: Callable[[Message], bool] | None = None if self.needs_decode else _plain(node)
        self._slow: Decoded | None = _with_view(node) if self.needs_decode else None
        self._namespaces = namespaces
        self._for_rules = for_rules
        """Compiled with the rules' bounds (regex work): see :meth:`to_engine_predicate`."""

    def matches(self, msg: Message, view_provider: ViewProvider | None = None) -> bool:
        """Whether ``msg`` passes. ``view_provider`` is asked for a decoded view only if a decoded field is
        reached (default: decode with the default registry)."""
        fast = self._fast
        if fast is not None:
            return fast(msg)
        assert self._slow is not None
        return self._slow(msg, _OneView(view_provider or _default_provider))

    def predicate(self, view_provider: ViewProvider | None = None) -> Callable[[Message], bool]:
        """A plain one-argument predicate; for message-only filters this is the compiled closure itself."""
        if self._fast is not None:
            return self._fast
        slow = self._slow
        assert slow is not None
        provider = view_provider or _default_provider
        return lambda m: slow(m, _OneView(provider))

    def to_engine_predicate(self, views: EngineViews | None = None) -> Callable[[Message], bool]:
        """For the proxy's rule slot, on the relay's thread: a ``Callable[[Message], bool]`` whose work is bounded.

        Decoded fields come from ``views`` (default: the default registry, shared by every rule; see
        :class:`EngineViews`) and regexes refuse inputs past their work bound; either way the predicate raises
        :class:`~proxy.model.RuleUndecided`, which the relay reads as "no match" plus a one-time warning.
        """
        if not self._for_rules:
            return _parse(self.text, self._namespaces, for_rules=True).to_engine_predicate(views)
        if self._fast is not None:
            return self._fast
        slow = self._slow
        assert slow is not None
        provider = views if views is not None else _ENGINE_VIEWS
        provider.warm()
        return lambda m: slow(m, provider)

    def select(self, messages: Iterable[Message], view_provider: ViewProvider | None = None) -> list[Message]:
        pred = self.predicate(view_provider)
        return [m for m in messages if pred(m)]

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def parse_filter(text: str, namespaces: Iterable[str] | None = None) -> Filter:
    """Compile ``text``; an empty filter matches everything. Raises :class:`FilterError`.

    ``namespaces`` limits the decoder names allowed before a dotted path (default: the built-ins plus the
    default registry's plugins).
    """
    return _parse(text, namespaces, for_rules=False)


def _parse(text: str, namespaces: Iterable[str] | None, *, for_rules: bool) -> Filter:
    names = tuple(namespaces) if namespaces is not None else None
    parser = _Parser(text, names, for_rules)
    try:
        node = parser.parse()
    except RecursionError:  # MAX_NESTING keeps parsing far from the limit; this is a last resort
        raise FilterError("filter nested too deeply", 0) from None
    return Filter(text, node, parser.fields_needed, names, for_rules)


def compile_for_engine(text: str) -> Callable[[Message], bool]:
    """Filter compiler for the engine's rule slot (entry point ``sockscope.filter_compilers``).

    Lets a rule sent over the control protocol carry ``json.type == "ping"``: the proxy process loads this through
    the entry point, so ``proxy/`` itself never imports ``inspector``. The predicate is bounded as
    :meth:`Filter.to_engine_predicate` says.
    """
    return _parse(text, None, for_rules=True).to_engine_predicate()

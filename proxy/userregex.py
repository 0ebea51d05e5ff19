"""User-written regular expressions that run on traffic: RE2 (linear time), clear errors, a work bound for rules.

Role: :func:`compile_user_regex` turns the pattern of a filter (``text ~ "…"``, ``bytes ~ "…"``) or of a rule's
``bytes_regex`` into a :class:`UserRegex` backed by Google's RE2, whose search time is linear in the input: no
pattern can backtrack exponentially (``(a+)+$`` on 31 bytes took 95 s with ``re``). What RE2 cannot do
(backreferences, lookaround, atomic groups, possessive quantifiers, conditionals, ``\\Z`` …) is refused at compile
time with a :class:`RegexError` naming the construct, never run on ``re`` instead; a pattern whose compiled program
would pass :data:`MAX_MEM` is refused as too large.

Linear is not the whole story on the relay's thread: RE2's cost per byte grows with the size of the compiled
program when its DFA cannot cache the states (a 27-instruction pattern can cost 170 ns per byte, a
2,000-instruction one 15 µs), so :attr:`UserRegex.max_bytes` is the longest input one search may read within
:data:`RULE_REGEX_WORK`; rules do not run a regex on a longer message (they say so instead).

Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: any; a :class:`UserRegex` is immutable and RE2 objects may be searched from several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable

import re2

__all__ = ["MAX_MEM", "MAX_PATTERN", "RULE_REGEX_WORK", "RegexError", "UserRegex", "compile_user_regex"]

MAX_MEM = 1 << 20
"""RE2's memory budget per pattern (compiled program plus DFA cache). A pattern whose program does not fit is
refused; a bigger budget would also make a thrashing DFA slower, not faster."""

MAX_PATTERN = 4 << 10
"""Longest pattern accepted, in bytes: compiling is linear in the pattern, but rules compile on the relay's loop."""

RULE_REGEX_WORK = 500_000
"""Bytes searched times program instructions that one rule regex may cost per message. The worst patterns found
(DFA thrashing, then RE2's NFA) cost about 8 ns per unit on the 2-core test machine, so a search stays under about
4 ms; ``"type":\\s*"ping"`` (20 instructions) reads up to 25 KB. A plain word is a substring test, counted as one
unit per 8 bytes (4 MB)."""

_METACHARACTERS = frozenset(b"\\.^$|?*+()[]{}")
_ANCHOR = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


class RegexError(ValueError):
    """A pattern RE2 cannot compile; ``message`` says why in the user's terms, ``offset`` is where (0-based, in the
    pattern), when known."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class UserRegex:
    """A compiled user pattern. ``search`` answers only "is there a match" (captures are never computed)."""

    __slots__ = ("_compiled", "_fallback", "_match", "literal", "max_bytes", "pattern", "program_size",
                 "text_pattern")

    def __init__(self, pattern: str | bytes, compiled: object, encoded: bytes) -> None:
        self.pattern = pattern
        self._compiled = compiled
        self.text_pattern = isinstance(pattern, str)
        """A str pattern is UTF-8 (``.`` is one character) and searches UTF-8 bytes; a bytes pattern is Latin-1
        (``.`` is one byte)."""
        self.program_size: int = compiled.programsize  # type: ignore[attr-defined]
        # The most common pattern is a plain word ("tick"): a substring test gives the same answer at a fifth of
        # the cost of a call into RE2, and is linear too.
        self.literal: bytes | None = encoded if not _METACHARACTERS.intersection(encoded) else None
        """The pattern's bytes when it has no metacharacter: searching is then a substring test."""
        self.max_bytes = RULE_REGEX_WORK * 8 if self.literal is not None else RULE_REGEX_WORK // self.program_size
        """The longest input a rule searches with this pattern (see :data:`RULE_REGEX_WORK`)."""
        # The module's search() wraps every call in a generator and a match object; the underlying RE2 object's
        # Match() is half the cost. It is not public API, so fall back to search() if a release renames it.
        raw = getattr(compiled, "_regexp", None)
        self._match = getattr(raw, "Match", None) if _ANCHOR is not None else None
        self._fallback = compiled.search  # type: ignore[attr-defined]

    def search(self, data: bytes) -> bool:
        """Whether the pattern occurs in ``data`` (UTF-8 bytes for a str pattern)."""
        lit = self.literal
        if lit is not None:
            return lit in data
        m = self._match
        if m is not None:
            return bool(m(_ANCHOR, data, 0, len(data))[0][0] >= 0)
        return self._fallback(data) is not None

    def searcher(self) -> Callable[[bytes], bool]:
        """:meth:`search` as the cheapest callable for this pattern (for closures run once per message)."""
        lit = self.literal
        if lit is not None:
            return lambda data: lit in data
        m = self._match
        if m is not None:
            anchor = _ANCHOR
            return lambda data: m(anchor, data, 0, len(data))[0][0] >= 0  # type: ignore[no-any-return]
        return self.search

    def first_group(self, data: bytes) -> bytes | None:
        """The text of the first group of the first match (the whole match when the pattern has no group), or
        None when there is no match. Only for patterns compiled with ``capture=True``."""
        m = self._compiled.search(data)  # type: ignore[attr-defined]
        if m is None:
            return None
        if self._compiled.groups:  # type: ignore[attr-defined]
            g = m.group(1)
            return g if g is not None else b""
        return m.group(0)  # type: ignore[no-any-return]

    def search_text(self, text: str) -> bool:
        """Whether the pattern occurs in ``text`` (lone surrogates never match anything)."""
        return self.search(text.encode("utf-8", "surrogatepass"))

    def __repr__(self) -> str:
        return f"UserRegex({self.pattern!r})"


def compile_user_regex(pattern: str | bytes, *, dotall: bool = False, capture: bool = False) -> UserRegex:
    """Compile ``pattern`` with RE2. ``dotall``: ``.`` matches a newline too; ``capture``: groups are tracked, for
    :meth:`UserRegex.first_group` (searching costs more). Raises :class:`RegexError`."""
    if isinstance(pattern, str):
        try:
            encoded = pattern.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RegexError(f"the pattern holds {pattern[e.start]!r}, a lone surrogate, which is not text RE2 "
                             "can match (write a whole character, or search bytes with \\xNN)", e.start) from None
    else:
        encoded = bytes(pattern)
    if len(encoded) > MAX_PATTERN:
        raise RegexError(f"the pattern is too large: {len(encoded)} bytes, at most {MAX_PATTERN}", MAX_PATTERN)
    options = re2.Options()
    options.log_errors = False  # RE2 would print every bad pattern on stderr
    options.max_mem = MAX_MEM
    options.never_capture = not capture  # usually only "does it match" is asked: no submatch tracking
    options.dot_nl = dotall
    if not isinstance(pattern, str):
        options.encoding = re2.Options.Encoding.LATIN1  # bytes: one byte is one character, any byte value
    try:
        compiled = re2.compile(encoded, options)
    except re2.error as e:
        raise _explain(_text(e), encoded) from None
    return UserRegex(pattern, compiled, encoded)


def _text(e: BaseException) -> str:
    arg = e.args[0] if e.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


_SEE = "RE2, the linear-time engine filters and rules use, does not support"

_PERL_OPERATORS = {
    "(?=": "lookahead (?=…)",
    "(?!": "negative lookahead (?!…)",
    "(?<=": "lookbehind (?<=…)",
    "(?<!": "negative lookbehind (?<!…)",
    "(?>": "atomic group (?>…)",
    "(?(": "conditional (?(…)…|…)",
    "(?#": "comment (?#…)",
    "(?P=": "named backreference (?P=name)",
    "(?P>": "recursion (?P>name)",
    "(?R": "recursion (?R)",
    "(?x": "verbose flag (?x)",
}


def _explain(error: str, pattern: bytes) -> RegexError:
    """RE2's terse error (``invalid perl operator: (?<=``) as a sentence naming what the user wrote."""
    code, _, arg = error.partition(": ")
    where = pattern.find(arg.encode("utf-8", "surrogateescape")) if arg else -1
    offset = max(where, 0)
    if code == "invalid perl operator":
        # RE2 quotes only a prefix ("(?P" for "(?P=name)"), so look for the whole construct in the pattern.
        for prefix, name in _PERL_OPERATORS.items():
            if prefix.startswith(arg) or arg.startswith(prefix):
                at = pattern.find(prefix.encode())
                if at >= 0:
                    return RegexError(f"{_SEE} the {name}", at)
        return RegexError(f"{_SEE} the group or flag syntax {arg}…: its flags are i, m, s and U, as in (?i)", offset)
    if code == "invalid escape sequence":
        esc = arg[1:2]
        if esc.isdigit() and esc != "0":
            return RegexError(f"{_SEE} backreferences ({arg}): a regex cannot refer to what it matched", offset)
        if esc == "g":
            return RegexError(f"{_SEE} backreferences (\\g<…>): a regex cannot refer to what it matched", offset)
        if esc == "Z":
            return RegexError(f"{_SEE} \\Z; write \\z for the end of text", offset)
        if esc in ("u", "U", "N"):
            return RegexError(f"{_SEE} the escape {arg}: write \\x{{…}} with the code point in hex", offset)
        return RegexError(f"{_SEE} the escape {arg}", offset)
    if code == "bad repetition operator":
        if arg.endswith("+") and len(arg) == 2:
            return RegexError(f"{_SEE} the possessive quantifier {arg}", offset)
        return RegexError(f"{arg} repeats a repetition; group it first, as (?:a*)*", offset)
    if code == "invalid repetition size":
        return RegexError(f"the repetition {arg} is too large: RE2 allows counts up to 1000, and nested "
                          "repetitions multiply ((a{10}){200} counts 2000)", offset)
    if code == "pattern too large - compile failed":
        return RegexError(f"the pattern is too large: its compiled program needs more than {MAX_MEM >> 20} MiB", 0)
    if code == "missing ]":
        return RegexError("missing ] to close the character class", offset)
    if code == "missing )":
        return RegexError("missing ) to close a group", _unbalanced(pattern)[0])
    if code in ("unexpected )", "missing ("):
        return RegexError(") closes a group that was never opened", _unbalanced(pattern)[1])
    if code == "trailing \\":
        return RegexError("the pattern ends with a lone backslash", len(pattern) - 1)
    if code == "no argument for repetition operator":
        return RegexError(f"nothing to repeat before {arg}", offset)
    if code == "invalid character class range":
        return RegexError(f"the character range {arg} is backwards or invalid", offset)
    if code == "invalid UTF-8":
        return RegexError("the pattern is not valid UTF-8", offset)
    if code == "invalid named capture group":
        return RegexError(f"bad group name in {arg}", offset)
    return RegexError(error, offset)


def _unbalanced(pattern: bytes) -> tuple[int, int]:
    """Where the last unclosed ``(`` and the first unopened ``)`` are (0 when none), skipping escapes and classes."""
    opened: list[int] = []
    stray = -1
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x5C:  # backslash: the next byte is escaped
            i += 2
            continue
        if c == 0x5B:  # [ … ]: a ']' right after '[' or '[^' is a literal
            i += 1
            if i < n and pattern[i] == 0x5E:
                i += 1
            if i < n and pattern[i] == 0x5D:
                i += 1
            while i < n and pattern[i] != 0x5D:
                i += 2 if pattern[i] == 0x5C else 1
        elif c == 0x28:
            opened.append(i)
        elif c == 0x29:
            if opened:
                opened.pop()
            elif stray < 0:
                stray = i
        i += 1
    return (opened[-1] if opened else 0), max(stray, 0)

"""ENet's range coder, decompression only: what ``enet_host_compress_with_range_coder`` (pyenet's
``Host.compress_with_range_coder()``, Godot's ``COMPRESS_RANGE_CODER``) does to a datagram's commands, undone.

Role: a port of ``enet_range_coder_decompress`` (lsalzman/enet compress.c: an adaptive order-2 PPM model driving a
range coder, 4096 symbols, no context exclusion) to Python, field for field, with the C types' widths kept (32-bit
coder state, 16-bit counts and totals, 8-bit symbol counts), so that it gives the bytes ENet gives or says it
cannot. Bounded: at most ``limit`` bytes out (ENet's MTU), and at most ``MAX_WORK`` model steps, past which it gives
up (a hostile stream can make every byte walk a degenerate tree); corrupt input is a failure, never an exception.
Must not import: Qt, ``proxy``.
Thread: any thread; pure (the model lives in the call).
"""

from __future__ import annotations

import time
from typing import Final

TOP: Final = 1 << 24
BOTTOM: Final = 1 << 16
SYMBOL_DELTA: Final = 3  # ENET_CONTEXT_SYMBOL_DELTA
SYMBOL_MINIMUM: Final = 1  # ENET_CONTEXT_SYMBOL_MINIMUM
ESCAPE_MINIMUM: Final = 1  # ENET_CONTEXT_ESCAPE_MINIMUM
SUB_ORDER: Final = 2  # ENET_SUBCONTEXT_ORDER
SUB_SYMBOL_DELTA: Final = 2  # ENET_SUBCONTEXT_SYMBOL_DELTA
SUB_ESCAPE_DELTA: Final = 5  # ENET_SUBCONTEXT_ESCAPE_DELTA
SYMBOLS: Final = 4096
MAX_WORK: Final = 60_000
"""Model steps (tree nodes visited, rescaled) one decompression may take: five times what a 4 KB datagram of real
traffic needs (about 3 a byte; 1.5 ms for 1400 bytes), some 40 ms in all."""
_M32: Final = 0xFFFFFFFF
_M16: Final = 0xFFFF


class Corrupt(ValueError):
    """Not a range-coded stream (or a cut one), or too costly to decode."""


def decompress(data: bytes, limit: int, work: int = MAX_WORK, deadline_ns: int | None = None) -> bytes:
    """The bytes ``data`` decompresses to, at most ``limit`` of them, within ``work`` model steps and before
    ``deadline_ns`` (``time.monotonic_ns()``); :class:`Corrupt` when it cannot be done."""
    try:
        return _Decoder(data, limit, work, deadline_ns).run()
    except (ZeroDivisionError, IndexError, RecursionError) as e:
        raise Corrupt(f"not range-coded ({type(e).__name__})") from None


class _Decoder:
    __slots__ = ("code", "count", "data", "deadline", "escapes", "left", "limit", "low", "max_work", "n", "next",
                 "parent", "pos", "range", "right", "symbols", "total", "under", "value", "work")

    def __init__(self, data: bytes, limit: int, work: int, deadline_ns: int | None = None) -> None:
        self.data, self.n, self.limit, self.max_work = data, len(data), limit, work
        self.deadline = deadline_ns
        self.pos = 0
        self.low, self.code, self.range = 0, 0, _M32
        z = [0] * SYMBOLS
        self.value, self.count, self.under = z[:], z[:], z[:]
        self.left, self.right, self.symbols = z[:], z[:], z[:]
        self.escapes, self.total, self.parent = z[:], z[:], z
        self.next = 0
        self.work = 0

    def create(self, value: int, count: int) -> int:
        i = self.next
        self.next = i + 1
        self.value[i], self.count[i], self.under[i] = value & 0xFF, count & 0xFF, count & _M16
        self.left[i] = self.right[i] = self.symbols[i] = self.escapes[i] = self.total[i] = self.parent[i] = 0
        return i

    def context(self, escapes: int, minimum: int) -> int:
        i = self.create(0, 0)
        self.escapes[i] = escapes
        self.total[i] = (escapes + 256 * minimum) & _M16
        return i

    def rescale_tree(self, i: int) -> int:
        total = 0
        count, under, left, right = self.count, self.under, self.left, self.right
        while True:
            self.work += 1
            count[i] = (count[i] - (count[i] >> 1)) & 0xFF
            under[i] = count[i]
            if left[i]:
                under[i] = (under[i] + self.rescale_tree(i + left[i])) & _M16
            total = (total + under[i]) & _M16
            if not right[i]:
                return total
            i += right[i]

    def rescale(self, ctx: int, minimum: int) -> None:
        self.total[ctx] = self.rescale_tree(ctx + self.symbols[ctx]) if self.symbols[ctx] else 0
        self.escapes[ctx] = (self.escapes[ctx] - (self.escapes[ctx] >> 1)) & _M16
        self.total[ctx] = (self.total[ctx] + self.escapes[ctx] + 256 * minimum) & _M16

    def read(self, total: int) -> int:
        self.range = (self.range // total) & _M32
        return (((self.code - self.low) & _M32) // self.range) & _M16

    def decode(self, under: int, count: int) -> None:
        low = (self.low + under * self.range) & _M32
        rng = (self.range * count) & _M32
        code, data, pos, n = self.code, self.data, self.pos, self.n
        while True:
            if (low ^ ((low + rng) & _M32)) >= TOP:
                if rng >= BOTTOM:
                    break
                rng = (-low) & (BOTTOM - 1)
            code = (code << 8) & _M32
            if pos < n:
                code |= data[pos]
                pos += 1
            rng = (rng << 8) & _M32
            low = (low << 8) & _M32
        self.low, self.range, self.code, self.pos = low, rng, code, pos

    def run(self) -> bytes:
        data, n = self.data, self.n
        if not n:
            raise Corrupt("empty")
        value, count, under, left, right = self.value, self.count, self.under, self.left, self.right
        symbols, escapes, total, parent = self.symbols, self.escapes, self.total, self.parent
        root = self.context(ESCAPE_MINIMUM, SYMBOL_MINIMUM)
        for shift in (24, 16, 8, 0):
            if self.pos < n:
                self.code |= data[self.pos] << shift
                self.pos += 1
        out = bytearray()
        predicted = 0
        order = 0
        while True:
            if self.work > self.max_work:
                raise Corrupt(f"more than {self.max_work} steps to decode")
            if self.deadline is not None and not len(out) & 255 and time.monotonic_ns() > self.deadline:
                raise Corrupt("past the decoding deadline")
            sub = predicted
            found = False
            sym = val = under_ = count_ = 0
            while sub != root:
                self.work += 1
                esc, tot = escapes[sub], total[sub]
                if esc <= 0 or esc >= tot:
                    sub = parent[sub]
                    continue
                code = self.read(tot)
                if code < esc:
                    self.decode(0, esc)
                    sub = parent[sub]
                    continue
                code = (code - esc) & _M16
                if not symbols[sub]:
                    raise Corrupt("a symbol outside its context")
                node = sub + symbols[sub]
                under_ = 0
                count_ = 0
                while True:
                    self.work += 1
                    after = (under_ + under[node]) & _M16  # (value + 1) * minimum, minimum 0 here
                    before = count[node]
                    if code >= after:
                        under_ = (under_ + under[node]) & _M16
                        if right[node]:
                            node += right[node]
                            continue
                        raise Corrupt("a symbol outside its context")
                    if code < after - before:
                        under[node] = (under[node] + SUB_SYMBOL_DELTA) & _M16
                        if left[node]:
                            node += left[node]
                            continue
                        raise Corrupt("a symbol outside its context")
                    val = value[node]
                    count_ = (count_ + count[node]) & _M16
                    under_ = (after - before) & _M16
                    under[node] = (under[node] + SUB_SYMBOL_DELTA) & _M16
                    count[node] = (count[node] + SUB_SYMBOL_DELTA) & 0xFF
                    sym = node
                    break
                self.decode((esc + under_) & _M16, count_)
                total[sub] = (total[sub] + SUB_SYMBOL_DELTA) & _M16
                if count_ > 0xFF - 2 * SUB_SYMBOL_DELTA or total[sub] > BOTTOM - 0x100:
                    self.rescale(sub, 0)
                found = True
                break
            if not found:
                tot = total[root]
                code = self.read(tot)
                if code < escapes[root]:
                    self.decode(0, escapes[root])
                    return bytes(out)  # the end of the stream
                code = (code - escapes[root]) & _M16
                under_ = 0
                count_ = SYMBOL_MINIMUM
                if not symbols[root]:
                    val = code // SYMBOL_MINIMUM
                    under_ = code - code % SYMBOL_MINIMUM
                    sym = self.create(val, SYMBOL_DELTA)
                    symbols[root] = sym - root
                else:
                    node = root + symbols[root]
                    while True:
                        self.work += 1
                        after = (under_ + under[node] + (value[node] + 1) * SYMBOL_MINIMUM) & _M16
                        before = count[node] + SYMBOL_MINIMUM
                        if code >= after:
                            under_ = (under_ + under[node]) & _M16
                            if right[node]:
                                node += right[node]
                                continue
                            val = value[node] + 1 + (code - after) // SYMBOL_MINIMUM
                            under_ = (code - (code - after) % SYMBOL_MINIMUM) & _M16
                            sym = self.create(val, SYMBOL_DELTA)
                            right[node] = sym - node
                        elif code < after - before:
                            under[node] = (under[node] + SYMBOL_DELTA) & _M16
                            if left[node]:
                                node += left[node]
                                continue
                            val = value[node] - 1 - (after - before - code - 1) // SYMBOL_MINIMUM
                            under_ = (code - (after - before - code - 1) % SYMBOL_MINIMUM) & _M16
                            sym = self.create(val, SYMBOL_DELTA)
                            left[node] = sym - node
                        else:
                            val = value[node]
                            count_ = (count_ + count[node]) & _M16
                            under_ = (after - before) & _M16
                            under[node] = (under[node] + SYMBOL_DELTA) & _M16
                            count[node] = (count[node] + SYMBOL_DELTA) & 0xFF
                            sym = node
                        break
                self.decode((escapes[root] + under_) & _M16, count_)
                total[root] = (total[root] + SYMBOL_DELTA) & _M16
                if count_ > 0xFF - 2 * SYMBOL_DELTA + SYMBOL_MINIMUM or total[root] > BOTTOM - 0x100:
                    self.rescale(root, SYMBOL_MINIMUM)
                sub = root
            val &= 0xFF
            bottom = sym
            # patchContexts: teach the value to the contexts below the one that knew it
            patch = predicted
            parent_of = -1  # -1: ``predicted`` itself, else the symbol whose parent is set next
            while patch != sub:
                self.work += 1
                u = 0
                c = 0
                if not symbols[patch]:
                    s = self.create(val, SUB_SYMBOL_DELTA)
                    symbols[patch] = s - patch
                else:
                    node = patch + symbols[patch]
                    while True:
                        self.work += 1
                        if val < value[node]:
                            under[node] = (under[node] + SUB_SYMBOL_DELTA) & _M16
                            if left[node]:
                                node += left[node]
                                continue
                            s = self.create(val, SUB_SYMBOL_DELTA)
                            left[node] = s - node
                        elif val > value[node]:
                            u = (u + under[node]) & _M16
                            if right[node]:
                                node += right[node]
                                continue
                            s = self.create(val, SUB_SYMBOL_DELTA)
                            right[node] = s - node
                        else:
                            c = (c + count[node]) & _M16
                            u = (u + under[node] - count[node]) & _M16
                            under[node] = (under[node] + SUB_SYMBOL_DELTA) & _M16
                            count[node] = (count[node] + SUB_SYMBOL_DELTA) & 0xFF
                            s = node
                        break
                if parent_of < 0:
                    predicted = s
                else:
                    parent[parent_of] = s
                parent_of = s
                if c <= 0:
                    escapes[patch] = (escapes[patch] + SUB_ESCAPE_DELTA) & _M16
                    total[patch] = (total[patch] + SUB_ESCAPE_DELTA) & _M16
                total[patch] = (total[patch] + SUB_SYMBOL_DELTA) & _M16
                if c > 0xFF - 2 * SUB_SYMBOL_DELTA or total[patch] > BOTTOM - 0x100:
                    self.rescale(patch, 0)
                patch = parent[patch]
            if parent_of < 0:
                predicted = bottom
            else:
                parent[parent_of] = bottom
            if len(out) >= self.limit:
                raise Corrupt(f"more than {self.limit} bytes")
            out.append(val)
            if order >= SUB_ORDER:
                predicted = parent[predicted]
            else:
                order += 1
            if self.next >= SYMBOLS - SUB_ORDER:  # ENET_RANGE_CODER_FREE_SYMBOLS
                self.next = 0
                root = self.context(ESCAPE_MINIMUM, SYMBOL_MINIMUM)
                predicted = 0
                order = 0

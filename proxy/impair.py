"""Impairments of one direction of one UDP flow: what happens to each datagram, and when it leaves.

Role: :class:`DirectionImpairer` turns :class:`proxy.conditions.DirectionConditions` into a :class:`Verdict` per
datagram: dropped (and why, in words), or forwarded at a release time with the added delay split by reason,
possibly truncated (MTU), corrupted (one bit flipped, its position kept) or duplicated (the copy's own release
time). The datagram core (:mod:`proxy.datagram`) owns one per direction per flow. Each stage and its model is
documented for users in docs/udp.md; in the order they apply:

1. one-shot faults armed by the user (``drop_next``, ``duplicate_next``);
2. MTU: a datagram larger than ``mtu`` is dropped or cut to ``mtu`` bytes;
3. loss: Gilbert-Elliott bursts (netem's ``gemodel``), then independent ``loss_pct``, then ``drop_fraction``;
4. bandwidth: a token bucket (rate ``bandwidth_bps``, depth ``burst_bytes``) in front of a FIFO queue of at most
   ``effective_queue_bytes`` bytes; a datagram that does not fit is tail-dropped;
5. corrupt: one random bit flipped with probability ``corrupt_pct``;
6. duplicate: with probability ``duplicate_fraction`` a copy leaves ``duplicate_delay_ms`` after the original;
7. delay: netem's reorder (``reorder_pct``, ``reorder_gap``: a reordered datagram skips latency and jitter), else
   latency + jitter + spikes, and, unless ``jitter_reorders``, never before the previous datagram (jitter clumps,
   as on TCP: :mod:`proxy.scheduler`'s rule).

Reproducible: every random decision is drawn from the one ``random.Random`` handed to the constructor (the core
seeds it from ``--seed``, the flow id and the direction), and a draw is made only when its parameter is above 0,
so the same datagrams at the same arrival times under the same conditions get the same decisions.
Must not import: Qt, ``inspector``, asyncio, sockets, the clock (``time``); only ``proxy.model`` and
``proxy.conditions`` from the engine.
Thread: engine loop thread; pure.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, replace
from typing import Final

from proxy.conditions import NS_PER_S, DirectionConditions
from proxy.model import DelayReason

__all__ = ["DirectionImpairer", "Verdict"]

_LATENCY, _JITTER, _SPIKE, _QUEUE, _BANDWIDTH = (DelayReason.LATENCY, DelayReason.JITTER, DelayReason.SPIKE,
                                                 DelayReason.QUEUE, DelayReason.BANDWIDTH)
_NO_DELAYS: Final[tuple[tuple[DelayReason, int], ...]] = ()


@dataclass(slots=True)
class Verdict:
    """What happens to one datagram in one direction."""

    dropped: bool
    data: bytes
    """The bytes as they leave (truncated or corrupted ones differ from what arrived)."""
    release_ns: int
    delays: tuple[tuple[DelayReason, int], ...] = _NO_DELAYS
    note: str = ""
    """Why it was dropped, or what was done to it (truncated, corrupted, sent ahead); empty when nothing."""
    flips: tuple[int, ...] = ()
    duplicate_ns: int | None = None
    """The copy's release time when the datagram is duplicated."""


class DirectionImpairer:
    """The impairment state of one direction of one flow: the random stream, the Gilbert-Elliott state, netem's
    reorder counter, the token bucket, the bandwidth queue and the last release (for order-keeping jitter)."""

    __slots__ = ("_bad", "_bucket_at", "_last_release_ns", "_link", "_queued", "_reorder_count", "_rng", "_tokens")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._bad = False  # Gilbert-Elliott: the channel is in the bad state
        self._reorder_count = 0
        self._last_release_ns: int | None = None
        self._tokens = 0.0  # bytes in the bucket at _bucket_at
        self._bucket_at: int | None = None  # when the last datagram left the bucket (None: never, bucket full)
        self._link: deque[tuple[int, int]] = deque()  # (departure ns, size) of datagrams waiting for the link
        self._queued = 0  # their bytes

    def decide(self, arrival_ns: int, data: bytes, cond: DirectionConditions) -> tuple[Verdict, DirectionConditions]:
        """The verdict on ``data`` arriving at ``arrival_ns``, and ``cond`` with any one-shot fault used taken off
        (the caller stores it back, as with :meth:`proxy.scheduler.DirectionScheduler.decide_fault`)."""
        rng = self._rng
        duplicate = False
        if cond.drop_next > 0:
            return (Verdict(True, data, arrival_ns, note="dropped: a drop armed by the user"),
                    replace(cond, drop_next=cond.drop_next - 1))
        if cond.duplicate_next > 0:
            duplicate = True
            cond = replace(cond, duplicate_next=cond.duplicate_next - 1)
        note = ""
        size = len(data)
        mtu = cond.mtu
        if mtu is not None and size > mtu:
            if cond.mtu_action == "drop":
                return Verdict(True, data, arrival_ns, note=f"dropped: {size} bytes is more than the MTU ({mtu})"), cond
            data = data[:mtu]
            note = f"truncated to the MTU: {size} -> {mtu} bytes"
            size = mtu
        ge = cond.burst_loss
        if ge is not None:
            bad = self._bad
            loss = (ge.bad_loss_pct if bad else ge.good_loss_pct) / 100.0
            lost = loss > 0 and rng.random() < loss
            # then the channel moves on, whatever happened to this datagram
            if bad:
                if rng.random() < ge.r:
                    self._bad = False
            elif ge.p_pct > 0 and rng.random() < ge.p_pct / 100.0:
                self._bad = True
            if lost:
                if ge.good_loss_pct >= 100 and ge.bad_loss_pct >= 100:  # how "100 %" loss is set on UDP
                    note = "lost: loss 100 % (every datagram)"
                else:
                    note = f"lost: burst loss (Gilbert-Elliott, {'bad' if bad else 'good'} state)"
                return Verdict(True, data, arrival_ns, note=note), cond
        if cond.loss_pct > 0 and rng.random() < cond.loss_pct / 100.0:
            return Verdict(True, data, arrival_ns, note=f"lost: random loss {cond.loss_pct:g} %"), cond
        if cond.drop_fraction > 0 and rng.random() < cond.drop_fraction:
            return Verdict(True, data, arrival_ns, note=f"dropped: drop fault {cond.drop_fraction:.0%}"), cond
        depart = arrival_ns
        if cond.bandwidth_bps is not None:
            depart_or_none = self._through_link(arrival_ns, size, cond)
            if depart_or_none is None:
                return Verdict(True, data, arrival_ns,
                               note=f"dropped: bandwidth queue full ({self._queued} of "
                                    f"{cond.effective_queue_bytes} bytes waiting: tail drop)"), cond
            depart = depart_or_none
        flips: tuple[int, ...] = ()
        if cond.corrupt_pct > 0 and rng.random() < cond.corrupt_pct / 100.0 and size:
            bit = rng.randrange(size * 8)
            b = bytearray(data)
            b[bit >> 3] ^= 1 << (bit & 7)
            data = bytes(b)
            flips = (bit,)
            note = _join(note, f"corrupted: bit {bit & 7} of byte {bit >> 3} flipped")
        if cond.duplicate_fraction > 0 and not duplicate and rng.random() < cond.duplicate_fraction:
            duplicate = True
        bandwidth = depart - arrival_ns
        reordered = False
        if cond.reorder_pct > 0:
            # netem: the first gap - 1 datagrams are delayed, then each is sent at once with probability reorder
            # (and the count starts again) or delayed
            if self._reorder_count < cond.reorder_gap - 1 or rng.random() >= cond.reorder_pct / 100.0:
                self._reorder_count += 1
            else:
                self._reorder_count = 0
                reordered = True
        if reordered:
            release = depart
            delays = ((_BANDWIDTH, bandwidth),) if bandwidth else _NO_DELAYS
            note = _join(note, "sent ahead: reorder skips latency and jitter")
        else:
            latency = cond.latency_ns
            jitter = cond.jitter.sample_ns(rng)
            spike = sum(s.extra_ns(arrival_ns) for s in cond.spikes) if cond.spikes else 0
            ready = depart + latency + jitter + spike
            last = self._last_release_ns
            release = ready if cond.jitter_reorders or last is None or last <= ready else last
            self._last_release_ns = release
            delays = tuple((r, ns) for r, ns in ((_BANDWIDTH, bandwidth), (_LATENCY, latency), (_JITTER, jitter),
                                                 (_SPIKE, spike), (_QUEUE, release - ready)) if ns > 0)
        dup_at = release + round(cond.duplicate_delay_ms * 1_000_000) if duplicate else None
        return Verdict(False, data, release, delays, note, flips, dup_at), cond

    def _through_link(self, arrival_ns: int, size: int, cond: DirectionConditions) -> int | None:
        """When a datagram of ``size`` bytes arriving at ``arrival_ns`` leaves the token bucket, or None when the
        queue in front of it is full (tail drop). FIFO: never before the datagram ahead of it."""
        link = self._link
        while link and link[0][0] <= arrival_ns:  # those have left by now
            self._queued -= link.popleft()[1]
        if self._queued + size > cond.effective_queue_bytes:
            return None
        rate = cond.bandwidth_bps
        assert rate is not None
        burst = cond.burst_bytes
        last = self._bucket_at
        start = arrival_ns if last is None or last <= arrival_ns else last
        if last is None:
            tokens = float(burst)
        else:
            tokens = min(float(burst), self._tokens + (start - last) * rate / NS_PER_S)
        if tokens >= size:
            depart = start
            tokens -= size
        else:
            depart = start + math.ceil((size - tokens) * NS_PER_S / rate)
            tokens = 0.0
        self._tokens = tokens
        self._bucket_at = depart
        if depart > arrival_ns:
            link.append((depart, size))
            self._queued += size
        return depart


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b

"""Scheduler: when may each message of one direction be written to its destination?

Role: turns :class:`proxy.conditions.DirectionConditions` into release times for the messages of one
direction of one connection, split by reason (latency, jitter, spike, queue, bandwidth, freeze), and decides
deliberate faults (drop, duplicate). The relay core owns one :class:`DirectionScheduler` per direction.
Must not import: Qt, ``inspector``, asyncio, sockets, the clock (``time``); only ``proxy.model`` and
``proxy.conditions`` from the engine.
Thread: engine loop thread; pure. Time comes in as monotonic nanoseconds and randomness from the seeded
``random.Random`` handed to the constructor, so a test can replay any schedule exactly.

The rule (Valve GameNetworkingSockets' semantics for an ordered stream)::

    ready_i   = arrival_i + latency + jitter_i + spikes(arrival_i) + retransmissions_i
    release_i = max(ready_i, release_{i-1}) + size_i / bandwidth

Taking the max with the previous release keeps TCP order: a message whose jitter sample is small waits
behind an earlier one (reason QUEUE) instead of overtaking it, so jitter *clumps* messages, never reorders
them. The link is busy until the previous release, so serialisation (reason BANDWIDTH) starts at
``max(ready, previous release)``: over any burst, bytes released by time t never exceed bandwidth × elapsed.
The only state is the last release time, so changing conditions live never moves a message already
scheduled: its :class:`Scheduled` is immutable and the new conditions apply from the next message on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from proxy.conditions import MAX_RETRANSMISSIONS, DirectionConditions
from proxy.model import DelayReason

__all__ = ["DirectionScheduler", "Fault", "Scheduled"]

Fault = Literal["drop", "duplicate"]

_ORDER: Final = (
    DelayReason.LATENCY,
    DelayReason.JITTER,
    DelayReason.SPIKE,
    DelayReason.QUEUE,
    DelayReason.BANDWIDTH,
    DelayReason.FREEZE,
)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """Where one message landed: its release time and the added delay split by reason.

    ``delays`` lists only non-zero parts, in the order they apply, and always sums to
    ``release_ns - arrival_ns`` (nanoseconds), which is what ``Message.delays`` shows the user.
    """

    release_ns: int
    delays: tuple[tuple[DelayReason, int], ...] = ()

    @property
    def added_ns(self) -> int:
        return sum(ns for _, ns in self.delays)

    def delay(self, reason: DelayReason) -> int:
        """The part of the added delay due to ``reason`` (0 if none)."""
        return sum(ns for r, ns in self.delays if r is reason)


class DirectionScheduler:
    """Release times for one direction of one connection.

    Usage by the relay, per framed message (``now`` = its arrival time)::

        fault, cond = sched.decide_fault(cond)   # store cond back: one-shot counters were consumed
        if fault == "drop": ...                  # not scheduled, takes no bandwidth
        s = sched.schedule(now, len(data), cond) # twice for "duplicate": the copy uses bandwidth too
        # forward at s.release_ns (at once when it is <= now), unless cond.frozen: then keep it and,
        # on thaw, call sched.thaw(now, [the kept messages' Scheduled, in order]).

    Fast path: when ``cond.is_passthrough and sched.is_idle(now)`` the relay may forward without calling
    :meth:`schedule` at all; ``is_idle`` matters, since skipping past a still-scheduled message would reorder.
    """

    __slots__ = ("_last_release_ns", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._last_release_ns: int | None = None

    @property
    def rng(self) -> random.Random:
        """The direction's seeded generator, for other draws that must repeat with ``--seed`` (a rule's percent)."""
        return self._rng

    @property
    def last_release_ns(self) -> int | None:
        """The release time of the latest message scheduled (None before the first)."""
        return self._last_release_ns

    def is_idle(self, now_ns: int) -> bool:
        """True when nothing scheduled in this direction is still waiting at ``now_ns``."""
        return self._last_release_ns is None or self._last_release_ns <= now_ns

    def schedule(self, arrival_ns: int, size: int, cond: DirectionConditions) -> Scheduled:
        """Schedule a message of ``size`` bytes that arrived at ``arrival_ns`` under ``cond``.

        Never earlier than ``arrival + latency`` and never earlier than the previous release in this
        direction. ``cond.frozen`` is not looked at: freezing is the relay's hold (see :meth:`thaw`).
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        latency = cond.latency_ns
        jitter = cond.jitter.sample_ns(self._rng)
        spike = sum(s.extra_ns(arrival_ns) for s in cond.spikes) + self._retransmissions_ns(cond)
        ready = arrival_ns + latency + jitter + spike
        last = self._last_release_ns
        start = ready if last is None or last <= ready else last
        bandwidth = cond.transmit_ns(size)
        release = start + bandwidth
        self._last_release_ns = release
        return Scheduled(
            release_ns=release,
            delays=_delays(
                {
                    DelayReason.LATENCY: latency,
                    DelayReason.JITTER: jitter,
                    DelayReason.SPIKE: spike,
                    DelayReason.QUEUE: start - ready,
                    DelayReason.BANDWIDTH: bandwidth,
                }
            ),
        )

    def _retransmissions_ns(self, cond: DirectionConditions) -> int:
        """TCP-honest loss: a lost message arrives one RTO later; losing the retransmission doubles the RTO.

        Counted per message, not per segment (a large message would really cross many segments), and
        bounded by ``MAX_RETRANSMISSIONS``. Reported as SPIKE because to the application it *is* a spike.
        """
        p = cond.loss_pct / 100.0
        if p <= 0:
            return 0
        rto = round(cond.effective_rto_ms * 1_000_000)
        total = 0
        for _ in range(MAX_RETRANSMISSIONS):
            if self._rng.random() >= p:
                break
            total += rto
            rto *= 2  # exponential back-off (RFC 6298 §5.5)
        return total

    def decide_fault(self, cond: DirectionConditions) -> tuple[Fault | None, DirectionConditions]:
        """Decide whether the next message is dropped or duplicated, consuming one-shot counters.

        Returns ``(fault, cond_after)``: one-shots (``drop_next``, then ``duplicate_next``) come first and
        ``cond_after`` has the used one taken off, so the caller stores it back (a frozen value cannot count
        down by itself, and this keeps "2 drops still armed" visible in ``to_dict`` for the UI). Otherwise
        ``drop_fraction`` and ``duplicate_fraction`` are rolled with the seeded rng and ``cond`` comes back
        unchanged. The rng is only consumed for a fraction above 0, so plain traffic never shifts the jitter
        sequence of a reproducible run.
        """
        if cond.drop_next > 0:
            return "drop", replace(cond, drop_next=cond.drop_next - 1)
        if cond.duplicate_next > 0:
            return "duplicate", replace(cond, duplicate_next=cond.duplicate_next - 1)
        if cond.drop_fraction > 0 and self._rng.random() < cond.drop_fraction:
            return "drop", cond
        if cond.duplicate_fraction > 0 and self._rng.random() < cond.duplicate_fraction:
            return "duplicate", cond
        return None, cond

    def thaw(self, now_ns: int, frozen: Sequence[Scheduled]) -> list[Scheduled]:
        """New release times for messages held by a freeze that ends at ``now_ns``.

        ``frozen`` is the held messages' :class:`Scheduled`, in stream order. Each is released at
        ``max(its scheduled time, now)``; a message that needed bandwidth time drains at the link rate after
        the one before it, as a stalled link would. Order is kept, the extra time is added as FREEZE, and
        messages arriving after the thaw queue behind the last thawed one.
        """
        out: list[Scheduled] = []
        link_free = now_ns
        for s in frozen:
            release = max(s.release_ns, link_free + s.delay(DelayReason.BANDWIDTH))
            freeze = release - s.release_ns
            out.append(s if freeze == 0 else Scheduled(release, _add(s.delays, DelayReason.FREEZE, freeze)))
            link_free = release
        if out and (self._last_release_ns is None or self._last_release_ns < link_free):
            self._last_release_ns = link_free
        return out

    def thaw_release(self, scheduled_release_ns: int, now_ns: int) -> int:
        """The release time of one frozen message without bandwidth: ``max(now, scheduled)``.

        For a whole held queue use :meth:`thaw`, which also keeps bandwidth spacing and updates the state.
        """
        return max(now_ns, scheduled_release_ns)

    def reset(self) -> None:
        """Forget the last release (e.g. after the relay discarded everything pending in this direction)."""
        self._last_release_ns = None


def _delays(parts: dict[DelayReason, int]) -> tuple[tuple[DelayReason, int], ...]:
    return tuple((r, parts[r]) for r in _ORDER if parts.get(r, 0) > 0)


def _add(
    delays: tuple[tuple[DelayReason, int], ...], reason: DelayReason, ns: int
) -> tuple[tuple[DelayReason, int], ...]:
    parts = dict(delays)
    parts[reason] = parts.get(reason, 0) + ns
    return _delays(parts)

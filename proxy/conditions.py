"""Network conditions: the values that shape one direction of traffic, their wire form and their CLI syntax.

Role: the *configuration* side of lag simulation. Everything here is a frozen, slotted value: latency, jitter,
bandwidth, lag spikes, freeze, faults and TCP-honest loss for each direction (``c2s``/``s2c``), plus
``to_dict``/``from_dict`` for the control protocol and the parsers behind ``--latency``, ``--jitter``,
``--bandwidth`` and ``--spike``. :mod:`proxy.scheduler` turns these values into release times.
Must not import: Qt, ``inspector``, asyncio, sockets, the clock (``time``), or any ``proxy`` module other
than ``proxy.model`` (presets are built from these values, so ``proxy.presets`` imports this module, and
``proxy.options.conditions_from_cli`` combines a preset with the flags).
Thread: engine loop thread; pure. Randomness comes from a ``random.Random`` that the caller passes in and
seeds, and time comes in as monotonic nanoseconds, so every result is reproducible in tests.

Units, once: latency and jitter are *one-way* milliseconds for the direction they sit in; bandwidth is
**bytes** per second; spike lengths and periods are seconds; points in time are monotonic nanoseconds.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal, get_args

from proxy.model import Direction

__all__ = [
    "PASSTHROUGH",
    "Conditions",
    "ConditionsError",
    "DirectionConditions",
    "GilbertElliott",
    "Jitter",
    "JitterDistribution",
    "Spike",
    "format_bandwidth",
    "parse_bandwidth",
    "parse_bytes",
    "parse_corrupt",
    "parse_duplicate",
    "parse_jitter",
    "parse_latency",
    "parse_loss",
    "parse_mtu",
    "parse_reorder",
    "parse_spike",
    "set_from_text",
]

NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000

JitterDistribution = Literal["uniform", "normal", "exponential"]
JITTER_DISTRIBUTIONS: Final[tuple[JitterDistribution, ...]] = get_args(JitterDistribution)

EXPONENTIAL_DEFAULT_CAP_FACTOR: Final = 10.0
"""An uncapped exponential tail can produce a multi-second stall from "jitter 20 ms"; GNS caps it too."""

MIN_RTO_MS: Final = 200.0
"""Linux's minimum retransmission timeout (``TCP_RTO_MIN``); RFC 6298 says 1 s, but real stacks use 200 ms."""

MAX_RETRANSMISSIONS: Final = 6
"""Bounds the back-off loop so a loss rate close to 100 % cannot stall a message for ever (64 × RTO)."""


class ConditionsError(ValueError):
    """A condition value or its text form is invalid. The message is one line, meant for the user."""


# ---------------------------------------------------------------------------------------------------------
# Validation helpers. Each raises ConditionsError naming the field, so a bad control message or CLI flag
# says exactly what is wrong instead of failing later inside the scheduler.


def _number(name: str, value: object) -> float:
    # bool is an int subclass: `latency_ms=True` is a bug, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionsError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConditionsError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _non_negative(name: str, value: object) -> float:
    v = _number(name, value)
    if v < 0:
        raise ConditionsError(f"{name}: must be >= 0, got {value!r}")
    return v


def _positive(name: str, value: object) -> float:
    v = _number(name, value)
    if v <= 0:
        raise ConditionsError(f"{name}: must be > 0, got {value!r}")
    return v


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConditionsError(f"{name}: expected a whole number >= 0, got {value!r}")
    return value


def _percent(name: str, value: object) -> float:
    v = _number(name, value)
    if not 0.0 <= v <= 100.0:
        raise ConditionsError(f"{name}: must be a percentage from 0 to 100, got {value!r}")
    return v


def _fraction(name: str, value: object) -> float:
    v = _number(name, value)
    if not 0.0 <= v <= 1.0:
        raise ConditionsError(f"{name}: must be between 0 and 1, got {value!r}")
    return v


def _ms_to_ns(ms: float) -> int:
    return round(ms * NS_PER_MS)


def _std_normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _std_normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Jitter:
    """Random *extra* one-way delay added on top of latency, never negative.

    "Jitter J ms" means: each message gets an extra delay whose **mean is J ms**, whatever the distribution,
    so switching distributions changes the shape of the lag, not its average:

    - ``uniform``: evenly spread over ``[0, 2J]`` (toxiproxy's "±J around latency", shifted so it only adds).
    - ``normal``: a bell curve centred on J with standard deviation J/2, clipped to ``[0, 2J]``. The clip is
      symmetric, so the mean stays exactly J; about 4.6 % of samples land on an edge.
    - ``exponential``: mean J with a long tail of occasional big delays (Valve GameNetworkingSockets' model),
      capped at ``cap_ms``, which defaults to 10 × J (the cap trims the mean by J·e⁻¹⁰, i.e. nothing visible).

    ``cap_ms`` caps any distribution; a cap below the natural maximum lowers the mean (see :attr:`mean_ms`).
    So "latency 100, jitter 20" gives one-way delays averaging 120 ms: 100–140 ms when uniform.
    """

    ms: float = 0.0
    distribution: JitterDistribution = "uniform"
    cap_ms: float | None = None

    def __post_init__(self) -> None:
        _non_negative("jitter.ms", self.ms)
        if self.distribution not in JITTER_DISTRIBUTIONS:
            raise ConditionsError(
                f"jitter.distribution: expected one of {', '.join(JITTER_DISTRIBUTIONS)}, got {self.distribution!r}"
            )
        if self.cap_ms is not None:
            _non_negative("jitter.cap_ms", self.cap_ms)

    @property
    def effective_cap_ms(self) -> float:
        """The largest sample this jitter can produce."""
        natural = EXPONENTIAL_DEFAULT_CAP_FACTOR * self.ms if self.distribution == "exponential" else 2 * self.ms
        return natural if self.cap_ms is None else min(self.cap_ms, natural)

    @property
    def mean_ms(self) -> float:
        """The exact expected extra delay, including the effect of the cap (equals ``ms`` without a cap)."""
        j = self.ms
        c = self.effective_cap_ms
        if j == 0 or c == 0:
            return 0.0
        if self.distribution == "uniform":
            # E[min(U, c)] for U ~ U[0, 2J] and c <= 2J.
            return min(j, c - c * c / (4 * j))  # min: float rounding must not push it above J
        if self.distribution == "normal":
            # E[clip(X, 0, c)] for X ~ N(J, J/2), the standard clipped-normal mean.
            mu, sigma = j, j / 2
            if sigma == 0:  # a subnormal J: J/2 underflows to 0 and the formula would divide by it
                return min(j, c)
            alpha, beta = (0 - mu) / sigma, (c - mu) / sigma
            fa, fb = _std_normal_cdf(alpha), _std_normal_cdf(beta)
            return c * (1 - fb) + mu * (fb - fa) + sigma * (_std_normal_pdf(alpha) - _std_normal_pdf(beta))
        return j * (1 - math.exp(-c / j))

    def sample_ms(self, rng: random.Random) -> float:
        """Draw one extra delay in milliseconds from ``rng``. Draws nothing when ``ms`` is 0."""
        j = self.ms
        if j == 0:
            return 0.0
        if self.distribution == "uniform":
            x = rng.uniform(0.0, 2 * j)
        elif self.distribution == "normal":
            x = min(max(rng.gauss(j, j / 2), 0.0), 2 * j)
        else:
            x = rng.expovariate(1.0 / j)
        return min(x, self.effective_cap_ms)

    def sample_ns(self, rng: random.Random) -> int:
        return _ms_to_ns(self.sample_ms(rng))

    def describe(self) -> str:
        if self.ms == 0:
            return "no jitter"
        cap = f", cap {self.cap_ms:g} ms" if self.cap_ms is not None else ""
        return f"jitter {self.ms:g} ms {self.distribution}{cap}"

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "distribution": self.distribution, "cap_ms": self.cap_ms}

    @classmethod
    def from_dict(cls, d: object) -> Jitter:
        m = _mapping("jitter", d, {"ms", "distribution", "cap_ms"})
        return cls(
            ms=_non_negative("jitter.ms", m.get("ms", 0.0)),
            distribution=m.get("distribution", "uniform"),
            cap_ms=None if m.get("cap_ms") is None else _non_negative("jitter.cap_ms", m["cap_ms"]),
        )


NO_JITTER: Final = Jitter()


@dataclass(frozen=True, slots=True)
class Spike:
    """A lag spike: add ``add_ms`` to messages that *arrive* while it is active.

    One-shot (``every_s`` None): active for ``t`` in ``[start, start + for_s)``, i.e. "add S ms for D s now".
    Periodic: active in ``[start + k·every_s, start + k·every_s + for_s)`` for k = 0, 1, 2, ...
    ``start_ns`` is monotonic time; a periodic spike with the default 0 simply has an arbitrary phase.
    Several spikes in one direction add up where they overlap.
    """

    add_ms: float
    for_s: float
    every_s: float | None = None
    start_ns: int = 0

    def __post_init__(self) -> None:
        _non_negative("spike.add_ms", self.add_ms)
        _positive("spike.for_s", self.for_s)
        if self.every_s is not None:
            _positive("spike.every_s", self.every_s)
            if self.for_s > self.every_s:
                # Overlapping periods would mean "always on": that is latency, and saying so avoids a
                # configuration that looks periodic but never lets up.
                raise ConditionsError(
                    f"spike: for ({self.for_s:g} s) must not be longer than every ({self.every_s:g} s)"
                )
        if isinstance(self.start_ns, bool) or not isinstance(self.start_ns, int):
            raise ConditionsError(f"spike.start_ns: expected an integer, got {self.start_ns!r}")

    @property
    def periodic(self) -> bool:
        return self.every_s is not None

    def active(self, t_ns: int) -> bool:
        offset = t_ns - self.start_ns
        if offset < 0:
            return False
        duration = round(self.for_s * NS_PER_S)
        if self.every_s is None:
            return offset < duration
        return offset % round(self.every_s * NS_PER_S) < duration

    def extra_ns(self, t_ns: int) -> int:
        """The delay this spike adds to a message arriving at ``t_ns`` (0 outside its windows)."""
        return _ms_to_ns(self.add_ms) if self.active(t_ns) else 0

    def describe(self) -> str:
        every = f"every {self.every_s:g} s " if self.every_s is not None else ""
        return f"{every}+{self.add_ms:g} ms for {self.for_s:g} s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "add_ms": self.add_ms,
            "for_s": self.for_s,
            "every_s": self.every_s,
            "start_ns": self.start_ns,
        }

    @classmethod
    def from_dict(cls, d: object) -> Spike:
        m = _mapping("spike", d, {"add_ms", "for_s", "every_s", "start_ns"})
        for key in ("add_ms", "for_s"):
            if key not in m:
                raise ConditionsError(f"spike: missing {key!r}")
        every = m.get("every_s")
        return cls(
            add_ms=_non_negative("spike.add_ms", m["add_ms"]),
            for_s=_positive("spike.for_s", m["for_s"]),
            every_s=None if every is None else _positive("spike.every_s", every),
            start_ns=m.get("start_ns", 0),
        )


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    """Bursty loss (UDP): the Gilbert-Elliott two-state model, with netem's ``loss gemodel p r 1-h 1-k``.

    Each datagram is lost with the loss probability of the state the channel is in (``good_loss_pct`` = netem's
    1-k in the good state, ``bad_loss_pct`` = netem's 1-h in the bad state); then the channel moves from good to
    bad with probability ``p_pct`` and from bad to good with ``r_pct``. Percentages, like netem's. As in netem,
    omitted values give the model's special cases: only ``p`` is Bernoulli loss (r = 100 − p, 1-h = 100, 1-k = 0),
    ``p`` and ``r`` the simple Gilbert model (1-h = 100, 1-k = 0). Mean burst length in the bad state is 100/r
    datagrams; the long-run loss is ``(r·(1-k) + p·(1-h)) / (p + r)`` (:attr:`mean_loss_pct`).
    """

    p_pct: float
    r_pct: float | None = None
    bad_loss_pct: float = 100.0
    good_loss_pct: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_pct", "bad_loss_pct", "good_loss_pct"):
            _percent(f"burst_loss.{name}", getattr(self, name))
        if self.r_pct is not None:
            _percent("burst_loss.r_pct", self.r_pct)

    @property
    def r(self) -> float:
        """The bad-to-good probability (0-1), netem's default ``1 - p`` when not given."""
        return (100.0 - self.p_pct if self.r_pct is None else self.r_pct) / 100.0

    @property
    def mean_loss_pct(self) -> float:
        p, r = self.p_pct / 100.0, self.r
        if p + r == 0:
            return self.good_loss_pct  # never leaves the good state
        return 100.0 * (r * self.good_loss_pct / 100.0 + p * self.bad_loss_pct / 100.0) / (p + r)

    def describe(self) -> str:
        return (f"burst loss p {self.p_pct:g} %, r {self.r * 100:g} %, 1-h {self.bad_loss_pct:g} %, "
                f"1-k {self.good_loss_pct:g} % (mean {self.mean_loss_pct:.3g} %)")

    def to_dict(self) -> dict[str, Any]:
        return {"p_pct": self.p_pct, "r_pct": self.r_pct, "bad_loss_pct": self.bad_loss_pct,
                "good_loss_pct": self.good_loss_pct}

    @classmethod
    def from_dict(cls, d: object) -> GilbertElliott:
        m = _mapping("burst_loss", d, {"p_pct", "r_pct", "bad_loss_pct", "good_loss_pct"})
        if "p_pct" not in m:
            raise ConditionsError("burst_loss: missing 'p_pct'")
        return cls(**m)


MTU_ACTIONS: Final = ("drop", "truncate")


@dataclass(frozen=True, slots=True)
class DirectionConditions:
    """Everything that shapes one direction (client→server or server→client) of a connection."""

    latency_ms: float = 0.0
    """One-way delay added to every message in this direction."""
    jitter: Jitter = NO_JITTER
    bandwidth_bps: float | None = None
    """Link rate in **bytes** per second (not bits); None means unlimited."""
    spikes: tuple[Spike, ...] = ()
    frozen: bool = False
    """Hold everything in this direction until thawed. The relay enforces it; the scheduler ignores it."""
    drop_next: int = 0
    """One-shot: drop this many upcoming messages. Consumed by ``DirectionScheduler.decide_fault``."""
    drop_fraction: float = 0.0
    """Probability (0–1) that a message is deliberately dropped (an application-level fault, not TCP loss)."""
    duplicate_fraction: float = 0.0
    duplicate_next: int = 0
    loss_pct: float = 0.0
    """Packet loss as a network would have it, in percent. On TCP nothing goes missing: each lost message
    is retransmitted after an RTO, so loss shows up as an extra delay (reason SPIKE) that also holds back
    everything behind it (head-of-line blocking)."""
    rto_ms: float | None = None
    """Retransmission timeout used for ``loss_pct``; None means ``max(200 ms, 2 × estimated RTT)``."""

    # UDP only: a TCP connection ignores these (a stream has no datagrams to lose, corrupt or reorder), see
    # docs/udp.md. ``loss_pct``, ``drop_*``, ``duplicate_*``, latency, jitter, spikes, bandwidth and freeze apply
    # to both; on UDP ``loss_pct`` is a real loss.
    jitter_reorders: bool = False
    """Let jitter reorder datagrams (each released at its own time). Off: jitter clumps them, as on TCP."""
    burst_loss: GilbertElliott | None = None
    """Bursty loss (Gilbert-Elliott), on top of ``loss_pct``'s independent loss."""
    duplicate_delay_ms: float = 0.0
    """Extra delay of a duplicate's copy after the original."""
    reorder_pct: float = 0.0
    """netem's reorder: this share of datagrams (after ``reorder_gap - 1`` delayed ones) skip latency and jitter."""
    reorder_gap: int = 1
    corrupt_pct: float = 0.0
    """Share of datagrams with one random bit flipped (the position is recorded on the message)."""
    burst_bytes: int = 0
    """Token bucket size for ``bandwidth_bps``: bytes that may leave back to back after a quiet time (0: every
    datagram takes size / rate on the link)."""
    queue_bytes: int | None = None
    """Bytes that may wait for the link before new datagrams are tail-dropped; None: one second of the rate, at
    least 64 KiB."""
    mtu: int | None = None
    """Largest datagram payload that passes; bigger ones are dropped or cut (``mtu_action``)."""
    mtu_action: str = "drop"

    def __post_init__(self) -> None:
        _non_negative("latency_ms", self.latency_ms)
        if not isinstance(self.jitter, Jitter):
            raise ConditionsError(f"jitter: expected a Jitter, got {self.jitter!r}")
        if self.bandwidth_bps is not None:
            _positive("bandwidth_bps", self.bandwidth_bps)
        if not isinstance(self.spikes, tuple) or not all(isinstance(s, Spike) for s in self.spikes):
            raise ConditionsError(f"spikes: expected a tuple of Spike, got {self.spikes!r}")
        if not isinstance(self.frozen, bool):
            raise ConditionsError(f"frozen: expected true or false, got {self.frozen!r}")
        _count("drop_next", self.drop_next)
        _count("duplicate_next", self.duplicate_next)
        _fraction("drop_fraction", self.drop_fraction)
        _fraction("duplicate_fraction", self.duplicate_fraction)
        loss = _non_negative("loss_pct", self.loss_pct)
        if loss >= 100:
            # 100 % loss on TCP is a stalled connection; freeze says that honestly and can be undone.
            raise ConditionsError(f"loss_pct: must be below 100, got {self.loss_pct!r} (use frozen for 100 %)")
        if self.rto_ms is not None:
            _positive("rto_ms", self.rto_ms)
        if not isinstance(self.jitter_reorders, bool):
            raise ConditionsError(f"jitter_reorders: expected true or false, got {self.jitter_reorders!r}")
        if self.burst_loss is not None and not isinstance(self.burst_loss, GilbertElliott):
            raise ConditionsError(f"burst_loss: expected a GilbertElliott, got {self.burst_loss!r}")
        _non_negative("duplicate_delay_ms", self.duplicate_delay_ms)
        _percent("reorder_pct", self.reorder_pct)
        if isinstance(self.reorder_gap, bool) or not isinstance(self.reorder_gap, int) or self.reorder_gap < 1:
            raise ConditionsError(f"reorder_gap: expected a whole number >= 1, got {self.reorder_gap!r}")
        _percent("corrupt_pct", self.corrupt_pct)
        _count("burst_bytes", self.burst_bytes)
        if self.queue_bytes is not None and (_count("queue_bytes", self.queue_bytes) == 0):
            raise ConditionsError("queue_bytes: must be at least 1 (or nil for the default)")
        if self.mtu is not None and (_count("mtu", self.mtu) == 0 or self.mtu > 65535):
            raise ConditionsError(f"mtu: expected 1 to 65535 bytes, got {self.mtu!r}")
        if self.mtu_action not in MTU_ACTIONS:
            raise ConditionsError(f"mtu_action: expected drop or truncate, got {self.mtu_action!r}")

    def with_fault(self, kind: str, count: int) -> DirectionConditions:
        """These conditions with ``count`` more one-shot faults armed: ``drop`` or ``duplicate`` the next
        messages (the ``fault`` command, for a TCP connection and a UDP flow alike)."""
        if kind == "drop":
            return replace(self, drop_next=self.drop_next + count)
        if kind == "duplicate":
            return replace(self, duplicate_next=self.duplicate_next + count)
        raise ValueError(f"unknown fault {kind!r}: expected drop or duplicate")

    @property
    def effective_queue_bytes(self) -> int:
        """The bandwidth queue's limit: ``queue_bytes``, else one second of the rate and at least 64 KiB."""
        if self.queue_bytes is not None:
            return self.queue_bytes
        return max(65536, int(self.bandwidth_bps or 0))

    @property
    def is_passthrough(self) -> bool:
        """True when these conditions change neither timing nor content, so the relay may forward at once.

        The relay must also check that nothing is still scheduled in this direction
        (``DirectionScheduler.is_idle(now)``): forwarding at once past a pending message would reorder TCP.
        """
        return (
            self.latency_ms == 0
            and self.jitter.ms == 0
            and self.bandwidth_bps is None
            and not self.spikes
            and not self.frozen
            and self.drop_next == 0
            and self.drop_fraction == 0
            and self.duplicate_fraction == 0
            and self.duplicate_next == 0
            and self.loss_pct == 0
            and self.corrupt_pct == 0
            and self.burst_loss is None
            and self.mtu is None
        )

    @property
    def latency_ns(self) -> int:
        return _ms_to_ns(self.latency_ms)

    @property
    def effective_rto_ms(self) -> float:
        """The RTO for a lost message: ``rto_ms``, else ``max(200 ms, 2 × RTT)``.

        Only this direction is known here, so the RTT is estimated as twice its mean one-way delay; the
        presets set ``rto_ms`` explicitly where the two directions differ a lot.
        """
        if self.rto_ms is not None:
            return self.rto_ms
        rtt = 2 * (self.latency_ms + self.jitter.mean_ms)
        return max(MIN_RTO_MS, 2 * rtt)

    def transmit_ns(self, size: int) -> int:
        """Serialisation time of ``size`` bytes at this bandwidth, rounded up so a release is never early."""
        if self.bandwidth_bps is None or size <= 0:
            return 0
        return math.ceil(size * NS_PER_S / self.bandwidth_bps)

    def describe(self) -> str:
        """A one-line human summary, e.g. ``100 ms + jitter 20 ms uniform, 64 KB/s, loss 2 %``."""
        if self.is_passthrough:
            return "no change"
        parts = ["FROZEN"] if self.frozen else []
        parts.append(f"{self.latency_ms:g} ms")
        if self.jitter.ms:
            parts[-1] += f" + {self.jitter.describe()}"
        if self.bandwidth_bps is not None:
            parts.append(format_bandwidth(self.bandwidth_bps))
        parts.extend(f"spike {s.describe()}" for s in self.spikes)
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g} % (TCP: as delay; UDP: lost)")
        if self.drop_next or self.drop_fraction:
            parts.append(f"drop next {self.drop_next}, {self.drop_fraction:.0%}")
        if self.duplicate_next or self.duplicate_fraction:
            parts.append(f"duplicate next {self.duplicate_next}, {self.duplicate_fraction:.0%}")
        if self.jitter_reorders and self.jitter.ms:
            parts.append("jitter reorders (UDP)")
        if self.burst_loss is not None:
            parts.append(f"{self.burst_loss.describe()} (UDP)")
        if self.reorder_pct:
            parts.append(f"reorder {self.reorder_pct:g} % gap {self.reorder_gap} (UDP)")
        if self.corrupt_pct:
            parts.append(f"corrupt {self.corrupt_pct:g} % (UDP)")
        if self.mtu is not None:
            parts.append(f"MTU {self.mtu} {self.mtu_action} (UDP)")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (str keys, msgpack-able values) for the control protocol."""
        return {
            "latency_ms": self.latency_ms,
            "jitter": self.jitter.to_dict(),
            "bandwidth_bps": self.bandwidth_bps,
            "spikes": [s.to_dict() for s in self.spikes],
            "frozen": self.frozen,
            "drop_next": self.drop_next,
            "drop_fraction": self.drop_fraction,
            "duplicate_fraction": self.duplicate_fraction,
            "duplicate_next": self.duplicate_next,
            "loss_pct": self.loss_pct,
            "rto_ms": self.rto_ms,
            "jitter_reorders": self.jitter_reorders,
            "burst_loss": None if self.burst_loss is None else self.burst_loss.to_dict(),
            "duplicate_delay_ms": self.duplicate_delay_ms,
            "reorder_pct": self.reorder_pct,
            "reorder_gap": self.reorder_gap,
            "corrupt_pct": self.corrupt_pct,
            "burst_bytes": self.burst_bytes,
            "queue_bytes": self.queue_bytes,
            "mtu": self.mtu,
            "mtu_action": self.mtu_action,
        }

    @classmethod
    def from_dict(cls, d: object) -> DirectionConditions:
        """Read :meth:`to_dict`'s form. Missing keys take defaults; unknown keys are an error (typos)."""
        m = _mapping("direction", d, _DIRECTION_KEYS)
        kwargs: dict[str, Any] = {}
        for key, value in m.items():
            if key == "jitter":
                kwargs[key] = Jitter.from_dict(value)
            elif key == "spikes":
                if not isinstance(value, list | tuple):
                    raise ConditionsError(f"spikes: expected a list, got {value!r}")
                kwargs[key] = tuple(Spike.from_dict(s) for s in value)
            elif key == "burst_loss":
                kwargs[key] = None if value is None else GilbertElliott.from_dict(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


_DIRECTION_KEYS: Final = frozenset(f.name for f in fields(DirectionConditions))


def _mapping(name: str, d: object, allowed: set[str] | frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ConditionsError(f"{name}: expected a map, got {type(d).__name__}")
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise ConditionsError(f"{name}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return d


PASSTHROUGH_DIRECTION: Final = DirectionConditions()


@dataclass(frozen=True, slots=True)
class Conditions:
    """Conditions for both directions of a connection (or the global default)."""

    c2s: DirectionConditions = field(default=PASSTHROUGH_DIRECTION)
    s2c: DirectionConditions = field(default=PASSTHROUGH_DIRECTION)

    def __post_init__(self) -> None:
        for name in ("c2s", "s2c"):
            if not isinstance(getattr(self, name), DirectionConditions):
                raise ConditionsError(f"{name}: expected DirectionConditions, got {getattr(self, name)!r}")

    @classmethod
    def symmetric(cls, cond: DirectionConditions) -> Conditions:
        return cls(c2s=cond, s2c=cond)

    @property
    def is_passthrough(self) -> bool:
        return self.c2s.is_passthrough and self.s2c.is_passthrough

    def for_direction(self, direction: Direction) -> DirectionConditions:
        return self.c2s if direction is Direction.C2S else self.s2c

    def replace_direction(self, direction: Direction, cond: DirectionConditions) -> Conditions:
        """A copy with ``direction``'s conditions replaced (the other direction is kept)."""
        return replace(self, c2s=cond) if direction is Direction.C2S else replace(self, s2c=cond)

    def describe(self) -> str:
        return f"c2s: {self.c2s.describe()}; s2c: {self.s2c.describe()}"

    def to_dict(self) -> dict[str, Any]:
        return {"c2s": self.c2s.to_dict(), "s2c": self.s2c.to_dict()}

    @classmethod
    def from_dict(cls, d: object) -> Conditions:
        """Read :meth:`to_dict`'s form; a missing direction is passthrough. Errors name the direction."""
        m = _mapping("conditions", d, {"c2s", "s2c"})
        out: dict[str, DirectionConditions] = {}
        for name in ("c2s", "s2c"):
            if name not in m:
                continue
            try:
                out[name] = DirectionConditions.from_dict(m[name])
            except ConditionsError as e:
                # Field errors read "c2s.latency_ms: ..."; errors about the map itself read "c2s: ...".
                text = str(e)
                whole = text.removeprefix("direction: ")
                raise ConditionsError(f"{name}: {whole}" if whole != text else f"{name}.{text}") from None
        return cls(**out)


PASSTHROUGH: Final = Conditions()


# ---------------------------------------------------------------------------------------------------------
# Command-line syntax. Each parser returns only the directions the text names, so a flag can override one
# direction of a preset and leave the other alone. Errors are one line: the flag, the problem, an example.

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
_DURATION_RE: Final = re.compile(rf"\s*({_NUMBER})\s*(ms|s)?\s*")
_BANDWIDTH_RE: Final = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]*)\s*(/s)?\s*")

_LATENCY_EXAMPLE: Final = "e.g. --latency 100 or --latency c2s=30,s2c=120"
_JITTER_EXAMPLE: Final = "e.g. --jitter 20, --jitter 20:normal or --jitter c2s=10:uniform,s2c=20"
_BANDWIDTH_EXAMPLE: Final = "e.g. --bandwidth 64KB/s, 500kbit, c2s=64KB/s,s2c=1MB/s or unlimited"
_SPIKE_EXAMPLE: Final = "e.g. --spike every=30s,add=800ms,for=2s or --spike add=500ms,for=1s"


def _duration_ms(flag: str, text: str, example: str, *, unit_required: bool = False) -> float:
    """Read ``100``, ``100ms``, ``1.5s``; a bare number is milliseconds unless ``unit_required``."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ConditionsError(f"{flag}: cannot read {text!r} as a duration (use ms or s); {example}")
    value, unit = float(m.group(1)), m.group(2)
    if unit is None and unit_required:
        raise ConditionsError(f"{flag}: {text!r} needs a unit, ms or s; {example}")
    return value * 1000.0 if unit == "s" else value


def _per_direction(flag: str, text: str, example: str) -> dict[Direction, str]:
    """Split ``c2s=A,s2c=B`` into a map; text without ``=`` applies to both directions."""
    text = text.strip()
    if not text:
        raise ConditionsError(f"{flag}: empty value; {example}")
    if "=" not in text:
        return {Direction.C2S: text, Direction.S2C: text}
    out: dict[Direction, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ConditionsError(f"{flag}: expected DIRECTION=VALUE, got {part.strip()!r}; {example}")
        try:
            direction = Direction.parse(key)
        except ValueError:
            raise ConditionsError(f"{flag}: unknown direction {key.strip()!r} (use c2s or s2c); {example}") from None
        if direction in out:
            raise ConditionsError(f"{flag}: {direction.label} given twice; {example}")
        out[direction] = value.strip()
    return out


def parse_latency(text: str) -> dict[Direction, float]:
    """``"100"`` → both directions 100 ms one-way; ``"c2s=30,s2c=120"``; units ``ms`` (default) or ``s``."""
    return {
        d: _duration_ms("--latency", v, _LATENCY_EXAMPLE)
        for d, v in _per_direction("--latency", text, _LATENCY_EXAMPLE).items()
    }


def _jitter(text: str) -> Jitter:
    parts = text.split(":")
    if len(parts) > 3:
        raise ConditionsError(f"--jitter: expected MS[:DISTRIBUTION[:CAP]], got {text!r}; {_JITTER_EXAMPLE}")
    ms = _duration_ms("--jitter", parts[0], _JITTER_EXAMPLE)
    name = parts[1].strip().lower() if len(parts) > 1 else "uniform"
    # Looked up rather than cast, so the Literal type is earned, not asserted.
    distribution = next((d for d in JITTER_DISTRIBUTIONS if d == name), None)
    if distribution is None:
        raise ConditionsError(
            f"--jitter: unknown distribution {parts[1].strip()!r} (use {', '.join(JITTER_DISTRIBUTIONS)}); "
            f"{_JITTER_EXAMPLE}"
        )
    cap = _duration_ms("--jitter", parts[2], _JITTER_EXAMPLE) if len(parts) > 2 else None
    return Jitter(ms=ms, distribution=distribution, cap_ms=cap)


def parse_jitter(text: str) -> dict[Direction, Jitter]:
    """``"20"`` (uniform), ``"20:normal"``, ``"20:exponential:200"`` (cap), ``"c2s=10:uniform,s2c=20"``."""
    return {d: _jitter(v) for d, v in _per_direction("--jitter", text, _JITTER_EXAMPLE).items()}


_UNLIMITED: Final = frozenset({"unlimited", "none", "off", "inf"})
_PREFIX: Final = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "ki": 1024.0, "mi": 1024.0**2, "gi": 1024.0**3}


def _bandwidth(text: str) -> float | None:
    if text.strip().lower() in _UNLIMITED:
        return None
    m = _BANDWIDTH_RE.fullmatch(text)
    if m is None:
        raise ConditionsError(f"--bandwidth: cannot read {text!r}; {_BANDWIDTH_EXAMPLE}")
    value, unit = float(m.group(1)), m.group(2)
    # Bytes are a capital B ("KB/s", "MiB"); bits are spelled out ("kbit") or "bps" in lower case ("Mbps").
    # A lone lower-case b ("500kb") is read both ways in the wild, so it is refused rather than guessed.
    low = unit.lower()
    if low.endswith("bits"):
        prefix, per_unit = low[:-4], 1 / 8
    elif low.endswith("bit"):
        prefix, per_unit = low[:-3], 1 / 8
    elif unit.endswith("bps"):
        prefix, per_unit = low[:-3], 1 / 8
    elif unit.endswith("Bps"):
        prefix, per_unit = low[:-3], 1.0
    elif unit.endswith("B"):
        prefix, per_unit = low[:-1], 1.0
    elif unit.endswith("b"):
        raise ConditionsError(
            f"--bandwidth: {text!r} is ambiguous: write {m.group(1)}{unit[:-1]}bit for bits "
            f"or {m.group(1)}{unit[:-1].upper()}B/s for bytes"
        )
    elif unit == "":
        prefix, per_unit = "", 1.0
    else:
        raise ConditionsError(f"--bandwidth: unknown unit {unit!r}; {_BANDWIDTH_EXAMPLE}")
    if prefix not in _PREFIX:
        raise ConditionsError(f"--bandwidth: unknown unit {unit!r}; {_BANDWIDTH_EXAMPLE}")
    rate = value * _PREFIX[prefix] * per_unit
    if rate <= 0:
        raise ConditionsError(f"--bandwidth: must be above 0 (to stop traffic, freeze instead); {_BANDWIDTH_EXAMPLE}")
    return rate


def parse_bandwidth(text: str) -> dict[Direction, float | None]:
    """Bytes per second per direction; None means unlimited.

    ``"64KB/s"``, ``"1MB/s"``, ``"1MiB/s"``, ``"500kbit"``, ``"2Mbps"``, ``"c2s=64KB/s,s2c=1MB/s"``,
    ``"unlimited"``. K/M/G are decimal (as network rates are); Ki/Mi/Gi are binary; a bare number is B/s.
    """
    return {d: _bandwidth(v) for d, v in _per_direction("--bandwidth", text, _BANDWIDTH_EXAMPLE).items()}


def format_bandwidth(bytes_per_s: float | None) -> str:
    """``65536.0`` → ``"65.5 KB/s"``: decimal units, to match how the parser reads ``KB``."""
    if bytes_per_s is None:
        return "unlimited"
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.3g} {unit}"
    return f"{bytes_per_s:.3g} B/s"


def parse_spike(text: str, *, now_ns: int = 0) -> dict[Direction, Spike]:
    """``"every=30s,add=800ms,for=2s"`` (periodic) or ``"add=500ms,for=1s"`` (one-shot, starting now).

    Optional keys: ``after=5s`` delays the start, ``dir=c2s|s2c|both`` (default both). Units are required
    for spike lengths so ``for=2`` cannot silently mean 2 ms or 2 s. ``now_ns`` is the monotonic time the
    spike is counted from.
    """
    flag = "--spike"
    values: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not value.strip():
            raise ConditionsError(f"{flag}: expected KEY=VALUE, got {part.strip()!r}; {_SPIKE_EXAMPLE}")
        if key not in ("add", "for", "every", "after", "dir"):
            raise ConditionsError(f"{flag}: unknown key {key!r} (use add, for, every, after, dir); {_SPIKE_EXAMPLE}")
        if key in values:
            raise ConditionsError(f"{flag}: {key} given twice; {_SPIKE_EXAMPLE}")
        values[key] = value.strip()
    for key in ("add", "for"):
        if key not in values:
            raise ConditionsError(f"{flag}: missing {key}=; {_SPIKE_EXAMPLE}")
    add_ms = _duration_ms(flag, values["add"], _SPIKE_EXAMPLE, unit_required=True)
    for_s = _duration_ms(flag, values["for"], _SPIKE_EXAMPLE, unit_required=True) / 1000
    every_s = (
        _duration_ms(flag, values["every"], _SPIKE_EXAMPLE, unit_required=True) / 1000 if "every" in values else None
    )
    after_ms = _duration_ms(flag, values["after"], _SPIKE_EXAMPLE, unit_required=True) if "after" in values else 0.0
    where = values.get("dir", "both").lower()
    directions: tuple[Direction, ...]
    if where == "both":
        directions = (Direction.C2S, Direction.S2C)
    else:
        try:
            directions = (Direction.parse(where),)
        except ValueError:
            raise ConditionsError(f"{flag}: unknown dir {where!r} (use c2s, s2c or both); {_SPIKE_EXAMPLE}") from None
    try:
        spike = Spike(add_ms=add_ms, for_s=for_s, every_s=every_s, start_ns=now_ns + _ms_to_ns(after_ms))
    except ConditionsError as e:
        raise ConditionsError(f"{flag}: {e}; {_SPIKE_EXAMPLE}") from None
    return dict.fromkeys(directions, spike)


# ---------------------------------------------------------------------------------------------------------
# UDP impairment flags (docs/udp.md). Each takes one value for both directions or c2s=...,s2c=...; inside a
# value the parts are separated by ':' (',' separates the directions).

_LOSS_EXAMPLE: Final = "e.g. --loss 10, --loss c2s=5,s2c=1 or --loss gemodel:5:50 (netem's p r [1-h [1-k]])"
_DUPLICATE_EXAMPLE: Final = "e.g. --duplicate 5 or --duplicate 5:20ms (percent, then the copy's extra delay)"
_REORDER_EXAMPLE: Final = "e.g. --reorder 25 or --reorder 25:5 (percent, then netem's gap)"
_CORRUPT_EXAMPLE: Final = "e.g. --corrupt 1 (percent of datagrams with one bit flipped)"
_MTU_EXAMPLE: Final = "e.g. --mtu 1200 or --mtu 1200:truncate (default: drop)"
_BYTES_EXAMPLE: Final = "e.g. 16KB, 64KiB, 1500 or c2s=16KB,s2c=64KB"
_BYTES_RE: Final = re.compile(rf"\s*({_NUMBER})\s*(b|kb|kib|mb|mib)?\s*", re.IGNORECASE)
_BYTE_UNITS: Final = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def _percent_text(flag: str, text: str, example: str) -> float:
    t = text.strip().removesuffix("%")
    try:
        value = float(t)
    except ValueError:
        raise ConditionsError(f"{flag}: cannot read {text.strip()!r} as a percentage; {example}") from None
    if not 0 <= value <= 100:
        raise ConditionsError(f"{flag}: {text.strip()!r} is not a percentage from 0 to 100; {example}")
    return value


def _loss(text: str) -> tuple[float, GilbertElliott | None]:
    flag = "--loss"
    parts = text.split(":")
    if parts[0].strip().lower() in ("gemodel", "ge", "burst"):
        numbers = parts[1:]
        if not 1 <= len(numbers) <= 4:
            raise ConditionsError(f"{flag}: gemodel takes 1 to 4 percentages (p, r, 1-h, 1-k); {_LOSS_EXAMPLE}")
        values = [_percent_text(flag, n, _LOSS_EXAMPLE) for n in numbers]
        return 0.0, GilbertElliott(values[0], *values[1:2], *values[2:])
    if len(parts) != 1:
        raise ConditionsError(f"{flag}: cannot read {text.strip()!r}; {_LOSS_EXAMPLE}")
    value = _percent_text(flag, text, _LOSS_EXAMPLE)
    if value >= 100:
        raise ConditionsError(f"{flag}: must be below 100 (to stop a direction, freeze it); {_LOSS_EXAMPLE}")
    return value, None


def parse_loss(text: str) -> dict[Direction, tuple[float, GilbertElliott | None]]:
    """``"10"`` (random loss in percent, both directions), ``"c2s=5,s2c=1"``, ``"gemodel:5:50:80:1"`` (bursty loss,
    netem's gemodel p r 1-h 1-k). Each direction gets ``(loss_pct, burst_loss)``; one replaces the other. On TCP
    ``loss_pct`` is shown as retransmission delay (nothing is lost on a stream) and burst loss does not apply."""
    return {d: _loss(v) for d, v in _per_direction("--loss", text, _LOSS_EXAMPLE).items()}


def parse_duplicate(text: str) -> dict[Direction, tuple[float, float]]:
    """``"5"`` or ``"5:20ms"``: the share of datagrams (percent) sent twice, and the copy's extra delay (ms)."""
    out: dict[Direction, tuple[float, float]] = {}
    for d, v in _per_direction("--duplicate", text, _DUPLICATE_EXAMPLE).items():
        parts = v.split(":")
        if len(parts) > 2:
            raise ConditionsError(f"--duplicate: cannot read {v!r}; {_DUPLICATE_EXAMPLE}")
        pct = _percent_text("--duplicate", parts[0], _DUPLICATE_EXAMPLE)
        delay = _duration_ms("--duplicate", parts[1], _DUPLICATE_EXAMPLE) if len(parts) > 1 else 0.0
        out[d] = (pct, delay)
    return out


def parse_reorder(text: str) -> dict[Direction, tuple[float, int]]:
    """``"25"`` or ``"25:5"``: netem's reorder percentage and gap (needs latency: a reordered datagram skips it)."""
    out: dict[Direction, tuple[float, int]] = {}
    for d, v in _per_direction("--reorder", text, _REORDER_EXAMPLE).items():
        parts = v.split(":")
        if len(parts) > 2:
            raise ConditionsError(f"--reorder: cannot read {v!r}; {_REORDER_EXAMPLE}")
        pct = _percent_text("--reorder", parts[0], _REORDER_EXAMPLE)
        gap = 1
        if len(parts) > 1:
            g = parts[1].strip()
            if not g.isdigit() or int(g) < 1:
                raise ConditionsError(f"--reorder: the gap must be a whole number >= 1, got {parts[1]!r}; "
                                      f"{_REORDER_EXAMPLE}")
            gap = int(g)
        out[d] = (pct, gap)
    return out


def parse_corrupt(text: str) -> dict[Direction, float]:
    """``"1"``: the share of datagrams (percent) with one random bit flipped."""
    return {d: _percent_text("--corrupt", v, _CORRUPT_EXAMPLE)
            for d, v in _per_direction("--corrupt", text, _CORRUPT_EXAMPLE).items()}


def parse_mtu(text: str) -> dict[Direction, tuple[int, str]]:
    """``"1200"`` (larger datagrams are dropped) or ``"1200:truncate"`` (cut to 1,200 bytes)."""
    out: dict[Direction, tuple[int, str]] = {}
    for d, v in _per_direction("--mtu", text, _MTU_EXAMPLE).items():
        size, _, action = v.partition(":")
        action = action.strip().lower() or "drop"
        if not size.strip().isdigit() or not 1 <= int(size) <= 65535:
            raise ConditionsError(f"--mtu: expected 1 to 65535 bytes, got {size.strip()!r}; {_MTU_EXAMPLE}")
        if action not in MTU_ACTIONS:
            raise ConditionsError(f"--mtu: {action!r} is not drop or truncate; {_MTU_EXAMPLE}")
        out[d] = (int(size), action)
    return out


def parse_bytes(flag: str, text: str) -> dict[Direction, int]:
    """A byte count per direction (``16KB``, ``64KiB``, ``1500``), for ``--bandwidth-burst``/``--bandwidth-queue``."""
    out: dict[Direction, int] = {}
    for d, v in _per_direction(flag, text, _BYTES_EXAMPLE).items():
        m = _BYTES_RE.fullmatch(v)
        if m is None:
            raise ConditionsError(f"{flag}: cannot read {v!r} as a size; {_BYTES_EXAMPLE}")
        out[d] = round(float(m.group(1)) * _BYTE_UNITS[(m.group(2) or "").lower()])
    return out


_TEXT_SETTERS: Final[dict[str, tuple[Callable[[str], Mapping[Direction, Any]],
                                     Callable[[DirectionConditions, Any], DirectionConditions]]]] = {
    "latency": (parse_latency, lambda c, v: replace(c, latency_ms=v)),
    "jitter": (parse_jitter, lambda c, v: replace(c, jitter=v)),
    "bandwidth": (parse_bandwidth, lambda c, v: replace(c, bandwidth_bps=v)),
    "loss": (parse_loss, lambda c, v: replace(c, loss_pct=v[0], burst_loss=v[1])),
    "duplicate": (parse_duplicate, lambda c, v: replace(c, duplicate_fraction=v[0] / 100, duplicate_delay_ms=v[1])),
    "reorder": (parse_reorder, lambda c, v: replace(c, reorder_pct=v[0], reorder_gap=v[1])),
    "corrupt": (parse_corrupt, lambda c, v: replace(c, corrupt_pct=v)),
    "mtu": (parse_mtu, lambda c, v: replace(c, mtu=v[0], mtu_action=v[1])),
}
"""Each condition the command line writes as text: its parser and the fields its value sets (``spike`` apart: its
parser needs the start time, and a spike adds to the direction's spikes)."""


def set_from_text(per: dict[Direction, DirectionConditions], name: str, text: str, *, now_ns: int = 0,
                  directions: Iterable[Direction] = (Direction.C2S, Direction.S2C)) -> None:
    """Set one condition written as its command-line flag takes it (``name``: ``latency``, ``jitter``,
    ``bandwidth``, ``spike``, ``loss``, ``duplicate``, ``reorder``, ``corrupt`` or ``mtu``) on ``per``'s
    ``directions`` that the text names; a spike starting at ``now_ns`` is added to theirs. The one place that
    knows which fields a flag sets (the CLI's flags and the pytest plugin's ``conditions(...)`` both come here).
    Bad text raises :class:`ConditionsError` naming the flag."""
    wanted = set(directions)
    if name == "spike":
        for d, spike in parse_spike(text, now_ns=now_ns).items():
            if d in wanted:
                per[d] = replace(per[d], spikes=(*per[d].spikes, spike))
        return
    parse, change = _TEXT_SETTERS[name]
    for d, v in parse(text).items():
        if d in wanted:
            per[d] = change(per[d], v)

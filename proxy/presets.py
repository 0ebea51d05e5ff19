"""Presets: named network conditions, each with the source its numbers come from and that source's date.

Role: the table behind ``--preset NAME``, ``--list-presets`` and the window's preset menu. Numbers are copied
from their sources (Unity Multiplayer Tools, Unity Netcode for Entities, Chrome DevTools/Puppeteer, Apple's
Network Link Conditioner as copied by a third party) and translated to sockscope's model in a stated way:

- *Delay ± jitter* sources (Unity): sockscope's jitter only adds (mean J), so ``latency = delay − jitter``
  and jitter J uniform gives one-way delays spread over ``delay ± J`` with the source's mean. The delay is
  applied to each direction, so the added round trip is about twice the source's delay.
- *Round-trip latency* sources (Chrome): half goes to each direction.
- *Download/upload* sources: download is server→client (``s2c``), upload is client→server (``c2s``).
- *Packet loss*: TCP never loses a message, it retransmits it, so ``loss_pct`` becomes a retransmission
  delay (see ``DirectionConditions.loss_pct``). 100 % loss is a stalled connection: a freeze. On UDP the same
  ``loss_pct`` is real loss (docs/udp.md): Unity's simulator presets are defined for UDP, so there they mean
  exactly what their source says.

Presets are guesses that their authors revise (Unity changed its own); the source and date are data here
so the UI can show them next to the name.
Must not import: Qt, ``inspector``, asyncio, sockets, the clock; only ``proxy.model``/``proxy.conditions``.
Thread: engine loop thread; pure (module-level constants only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from proxy.conditions import (
    Conditions,
    ConditionsError,
    DirectionConditions,
    Jitter,
    Spike,
    format_bandwidth,
)

__all__ = ["PRESETS", "Preset", "find_preset", "list_presets_text"]

READ_ON: Final = "2026-11"
"""When sockscope's authors read the undated sources below; the numbers may have changed since."""


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    description: str
    """The source's own label, or what the preset stands for."""
    family: str
    """Short name of the source, for tables: "Unity MT" (Multiplayer Tools), "Unity N4E", "Chrome", ..."""
    source: str
    """Where the numbers come from, precise enough to look them up again."""
    source_date: str
    """The source's own date ("Q3 2022" in Unity's N4E file) or, for an undated source, when it was read."""
    source_values: str
    """The numbers exactly as the source gives them, before translation to sockscope's model."""
    conditions: Conditions
    loss_pct: float
    """The source's packet loss in percent (in ``conditions`` as ``loss_pct``: real loss on UDP, retransmission delay
    on TCP)."""
    notes: str = ""
    aliases: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------
# Builders: one per kind of source, so each translation rule is written once.

_UNITY_MT_SOURCE: Final = (
    "Unity Multiplayer Tools docs, Network Simulator > Network configuration presets "
    "(docs-multiplayer.unity3d.com/tools/current/tools-network-simulator/; same values in the package's "
    "NetworkSimulatorPresets)"
)
_UNITY_MT_DATE: Final = f"undated (read {READ_ON})"
_N4E_SOURCE: Final = "Unity Netcode for Entities, SimulatorPreset.cs (AppendBaseSimulatorPresets and offsets)"
_N4E_DATE: Final = "Q3 2022"
_CHROME_SOURCE: Final = (
    "Puppeteer PredefinedNetworkConditions (aligned with Chrome DevTools NetworkManager.ts; "
    "same values as devtools-frontend Slow3GConditions/Fast3GConditions)"
)
_CHROME_DATE: Final = f"undated (read {READ_ON})"
_APPLE_SOURCE: Final = (
    "Apple Network Link Conditioner reference profiles, as copied by useprobe.app/docs/throttling "
    "(second-hand: not checked against Apple's tool)"
)
_APPLE_DATE: Final = f"undated (read {READ_ON})"

_UNITY_NOTE: Final = (
    "Unity's delay is applied to each direction here, so the added round trip is about twice the delay. "
    "Unity's jitter is read as ± around the delay; sockscope's jitter only adds, so latency = delay − jitter."
)


def _centred(delay_ms: float, jitter_ms: float, loss_pct: float) -> Conditions:
    """A delay ± jitter source, translated so the one-way mean equals the source's delay (see module doc)."""
    return Conditions.symmetric(
        DirectionConditions(
            latency_ms=max(delay_ms - jitter_ms, 0.0),
            jitter=Jitter(jitter_ms, "uniform"),
            loss_pct=loss_pct,
        )
    )


def _unity(name: str, label: str, delay: float, jitter: float, loss: float, *aliases: str) -> Preset:
    note = _UNITY_NOTE
    if delay < jitter:
        note += " Here the jitter exceeds the delay, so the latency floor is 0 ms and the mean is a little higher."
    return Preset(
        name=name,
        description=label,
        family="Unity MT",
        source=_UNITY_MT_SOURCE,
        source_date=_UNITY_MT_DATE,
        source_values=f"{label}: delay {delay:g} ms, jitter {jitter:g} ms, loss {loss:g} %",
        conditions=_centred(delay, jitter, loss),
        loss_pct=loss,
        notes=note,
        aliases=aliases,
    )


def _kbit(kbit_per_s: float) -> float:
    return kbit_per_s * 1000 / 8


def _chrome(name: str, rtt_ms: float, down_bps: float, up_bps: float, values: str, notes: str = "") -> Preset:
    one_way = rtt_ms / 2
    return Preset(
        name=name,
        description=f"Chrome DevTools throttling preset {name.removeprefix('Chrome ')!r}",
        family="Chrome",
        source=_CHROME_SOURCE,
        source_date=_CHROME_DATE,
        source_values=values,
        conditions=Conditions(
            c2s=DirectionConditions(latency_ms=one_way, bandwidth_bps=up_bps),
            s2c=DirectionConditions(latency_ms=one_way, bandwidth_bps=down_bps),
        ),
        loss_pct=0.0,
        notes=(
            "Chrome's latency is per request (a round trip) and already includes a Lighthouse-style "
            "multiplier; half of it goes to each direction. Download is s2c, upload is c2s. " + notes
        ).strip(),
    )


def _apple(
    name: str, down_kbit: float, up_kbit: float, down_ms: float, up_ms: float, loss: float, values: str
) -> Preset:
    return Preset(
        name=name,
        description=f"Apple Network Link Conditioner profile {name.removeprefix('Apple ')!r}",
        family="Apple NLC (2nd-hand)",
        source=_APPLE_SOURCE,
        source_date=_APPLE_DATE,
        source_values=values,
        conditions=Conditions(
            c2s=DirectionConditions(latency_ms=up_ms, bandwidth_bps=_kbit(up_kbit), loss_pct=loss),
            s2c=DirectionConditions(latency_ms=down_ms, bandwidth_bps=_kbit(down_kbit), loss_pct=loss),
        ),
        loss_pct=loss,
        notes="Down is s2c, up is c2s; delays are per direction already. Verify against Apple's tool.",
    )


def _build() -> dict[str, Preset]:
    presets = [
        Preset(
            name="LAN",
            description="LAN",
            family="Unity N4E",
            source=_N4E_SOURCE,
            source_date=_N4E_DATE,
            source_values="LAN: delay 1 ms, jitter 1 ms, loss 1 %, fuzz 0 %",
            conditions=_centred(1, 1, 1),
            loss_pct=1.0,
            notes=_UNITY_NOTE
            + " The 1 % loss shows up as an occasional ~200 ms stall (the minimum TCP retransmission timeout).",
        ),
        _unity("Home fibre", "Home Fiber [Best real-world scenario]", 10, 1, 0, "Home fiber"),
        _unity("Home cable", "Home Cable [Optimal real-world scenario]", 25, 5, 0),
        _unity("Home broadband", "Home Broadband [WIFI, Cable, Console, PC]", 32, 12, 2),
        _unity("Home DSL", "Home DSL [ADSL or VDSL]", 30, 10, 0),
        _unity("Satellite", "Home Satellite [low Earth orbit]", 100, 10, 0),
        _unity("Congested Wi-Fi", "Home Broadband with Congested Network", 50, 50, 1),
        _unity("Mobile 2G", "Mobile 2G [CDMA & GSM, '00]", 520, 50, 7),
        _unity("Mobile 2.5G", "Mobile 2.5G [GPRS, G, '00]", 480, 40, 7),
        _unity("Mobile 2.75G", "Mobile 2.75G [Edge, E, '06]", 440, 40, 7),
        _unity("Mobile 3G", "Mobile 3G [WCDMA & UMTS, '03]", 360, 30, 7),
        _unity("Mobile 3.5G", "Mobile 3.5G [HSDPA, H, '06]", 160, 30, 6),
        _unity("Mobile 3.75G", "Mobile 3.75G [HDSDPA+, H+, '11]", 130, 30, 6),
        _unity("Mobile 4G", "Mobile 4G [4G, LTE, '13]", 100, 20, 4),
        _unity("Mobile 4.5G", "Mobile 4.5G [4G+, LTE-A, '16]", 80, 20, 4),
        _unity("Mobile 5G", "Mobile 5G ['20]", 30, 20, 4),
        _chrome(
            "Chrome Slow 3G",
            2000,
            50_000,
            50_000,
            "Slow 3G: 500 kbit/s × 0.8 = 50 000 B/s down and up, latency 400 ms × 5 = 2000 ms",
        ),
        _chrome(
            "Chrome Fast 3G",
            562.5,
            180_000,
            84_375,
            "Fast 3G: 1.6 Mbit/s × 0.9 ≈ 180 000 B/s down, 750 kbit/s × 0.9 ≈ 84 375 B/s up, "
            "latency 150 ms × 3.75 = 562.5 ms",
            notes="Chrome's 'Slow 4G' is an alias of this preset (crbug 342406608).",
        ),
        _chrome(
            "Chrome Fast 4G",
            165,
            1_012_500,
            168_750,
            "Fast 4G: 9 Mbit/s × 0.9 = 1 012 500 B/s down, 1.5 Mbit/s × 0.9 = 168 750 B/s up, "
            "latency 60 ms × 2.75 = 165 ms",
        ),
        _apple("Apple DSL", 2000, 256, 5, 5, 0, "DSL: 2 Mbps down, 256 kbps up, delay 5/5 ms, loss 0 %"),
        _apple("Apple 3G", 780, 330, 100, 100, 0, "3G: 780 kbps down, 330 kbps up, delay 100/100 ms, loss 0 %"),
        _apple("Apple LTE", 50_000, 10_000, 50, 65, 0, "LTE: 50 Mbps down, 10 Mbps up, delay 50/65 ms, loss 0 %"),
        _apple(
            "Apple Very Bad Network",
            1000,
            1000,
            500,
            500,
            10,
            "Very Bad Network: 1 Mbps down and up, delay 500/500 ms, loss 10 %/10 %",
        ),
        Preset(
            name="Apple 100% Loss",
            description="Apple Network Link Conditioner profile '100% Loss'",
            family="Apple NLC (2nd-hand)",
            source=_APPLE_SOURCE,
            source_date=_APPLE_DATE,
            source_values="100% Loss: loss 100 %",
            conditions=Conditions.symmetric(DirectionConditions(frozen=True)),
            loss_pct=100.0,
            notes=(
                "On TCP, 100 % loss never drops a message: the connection stalls until the network comes "
                "back. sockscope models that as a freeze of both directions; thaw or pick another preset."
            ),
        ),
        Preset(
            name="Intercontinental",
            description="Broadband [WIFI] / International [50th Percentile]",
            family="Unity N4E",
            source=_N4E_SOURCE,
            source_date=_N4E_DATE,
            source_values=(
                "Broadband [WIFI] 1 ms / 1 ms / 1 % + International 50th percentile offsets "
                "+120 ms / +10 ms / +2 % = delay 121 ms, jitter 11 ms, loss 3 %"
            ),
            conditions=_centred(121, 11, 3),
            loss_pct=3.0,
            notes=_UNITY_NOTE + " A player on another continent from the server, on a typical connection.",
        ),
        Preset(
            name="Bad Wi-Fi with spikes",
            description="A congested home Wi-Fi with a long jitter tail and a lag spike every 20 s",
            family="sockscope",
            source=(
                "sockscope's own teaching scenario, not a measurement: Unity's 'Home Broadband with "
                "Congested Network' (50 ms, jitter 50 ms, loss 1 %) with exponential jitter and periodic spikes"
            ),
            source_date=READ_ON,
            source_values="latency 10 ms + exponential jitter 40 ms (cap 400 ms), loss 1 %, +500 ms for 1 s every 20 s",
            conditions=Conditions.symmetric(
                DirectionConditions(
                    latency_ms=10,
                    jitter=Jitter(40, "exponential", cap_ms=400),
                    spikes=(Spike(add_ms=500, for_s=1, every_s=20),),
                    loss_pct=1.0,
                )
            ),
            loss_pct=1.0,
            notes=(
                "Exponential jitter (Valve GameNetworkingSockets' model) gives mostly small delays with "
                "rare large ones; the spike phase is arbitrary (counted from the monotonic clock's origin)."
            ),
        ),
    ]
    return {p.name: p for p in presets}


PRESETS: Final[dict[str, Preset]] = _build()


def _key(name: str) -> str:
    # "Home fibre", "home-fibre", "HomeFibre" and "home_fibre" all name the same preset.
    return re.sub(r"[^0-9a-z]", "", name.lower())


def find_preset(name: str) -> Preset:
    """Look a preset up by name or alias, ignoring case, spaces and punctuation.

    A unique partial name works too (``slow3g`` finds "Chrome Slow 3G"). An unknown or ambiguous name
    raises :class:`ConditionsError` listing the candidates.
    """
    key = _key(name)
    if not key:
        raise ConditionsError(f"--preset: empty name; known presets: {', '.join(PRESETS)}")
    exact = [p for p in PRESETS.values() if key in {_key(n) for n in (p.name, *p.aliases)}]
    if exact:
        return exact[0]
    partial = [p for p in PRESETS.values() if any(key in _key(n) for n in (p.name, *p.aliases))]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(p.name for p in partial)
        raise ConditionsError(f"--preset: {name!r} matches several presets: {names}")
    raise ConditionsError(
        f"--preset: unknown preset {name!r}; known presets: {', '.join(PRESETS)} (see --list-presets)"
    )


def _direction_cell(cond: DirectionConditions) -> str:
    if cond.frozen:
        return "frozen"
    j = cond.jitter
    lo, hi = cond.latency_ms, cond.latency_ms + j.effective_cap_ms
    text = f"{lo:g} ms" if j.ms == 0 else f"{lo:g}–{hi:g} ms"
    if j.ms and j.distribution != "uniform":
        # A range alone hides a skewed shape: 10–410 ms exponential mostly sits near 10–60 ms.
        text += f" ({j.distribution[:3]}, mean {lo + j.mean_ms:.0f})"
    if cond.bandwidth_bps is not None:
        text += f", {format_bandwidth(cond.bandwidth_bps)}"
    return text


def list_presets_text() -> str:
    """The ``--list-presets`` table: one-way delay range and bandwidth per direction, loss, source, date."""
    header = ("Preset", "c2s (up) one-way", "s2c (down) one-way", "Loss", "Source", "Date")
    rows = [header]
    for p in PRESETS.values():
        extras = " + spikes" if p.conditions.c2s.spikes or p.conditions.s2c.spikes else ""
        rows.append(
            (
                p.name,
                _direction_cell(p.conditions.c2s) + extras,
                _direction_cell(p.conditions.s2c) + extras,
                f"{p.loss_pct:g} %",
                p.family,
                p.source_date,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines += [
        "Delays are one-way, per direction: a round trip gets both.",
        "Loss on TCP shows up as delay: a lost message is retransmitted after ~max(200 ms, 2 × RTT)",
        "and holds back everything behind it (head-of-line blocking). Details: docs/conditions.md.",
        "Loss on UDP (--udp) is real: that share of datagrams never arrives. Details: docs/udp.md.",
        "Use a name with --preset (case, spaces and punctuation ignored); other flags override its values.",
    ]
    return "\n".join(lines)

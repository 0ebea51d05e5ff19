"""Decoders for captured messages: text, JSON, msgpack, pickle (read safely), struct, ENet and Godot, hex, plugins.

Role: re-exports the decoder API and builds the default registry (built-ins in confidence-tie order, then the
``sockscope.decoders`` entry points) on first use, so importing this package stays cheap: the decoders' and the
registry's modules are imported on first use of one of their names too.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure. :func:`default_registry` is safe to call from several threads.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from proxy.model import Message

from ._api import (
    EMPTY_CONTEXT,
    GAVE_UP,
    MAX_DUMP,
    MAX_NODES,
    MAX_PARSE,
    SUMMARY_CONTEXT,
    SUMMARY_MAX,
    DecodeContext,
    Decoder,
    EncodeError,
    Encoder,
    Field,
    View,
    error_view,
    framing_delimiter,
    gave_up,
    gave_up_summary,
    gave_up_view,
    hex_dump,
    past_deadline,
    set_deadline,
    with_deadline,
)

# The decoders and the registry load on first use (PEP 562 ``__getattr__`` below): the window imports this package
# for its types and ``parse_layout`` before its first frame, and pickle's reader, the registry (importlib.metadata
# for the plugins) and the rest cost ~60 ms there. ``_api`` (the types) is cheap and stays eager.
_LAZY: dict[str, str] = {
    "EnetDecoder": "._enet",
    "GodotDecoder": "._godot",
    "HexDecoder": "._hex",
    "JsonDecoder": "._json",
    "MsgpackDecoder": "._msgpack",
    "PickleDecoder": "._pickle",
    "PickleGlobal": "._pickle",
    "PickleObject": "._pickle",
    "PicklePersistent": "._pickle",
    "AUTO": "._registry",
    "ENTRY_POINT_GROUP": "._registry",
    "DecoderRegistry": "._registry",
    "PluginLoadError": "._registry",
    "render": "._render",
    "StructDecoder": "._struct",
    "parse_layout": "._struct",
    "TextDecoder": "._text",
    "WebSocketDecoder": "._websocket",
}

if TYPE_CHECKING:
    from ._enet import EnetDecoder
    from ._godot import GodotDecoder
    from ._hex import HexDecoder
    from ._json import JsonDecoder
    from ._msgpack import MsgpackDecoder
    from ._pickle import PickleDecoder, PickleGlobal, PickleObject, PicklePersistent
    from ._registry import AUTO, ENTRY_POINT_GROUP, DecoderRegistry, PluginLoadError
    from ._render import render
    from ._struct import StructDecoder, parse_layout
    from ._text import TextDecoder
    from ._websocket import WebSocketDecoder


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "AUTO",
    "EMPTY_CONTEXT",
    "ENTRY_POINT_GROUP",
    "GAVE_UP",
    "MAX_DUMP",
    "MAX_NODES",
    "MAX_PARSE",
    "SUMMARY_CONTEXT",
    "SUMMARY_MAX",
    "DecodeContext",
    "Decoder",
    "DecoderRegistry",
    "EncodeError",
    "Encoder",
    "EnetDecoder",
    "Field",
    "GodotDecoder",
    "HexDecoder",
    "JsonDecoder",
    "MsgpackDecoder",
    "PickleDecoder",
    "PickleGlobal",
    "PickleObject",
    "PicklePersistent",
    "PluginLoadError",
    "StructDecoder",
    "TextDecoder",
    "View",
    "WebSocketDecoder",
    "builtin_decoders",
    "decode",
    "decode_message",
    "default_registry",
    "error_view",
    "existing_registry",
    "framing_delimiter",
    "gave_up",
    "gave_up_summary",
    "gave_up_view",
    "hex_dump",
    "parse_layout",
    "past_deadline",
    "render",
    "set_deadline",
    "with_deadline",
]


def builtin_decoders() -> list[Decoder]:
    """Fresh instances of the built-ins, in the order that breaks confidence ties."""
    from ._enet import EnetDecoder
    from ._godot import GodotDecoder
    from ._hex import HexDecoder
    from ._json import JsonDecoder
    from ._msgpack import MsgpackDecoder
    from ._pickle import PickleDecoder
    from ._struct import StructDecoder
    from ._text import TextDecoder
    from ._websocket import WebSocketDecoder

    return [TextDecoder(), JsonDecoder(), MsgpackDecoder(), PickleDecoder(), StructDecoder(), WebSocketDecoder(),
            EnetDecoder(), GodotDecoder(), HexDecoder()]


_default: DecoderRegistry | None = None
_lock = threading.Lock()


def default_registry() -> DecoderRegistry:
    """The process-wide registry: built-ins plus installed plugins (see ``load_errors`` for broken ones)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                from ._registry import DecoderRegistry

                reg = DecoderRegistry(builtin_decoders())
                reg.load_entry_points()
                _default = reg
    return _default


def existing_registry() -> DecoderRegistry | None:
    """The process-wide registry if :func:`default_registry` has made it, else None: a caller that only resets
    its settings need not load the decoders to do so."""
    return _default


def decode(data: bytes, ctx: DecodeContext = EMPTY_CONTEXT) -> View:
    """Decode with the default registry ("decode as" from ``ctx``, else auto). Never raises."""
    return default_registry().decode(data, ctx)


def decode_message(msg: Message, *, detail: bool = True, deadline_ns: int | None = None) -> View:
    """Decode a captured message with the default registry and its per-connection settings.

    ``detail`` False gives a summary-only view (see :attr:`DecodeContext.detail`): several times faster, for
    callers that read only the decoder, summary, values and error."""
    return default_registry().decode_message(msg, detail=detail, deadline_ns=deadline_ns)

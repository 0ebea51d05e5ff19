"""What the window says when something did not work: what happened and what to do, in a learner's words.

Role: commands go to the proxy by their wire names (``release``, ``inject`` ...) and fail with the engine's text
(``inject: no open connection #3``); a learner should read neither. :func:`failure_text` turns a failed command into
one sentence that names the action as the window's buttons do, says why, and, where it can, what to do next.
:func:`start_error_text` does the same for a proxy that could not start (a command-line hint becomes a toolbar one).
Must not import: Qt, ``inspector.bridge``.
Thread: any; pure.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ACTIONS", "failure_text", "start_error_text"]

ACTIONS: Final = {
    "set_conditions": "change the network conditions",
    "spike": "add a lag spike",
    "fault": "drop or duplicate the next message",
    "hold_next": "hold the next message",
    "cancel_hold_next": "cancel the hold of the next message",
    "release": "forward the held message",
    "edit": "forward the edited message",
    "drop": "drop the held message",
    "release_all": "forward the held messages",
    "inject": "send the message",
    "replay": "replay the connection",
    "close": "close the connection",
    "reset": "reset the connection",
    "set_rules": "change the rules",
    "set_framing": "change the framing",
    "set_connection_framing": "change the connection's framing",
    "pause_capture": "pause the proxy's capture",
    "resume_capture": "resume the proxy's capture",
    "ping": "reach the proxy",
    "snapshot": "ask the proxy what is in force",
}
"""Each command, as the action a user took."""

NOT_RUNNING: Final = "the proxy is not running"


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def failure_text(command: str, error: str) -> str:
    """``Could not <action>: <why>. <what to do>`` for command ``command`` that failed with ``error``."""
    action = ACTIONS.get(command, "do that")
    why = error.strip()
    # the engine prefixes its errors with the command's wire name ("inject: no open connection #3")
    for prefix in (f"{command}: ", f"{command} failed: "):
        if why.startswith(prefix):
            why = why[len(prefix):]
    why = why.removeprefix("KeyError: ").removeprefix("ValueError: ").strip("'\" ")
    hint = ""
    if why == NOT_RUNNING or why.startswith("the proxy is not running"):
        why = NOT_RUNNING
        hint = "Press ▶ Start in the toolbar (or Start again) first."
    elif m := re.search(r"message (\d+) is not held or waiting", why):
        why = f"message #{m.group(1)} is not held any more"
        hint = "It was already forwarded or dropped, or its connection closed."
    elif m := re.search(r"no open connection #?(\d+)", why):
        n = m.group(1)
        why = f"connection #{n} is closed"
        if command == "inject":
            hint = (f"Nothing can be sent on a closed connection. To send connection #{n}'s client messages again "
                    "on a new connection, use Intercept ▸ Replay connection (Ctrl+R).")
        elif command in ("close", "reset"):
            hint = "There is nothing left to close."
    elif m := re.search(r"nothing recorded from the client of connection #(\d+)", why):
        why = f"the client of connection #{m.group(1)} sent nothing to replay"
        hint = "Select a connection whose client sent something."
    elif "timed out" in why or "timeout" in why:
        hint = "The proxy may be busy; try again."
    why = why.rstrip(". ") or "the proxy gave no reason"
    return f"Could not {action}: {why}." + (f" {hint}" if hint else "")


def start_error_text(error: str, listen: tuple[str, int] | None = None) -> str:
    """Why the proxy could not start, with a window user's remedy instead of a command-line flag."""
    text = error.strip()
    m = re.search(r"port (\d+) on (\S+) is already in use", text)
    if m:
        port = m.group(1)
        return (f"Port {port} is already in use: another program (or another sockscope window) is listening "
                f"there. Type another client port in the toolbar (for example {int(port) + 1}) and press ▶ Start, "
                "or close the other program.")
    text = re.sub(r";? ?(pick|use) another with --listen \S+", "", text)
    return _sentence(text)

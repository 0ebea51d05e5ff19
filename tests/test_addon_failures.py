"""What an addon's failures cost: nothing but a report. Exceptions (with their traceback and line), an addon that
keeps failing (disabled), hooks that hang (bounded), and a file that changes (loaded again, or, when the new
version is broken, reported with its line while the old one keeps running).

Real relays and real sockets; waits are on records (bounded), never on sleeps. A changed file gets an mtime a second
later than the one loaded, as an editor's save would, so that the change is seen whatever the file system's clock
granularity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.addonhost import FAILURE_LIMIT, REPORT_LIMIT, AddonHost
from proxy.framing import FramingSpec
from proxy.model import Message, MessageState, MessageUpdated, Notice
from proxy.runner import ProxyThread
from tests.conftest import EchoServer, Recorder, connect, recv_exact
from tests.test_addon_hooks import load, wait_line, wait_notice, write_addon


@pytest.fixture
def proxy(start_proxy: Callable[..., ProxyThread], echo_server: EchoServer) -> ProxyThread:
    p = start_proxy(echo_server.port, FramingSpec("lines", "lines"))
    p.server.addons = p.call(lambda: AddonHost(p.server, reload_poll=0.05, observe_timeout=0.3))
    return p


def errors(rec: Recorder) -> list[str]:
    return [n.text for n in rec.of(Notice) if n.level == "error"]


def rewrite(path: Path, source: str) -> None:
    """A new version of the file, saved a second after the last one (see the module's docstring)."""
    st = path.stat()
    write_addon(path.parent, source, path.name)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


RAISES = """\
from proxy.addons import Addon, AddonContext, Message


class Picky(Addon):
    modifies = True

    def message(self, ctx: AddonContext, msg: Message) -> None:
        if b"bad" in msg.data:
            fields = {}
            ctx.replace(fields["name"])
        ctx.replace(msg.data.upper())


addons = [Picky()]
"""


@pytest.mark.timeout(60)
def test_an_exception_is_reported_with_its_traceback_and_its_message_goes_on_unchanged(
        tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    path = write_addon(tmp_path, RAISES, "picky.py")
    load(proxy, path)
    with connect(proxy.port) as c:
        c.sendall(b"ok\nbad\nok2\n")
        # the hook that raised changed nothing; the ones before and after it did their work (s2c too: the echo)
        assert recv_exact(c, 11) == b"OK\nbad\nOK2\n"
    wait_notice(recorder, lambda n: n.level == "error" and "s2c) went on unchanged" in n.text)  # the echo, too
    text = errors(recorder)[0]
    head, _, trace = text.partition("\n")
    assert head.startswith("addon 'Picky' (picky.py): message() raised KeyError: 'name' at line 10; message ")
    assert "(#1 c2s) went on unchanged" in head
    assert trace.startswith("Traceback (most recent call last):")
    assert f'File "{path}", line 10, in message' in trace and 'ctx.replace(fields["name"])' in trace
    assert "addonhost" not in trace  # the addon's frames only
    assert proxy.server.shared.intercept  # one failure does not disable it


@pytest.mark.timeout(60)
def test_an_observer_that_raises_is_reported_and_changes_nothing(
        tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    load(proxy, write_addon(tmp_path, """
        def connection_opened(ctx, conn):
            1 / 0
    """, "divides.py"))
    with connect(proxy.port) as c:
        c.sendall(b"x\n")
        assert recv_exact(c, 2) == b"x\n"
    n = wait_notice(recorder, lambda n: n.level == "error")
    assert ("addon 'divides' (divides.py): connection_opened() raised ZeroDivisionError: division by zero at line 3"
            in n.text)
    assert "Traceback" in n.text


@pytest.mark.timeout(60)
def test_an_addon_that_keeps_failing_is_disabled_and_said_so_once(
        tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    load(proxy, write_addon(tmp_path, """
        modifies = True

        def message(ctx, msg):
            raise ValueError("never works")
    """, "broken.py"))
    with connect(proxy.port) as c:
        lines = b"".join(b"m%d\n" % i for i in range(FAILURE_LIMIT + 3))
        c.sendall(lines)
        assert recv_exact(c, len(lines)) == lines  # every message went on unchanged
        n = wait_notice(recorder, lambda n: "is disabled" in n.text)
        assert n.text.startswith(f"addon 'broken' (broken.py) is disabled: {FAILURE_LIMIT} calls in a row failed")
        assert "save it: it is loaded again" in n.text
        assert not proxy.server.shared.intercept  # nothing is held for it any more
        c.sendall(b"after\n")
        assert recv_exact(c, 6) == b"after\n"
    tracebacks = [t for t in errors(recorder) if "Traceback" in t]
    assert len(tracebacks) == REPORT_LIMIT
    assert "Further failures of this addon are counted, not shown." in tracebacks[-1]


@pytest.mark.timeout(60)
def test_a_hung_observer_is_interrupted_and_the_relay_never_waits_for_it(
        tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    load(proxy, write_addon(tmp_path, """
        def message(ctx, msg):
            while msg.data == b"hang\\n":
                pass
            ctx.log(f"saw {msg.data!r}")
    """, "hangs.py"))
    with connect(proxy.port) as c:
        c.sendall(b"hang\n")
        assert recv_exact(c, 5) == b"hang\n"  # forwarded before the observer even started
        n = wait_notice(recorder, lambda n: "did not return within 0.3 s" in n.text)
        assert "(it was at line 3)" in n.text and "it was interrupted" in n.text
        c.sendall(b"next\n")
        assert recv_exact(c, 5) == b"next\n"
        wait_line(recorder, "saw b'next\\n'")  # its thread is free again


@pytest.mark.timeout(60)
def test_a_late_decision_is_ignored(tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    load(proxy, write_addon(tmp_path, """
        import threading
        from proxy.addons import Addon

        release = threading.Event()

        class Slow(Addon):
            modifies = True
            timeout = 0.2

            def message(self, ctx, msg):
                if msg.data == b"slow\\n":
                    release.wait(5)  # a wait in C: the interrupt lands when it returns
                    ctx.replace(b"too late\\n")

            def tick(self, ctx):
                pass

        addons = [Slow()]
    """, "slow.py"))
    with connect(proxy.port) as c:
        c.sendall(b"slow\n")
        assert recv_exact(c, 5) == b"slow\n"  # the original, after the timeout
    n = wait_notice(recorder, lambda n: "did not return within 0.2 s" in n.text)
    assert "message 1 (#1 c2s) went on unchanged" in n.text


@pytest.mark.timeout(60)
def test_shutdown_forwards_what_is_held_for_an_addon(tmp_path: Path, start_proxy: Callable[..., ProxyThread],
                                                    echo_server: EchoServer, recorder: Recorder) -> None:
    p = start_proxy(echo_server.port, FramingSpec("lines", "lines"))
    load(p, write_addon(tmp_path, """
        import threading
        modifies = True
        timeout = 10
        never = threading.Event()

        def message(ctx, msg):
            ctx.log("holding")
            never.wait(30)
    """, "holds.py"))
    with connect(p.port) as c:
        c.sendall(b"keep me\n")
        wait_line(recorder, "holding")  # said at once, while the hook still runs
        (held,) = [m for m in recorder.of(Message) if m.data == b"keep me\n"]
        p.stop()
        # the proxy let the held message go on to the server before closing, rather than discarding it
        states = [u.state for u in recorder.of(MessageUpdated) if u.msg_id == held.id]
        assert states[-1] is MessageState.FORWARDED, states


@pytest.mark.timeout(60)
def test_shutdown_forwards_what_an_addon_delayed(tmp_path: Path, start_proxy: Callable[..., ProxyThread],
                                                 echo_server: EchoServer, recorder: Recorder) -> None:
    p = start_proxy(echo_server.port, FramingSpec("lines", "lines"))
    load(p, write_addon(tmp_path, """
        modifies = True

        def message(ctx, msg):
            ctx.replace(b"edited\\n")
            ctx.delay(30)
    """, "delays.py"))
    with connect(p.port) as c:
        c.sendall(b"later\n")
        host = p.server.addons
        assert host is not None
        deadline = time.monotonic() + 10
        while not p.call(lambda: bool(host._delayed)):  # each look is a round trip to the engine's thread
            assert time.monotonic() < deadline, "the addon's decision never arrived"
        (held,) = [m for m in recorder.of(Message) if m.data == b"later\n"]
        p.stop()
    updates = [u for u in recorder.of(MessageUpdated) if u.msg_id == held.id]
    assert updates[-1].state is MessageState.FORWARDED and b"edited\n" in [u.data for u in updates]


V1 = """
    modifies = True

    def message(ctx, msg):
        if msg.direction.label == "c2s":
            ctx.replace(b"v1 " + msg.data)
"""
V2 = V1.replace("v1 ", "v2 ")
BROKEN = """
    modifies = True

    def message(ctx, msg)
        pass
"""


@pytest.mark.timeout(60)
def test_a_changed_file_is_loaded_again_and_a_broken_change_keeps_the_old_version(
        tmp_path: Path, proxy: ProxyThread, recorder: Recorder) -> None:
    path = write_addon(tmp_path, V1, "versions.py")
    load(proxy, path)

    def roundtrip(line: bytes) -> bytes:
        with connect(proxy.port) as c:
            c.sendall(line)
            return recv_exact(c, len(line) + 3)

    assert roundtrip(b"a\n") == b"v1 a\n"
    rewrite(path, V2)
    wait_notice(recorder, lambda n: n.text == "addon file versions.py changed: loaded again (versions)")
    assert roundtrip(b"b\n") == b"v2 b\n"

    rewrite(path, BROKEN)
    n = wait_notice(recorder, lambda n: n.level == "error" and "changed but cannot be loaded" in n.text)
    assert n.text.startswith("addon file versions.py changed but cannot be loaded: SyntaxError: expected ':' at line "
                             "4; the previous version keeps running")
    assert roundtrip(b"c\n") == b"v2 c\n"

    rewrite(path, V1)
    recorder.wait_for(lambda r: isinstance(r, Notice) and r.text.endswith("changed: loaded again (versions)")
                      and sum(isinstance(x, Notice) and "loaded again (versions)" in x.text
                              for x in recorder.records) == 2)
    assert roundtrip(b"d\n") == b"v1 d\n"


@pytest.mark.timeout(60)
def test_saving_a_disabled_addon_loads_it_again_enabled(tmp_path: Path, proxy: ProxyThread,
                                                        recorder: Recorder) -> None:
    path = write_addon(tmp_path, """
        modifies = True

        def message(ctx, msg):
            raise RuntimeError("not yet")
    """, "fixme.py")
    load(proxy, path)
    with connect(proxy.port) as c:
        lines = b"x\n" * FAILURE_LIMIT
        c.sendall(lines)
        recv_exact(c, len(lines))
    wait_notice(recorder, lambda n: "is disabled" in n.text)
    rewrite(path, V1)
    wait_notice(recorder, lambda n: "fixme.py changed: loaded again" in n.text)
    assert proxy.server.shared.intercept
    with connect(proxy.port) as c:
        c.sendall(b"y\n")
        assert recv_exact(c, 5) == b"v1 y\n"

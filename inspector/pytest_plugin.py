"""The pytest plugin: the ``sockscope_proxy`` fixture, and the capture of a failing test saved for you.

Role: registered through the ``pytest11`` entry point (``sockscope``), so installing sockscope makes the fixture
available in every test suite; ``-p no:sockscope`` turns it off. ``sockscope_proxy(target=(host, port))`` starts an
in-process proxy (:class:`inspector.testing.SockscopeProxy`) and the fixture stops every proxy it started when the
test ends. When a test that used one fails, :func:`pytest_runtest_makereport` saves each proxy's capture as a
session file and a pcapng next to pytest's temporary files (or under ``--sockscope-dir``) and adds a
"sockscope" section to the failure report with both paths and the last messages.

It is loaded by every pytest run on a machine where sockscope is installed, so it must cost nothing to tests that
do not use it: this module imports only pytest and the standard library; the engine, the decoders and the
exporters load when a test first asks for a proxy. The hooks look at one stash key and return.
Must not import (at module level): ``proxy``, other ``inspector`` modules, Qt.
Thread: pytest's (the main thread, or an xdist worker's); proxies run their engines on their own threads.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from inspector.testing import ProxyFactory, SockscopeProxy

__all__ = ["pytest_addoption", "pytest_runtest_makereport", "sockscope_proxy"]

_PROXIES: pytest.StashKey[list[SockscopeProxy]] = pytest.StashKey()
"""The proxies a test started, on its item: the report hook saves their captures when the test fails."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sockscope", "sockscope (in-process proxy for network tests)")
    group.addoption("--sockscope-dir", default=None, metavar="DIR",
                    help="where a failing test's capture is saved (a session file and a pcapng per proxy); "
                         "default: a 'sockscope' folder in pytest's temporary directory")
    parser.addini("sockscope_dir", "where a failing test's sockscope capture is saved (see --sockscope-dir)",
                  default=None)


def _artifacts_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("sockscope_dir", None) or config.getini("sockscope_dir")
    if chosen:
        return Path(chosen).resolve()
    factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmpdir plugin; absent with -p no:tmpdir
    if factory is not None:
        return Path(factory.getbasetemp()) / "sockscope"
    return Path.cwd() / ".sockscope"


def _stem(item: pytest.Item, index: int, count: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.replace("::", "__")).strip("_")[-150:]
    worker = getattr(item.config, "workerinput", {}).get("workerid")
    if worker:
        name = f"{worker}-{name}"  # one folder per worker already; named anyway, for --sockscope-dir
    return name if count == 1 else f"{name}-proxy{index}"


@pytest.hookimpl(hookwrapper=True)  # the old style: also the pytest 7 that game projects may still run
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    proxies = item.stash.get(_PROXIES, None)
    if not proxies or not report.failed:
        return
    folder = _artifacts_dir(item.config)
    for i, proxy in enumerate(proxies, 1):
        try:
            text = proxy.report(folder / _stem(item, i, len(proxies)))
        except Exception as e:  # the test's own failure must still be reported
            text = f"sockscope: could not save the capture of proxy {proxy!r}: {type(e).__name__}: {e}"
        report.sections.append((f"sockscope proxy {proxy.name}" if len(proxies) > 1 else "sockscope", text))


@pytest.fixture
def sockscope_proxy(request: pytest.FixtureRequest) -> Generator[ProxyFactory, None, None]:
    """Start in-process sockscope proxies: ``proxy = sockscope_proxy(target=(host, port))``.

    Also ``udp=True``, ``framing="lines"``, ``seed=1``, ``preset="Mobile 4G"``, ``latency=100``. The proxy
    (:class:`inspector.testing.SockscopeProxy`) listens on a free port of 127.0.0.1 (``proxy.listen``); use
    ``with proxy.conditions(latency=100):``, ``with proxy.down():``, ``with proxy.freeze():``,
    ``proxy.expect(filter, within=s)`` and ``proxy.messages``. Every proxy stops when the test ends; if the test
    failed, its capture is saved and the report says where (docs/testing.md).
    """
    from inspector.testing import ProxyFactory

    factory = ProxyFactory()
    request.node.stash[_PROXIES] = factory.proxies
    try:
        yield factory
    finally:
        factory.close()

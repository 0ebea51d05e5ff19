"""Filter-compiler plugins (``sockscope.filter_compilers``): one that fails to load is reported, not swallowed.

The entry points here are real ``importlib.metadata.EntryPoint`` objects whose ``load()`` really imports (and
fails); the rules module's plugin state is reset around each test so the installed inspector plugin does not mask
what is tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from proxy import rules
from proxy.model import Direction, Message
from proxy.rules import FILTER_COMPILER_GROUP, Match, RuleError


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=FILTER_COMPILER_GROUP)


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(rules, "_compilers", [])
    monkeypatch.setattr(rules, "_load_errors", [])
    monkeypatch.setattr(rules, "_scanned", False)
    yield


def test_a_rule_that_needs_a_filter_names_the_plugin_that_failed_and_why(no_plugins: None) -> None:
    errors = rules.load_filter_compilers([entry_point("mine", "sockscope_no_such_plugin_module:compile"),
                                         entry_point("odd", "inspector.filters:MAX_NESTING")])
    assert [e.plugin for e in errors] == ["mine = sockscope_no_such_plugin_module:compile",
                                          "odd = inspector.filters:MAX_NESTING"]
    assert "ModuleNotFoundError" in errors[0].error and "not callable" in errors[1].error
    with pytest.raises(RuleError) as caught:
        Match(expression='json.type == "ping"')
    text = str(caught.value)
    assert "'mine = sockscope_no_such_plugin_module:compile' failed to load: ModuleNotFoundError" in text, text
    assert "'odd = inspector.filters:MAX_NESTING' failed to load: TypeError" in text, text
    assert rules.filter_compiler_errors() == errors


def test_a_broken_plugin_next_to_a_working_one_is_recorded_and_rules_work(no_plugins: None) -> None:
    errors = rules.load_filter_compilers([entry_point("broken", "sockscope_no_such_plugin_module:compile"),
                                         entry_point("inspector", "inspector.filters:compile_for_engine")])
    assert len(errors) == 1 and errors[0].plugin.startswith("broken")
    m = Match(expression='json.type == "ping"')
    assert m.matches(Message(1, 1, Direction.C2S, 1, b'{"type": "ping"}', 0, 0))
    assert not m.matches(Message(2, 1, Direction.C2S, 2, b'{"type": "pong"}', 0, 0))


def test_without_any_plugin_the_rule_says_the_inspector_is_needed(no_plugins: None) -> None:
    assert rules.load_filter_compilers([]) == []
    with pytest.raises(RuleError, match="need the inspector installed"):
        Match(expression="c2s")


def test_the_installed_inspector_plugin_loads() -> None:
    m = Match(expression="size > 3")
    assert m.matches(Message(1, 1, Direction.C2S, 1, b"four", 0, 0))
    assert not [e for e in rules.filter_compiler_errors() if e.plugin.startswith("inspector ")]

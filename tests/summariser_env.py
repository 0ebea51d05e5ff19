"""The environment of a child process whose terminal printer finds the inspector's summariser.

The printer (``proxy/printer.py``) finds its summariser only through the ``sockscope.summarisers`` entry point,
which exists once sockscope is installed from a pyproject.toml that declares it. A checkout under test may be
newer than the installed metadata (an editable install made before the entry point was added), so the child gets
a minimal distribution of its own on its ``PYTHONPATH`` declaring this checkout's entry point (read from its
pyproject.toml), unless the installed metadata already has it.
"""

from __future__ import annotations

import os
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUP = "sockscope.summarisers"


def summariser_env(base: dict[str, str], tmp: Path) -> dict[str, str]:
    """``base`` with ``PYTHONPATH`` such that the child's printer loads this checkout's summariser plugin."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    env = dict(base)
    paths = [str(REPO)]
    if installed != declared:
        dist = tmp / "sockscope_test_summarisers-0.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sockscope-test-summarisers\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text(
            f"[{GROUP}]\n" + "".join(f"{name} = {value}\n" for name, value in declared.items()))
        paths.append(str(tmp))
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    return env

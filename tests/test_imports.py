"""Importing the protocol language, the transcripts or the CLI loads no torch or transformers: `sparring
protocols validate` and a server-only client stay light (the names of `sparring.agents` load on first use)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["sparring.protocols", "sparring.transcripts", "sparring.cli", "sparring.agents"])
def test_importing_loads_no_torch(module):
    script = (f"import json, sys; import {module}; "
              "print(json.dumps([m for m in ('torch', 'transformers', 'openvino_genai') if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_lazy_names_are_the_real_ones():
    import sparring.agents as agents
    from sparring.agents.clients._embedded import EmbeddedChatCompletionClient
    from sparring.agents.engine import get_engine

    assert agents.EmbeddedChatCompletionClient is EmbeddedChatCompletionClient and agents.get_engine is get_engine
    assert sorted(agents.__all__) == agents.__all__ and all(getattr(agents, name) is not None for name in agents.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        agents.Nope  # noqa: B018

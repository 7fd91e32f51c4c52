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


def test_every_error_sparring_raises_is_a_sparring_error():
    """The CLI prints a SparringError on one line: every error class of the library derives from it (a bad
    argument to a library function is also a ValueError, as Python's own are)."""
    import inspect

    from sparring import errors
    from sparring.evaluation import wilson_interval

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) > 5 and all(issubclass(c, errors.SparringError) for c in classes)
    with pytest.raises(errors.ArgumentError, match="0 <= successes <= n") as caught:
        wilson_interval(3, 2)
    assert isinstance(caught.value, ValueError)

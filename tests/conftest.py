"""Shared fixtures: the real embedded model, loaded once per test session.

Tests that run the real model, train, start a server or a browser, or take over ~1 s are marked
`slow` (pyproject.toml registers the marker): `pytest -m "not slow"` runs the logic tier. Any test
that asks for the model's engine is `slow` whether or not it is marked, since that loads the model.
"""

from __future__ import annotations

import pytest

MODEL_FIXTURES = {"engine", "engine_fp32", "each_engine"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` every test that asks (directly or through a fixture) for the real model's engine."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def engine():
    """The shared engine of the embedded default model, in the dtype sparring picks for this machine."""
    from sparring.agents import get_engine  # imported here: the logic tier never loads torch for it

    return get_engine("hf:smollm2-135m")


@pytest.fixture(scope="session")
def engine_fp32():
    """An engine in float32: its greedy replies do not depend on the batch they run in.

    (bfloat16 kernels round differently for different batch sizes, so two runs of one greedy
    request may part ways at a near tie; float32 makes "alone == batched" an exact test.)
    """
    import torch

    from sparring.agents import Engine, load_model

    model, tokenizer = load_model("hf:smollm2-135m", dtype=torch.float32)
    engine = Engine(model, tokenizer, name="hf:smollm2-135m(float32)")
    yield engine
    engine.close()

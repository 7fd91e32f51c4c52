"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

import pytest
import torch

from sparring.agents import Engine, get_engine, load_model


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The shared engine of the embedded default model, in the dtype sparring picks for this machine."""
    return get_engine("hf:smollm2-135m")


@pytest.fixture(scope="session")
def engine_fp32() -> Engine:
    """An engine in float32: its greedy replies do not depend on the batch they run in.

    (bfloat16 kernels round differently for different batch sizes, so two runs of one greedy
    request may part ways at a near tie; float32 makes "alone == batched" an exact test.)
    """
    model, tokenizer = load_model("hf:smollm2-135m", dtype=torch.float32)
    engine = Engine(model, tokenizer, name="hf:smollm2-135m(float32)")
    yield engine
    engine.close()

"""Checks every embedded engine must pass, shared by the transformers and OpenVINO engine tests."""

from __future__ import annotations

import asyncio
import time

from sparring.agents import SamplingParams


async def assert_a_cancelled_request_stops(engine, least_generated: int) -> None:
    """A long greedy request, cancelled while it generates (at least ``least_generated`` tokens in),
    leaves the engine within a second, long before it could have ended by itself."""
    # greedy, this prompt runs to any length (measured: 600 tokens of 600), a minute at 2000 tokens
    story = engine.encode_chat([{"role": "user", "content": "Write a very long story about a ship, chapter by chapter."}])
    task = asyncio.ensure_future(engine.generate(story, SamplingParams(temperature=0, max_tokens=2000)))
    started = time.time()  # a loaded machine takes longer to the first tokens: wait for them (30 s at most)
    while not (engine._live() and len(engine._live()[0].generated) > least_generated) and time.time() < started + 30:
        await asyncio.sleep(0.05)
    (request,) = engine._live()
    assert least_generated < len(request.generated) < 1000, "the request is being generated"
    task.cancel()
    deadline = time.time() + 1
    while engine._live() and time.time() < deadline:
        await asyncio.sleep(0.02)
    assert not engine._live() and len(request.generated) < 1000

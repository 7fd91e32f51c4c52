"""The embedded engine on the real SmolLM2 model: batching without cross-talk, ids, logprobs, stops, scoring."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from _engines import assert_a_cancelled_request_stops
from sparring.agents import Engine, SamplingParams
from sparring.agents.engine import _scoring
from sparring.agents.engine._base import Piece

TOPICS = ["rain", "a lighthouse", "prime numbers", "the sky at night", "a market in Madrid",
          "a famous painter", "bees", "a lost cat", "a chess opening", "spiders"]
QUESTIONS = [f"Write a short paragraph about {topic}." for topic in TOPICS]
SCORE_TOLERANCE = 1e-3
"""How far a scoring pass's logprobs may be from generation's (transformers: ~1e-5; OpenVINO: ~1e-4)."""


@pytest.fixture(params=["engine", "engine_fp32"])
def each_engine(request):
    """The default engine of this machine (OpenVINO on a CPU), then the transformers engine."""
    return request.getfixturevalue(request.param)


def _prompt(engine: Engine, text: str) -> list[int]:
    return engine.encode_chat([{"role": "user", "content": text}])


@pytest.mark.slow
async def test_concurrent_greedy_requests_equal_requests_run_alone(engine_fp32):
    greedy = SamplingParams(temperature=0, max_tokens=16)
    prompts = [_prompt(engine_fp32, q) for q in QUESTIONS]
    alone = [await engine_fp32.generate(p, greedy) for p in prompts]
    together = await asyncio.gather(*(engine_fp32.generate(p, greedy) for p in prompts))
    assert len(together) >= 8
    for single, batched in zip(alone, together):
        assert len(single.token_ids) >= 10
        assert batched.token_ids[:10] == single.token_ids[:10]
        assert batched.token_ids == single.token_ids  # float32: the whole reply matches


@pytest.mark.slow
async def test_staggered_arrivals_join_a_running_batch(engine_fp32):
    greedy = SamplingParams(temperature=0, max_tokens=12)
    prompts = [_prompt(engine_fp32, q) for q in QUESTIONS[:6]]
    alone = [await engine_fp32.generate(p, greedy) for p in prompts]

    async def late(i, prompt):
        await asyncio.sleep(0.05 * i)  # arrive while earlier requests are mid-generation
        return await engine_fp32.generate(prompt, greedy)

    together = await asyncio.gather(*(late(i, p) for i, p in enumerate(prompts)))
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]


@pytest.mark.slow
async def test_token_ids_decode_to_text_and_logprobs_are_valid(engine):
    result = await engine.generate(_prompt(engine, QUESTIONS[3]), SamplingParams(temperature=0.8, max_tokens=24, seed=3))
    assert result.token_ids and result.text
    assert engine.tokenizer.decode(result.token_ids, skip_special_tokens=True) == result.text
    assert len(result.logprobs) == len(result.token_ids)
    assert all(math.isfinite(lp) and lp <= 0 for lp in result.logprobs)
    assert result.prompt_tokens == len(_prompt(engine, QUESTIONS[3]))


@pytest.mark.slow
async def test_seed_makes_sampling_reproducible(engine_fp32):
    # float32: the second request reuses the first one's cached prompt keys, and bfloat16 kernels
    # round a cached and a fresh prefill differently (the README says replies are exact in float32)
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=7)
    prompt = _prompt(engine_fp32, QUESTIONS[1])
    first, second = await engine_fp32.generate(prompt, params), await engine_fp32.generate(prompt, params)
    assert first.token_ids == second.token_ids


@pytest.mark.slow
async def test_max_tokens_and_stop_strings(engine):
    prompt = _prompt(engine, "Count from 1 to 20, separated by commas.")
    capped = await engine.generate(prompt, SamplingParams(temperature=0, max_tokens=5))
    assert capped.finish_reason == "length" and len(capped.token_ids) == 5
    full = await engine.generate(prompt, SamplingParams(temperature=0, max_tokens=40))
    assert "5" in full.text
    stopped = await engine.generate(prompt, SamplingParams(temperature=0, max_tokens=40, stop=("5",)))
    assert stopped.finish_reason == "stop" and "5" not in stopped.text
    assert full.text.startswith(stopped.text)
    assert engine.tokenizer.decode(stopped.token_ids, skip_special_tokens=True) == stopped.text


@pytest.mark.slow
async def test_stream_pieces_add_up_to_the_reply(engine):
    pieces, final = [], None
    async for item in engine.stream(_prompt(engine, QUESTIONS[8]), SamplingParams(temperature=0, max_tokens=20)):
        if isinstance(item, str):
            pieces.append(item)
        else:
            final = item
    assert final is not None and len(pieces) > 1
    assert "".join(pieces) == final.text


@pytest.mark.slow
async def test_streamed_pieces_carry_their_tokens_and_logprobs(engine):
    *pieces, final = [item async for item in engine.stream_pieces(_prompt(engine, QUESTIONS[6]),
                                                                   SamplingParams(temperature=0, max_tokens=20))]
    assert len(pieces) > 1 and all(isinstance(p, Piece) and p.token_ids for p in pieces)
    assert [t for p in pieces for t in p.token_ids] == final.token_ids
    assert [lp for p in pieces for lp in p.logprobs] == final.logprobs
    assert all(engine.decode(p.token_ids) == p.text for p in pieces)


@pytest.mark.slow
async def test_a_reply_ended_by_the_end_of_sequence_keeps_that_token(each_engine):
    reply = await each_engine.generate(_prompt(each_engine, "Say hello."), SamplingParams(temperature=0, max_tokens=60))
    assert reply.finish_reason == "stop" and reply.eos is not None
    token, logprob = reply.eos
    assert token in each_engine.eos_ids and token not in reply.token_ids and -20 < logprob <= 0


@pytest.mark.slow
async def test_scoring_agrees_with_generation(each_engine, monkeypatch):
    prompt = _prompt(each_engine, QUESTIONS[5])
    reply = await each_engine.generate(prompt, SamplingParams(temperature=0, max_tokens=12))
    scorer = each_engine.scorer()
    assert scorer.extend(prompt, top=None) == []  # context only
    scores = await scorer.extend_async(reply.token_ids, top=4)
    assert max(abs(s.logprob - lp) for s, lp in zip(scores, reply.logprobs)) < SCORE_TOLERANCE
    for score, token in zip(scores, reply.token_ids):
        logprobs = [lp for _, lp in score.top]
        assert len(logprobs) == 4 and logprobs == sorted(logprobs, reverse=True)
        assert token in [t for t, _ in score.top] and score.logprob <= logprobs[0]  # greedy: among the likeliest
    monkeypatch.setattr(_scoring, "SCORE_CHUNK", 5)  # many chunks, the state carried between them
    whole = each_engine.scorer().extend(prompt + reply.token_ids)
    assert whole[0] is None and len(whole) == len(prompt) + len(reply.token_ids)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(whole[len(prompt):], scores)) < 1e-4


@pytest.mark.slow
async def test_conversations_reuse_their_computed_beginnings(engine_fp32):
    """Turn 2's prompt starts with turn 1's prompt and reply: only the rest is computed, same result."""
    fresh = Engine(engine_fp32.model, engine_fp32.tokenizer, name="no-prefix-cache", prefix_cache_tokens=0)
    greedy = SamplingParams(temperature=0, max_tokens=16)
    chats = [[{"role": "user", "content": f"Write a short paragraph about {topic}."}] for topic in TOPICS[:4]]
    firsts = await asyncio.gather(*(engine_fp32.generate(engine_fp32.encode_chat(c), greedy) for c in chats))
    follow_ups = ["Now about the sea.", "Shorter, please.", "Explain it to a child who asked why it matters.", "Thanks!"]
    prompts = []
    for chat, first, follow_up in zip(chats, firsts, follow_ups):
        chat += [{"role": "assistant", "content": first.text}, {"role": "user", "content": follow_up}]
        prompts.append(engine_fp32.encode_chat(chat))
        hit = engine_fp32._prefixes.longest(prompts[-1])
        assert hit is not None and hit[0] >= len(engine_fp32.encode_chat(chat[:1]))
    reused = await asyncio.gather(*(engine_fp32.generate(p, greedy) for p in prompts))  # one batched pass
    recomputed = [await fresh.generate(p, greedy) for p in prompts]
    fresh.close()
    for a, b in zip(reused, recomputed):
        assert a.token_ids[:10] == b.token_ids[:10]


def test_nucleus_sampling_keeps_to_the_nucleus_and_the_distribution():
    from sparring.agents.engine._transformers import _draw

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4000)
    draws = torch.rand(4000, generator=torch.Generator().manual_seed(0))
    full = torch.bincount(_draw(probs, torch.ones(4000), draws), minlength=4) / 4000
    assert torch.allclose(full, probs[0], atol=0.03)
    nucleus = torch.bincount(_draw(probs, torch.full((4000,), 0.7), draws), minlength=4) / 4000
    assert nucleus[2:].sum() == 0 and abs(nucleus[0] - 0.5 / 0.8) < 0.03  # {0, 1} carry 0.8 >= 0.7
    flat = torch.full((3, 3000), 1 / 3000)  # a nucleus wider than the candidates: sorted in full
    wide = _draw(flat, torch.full((3,), 0.9), torch.tensor([0.1, 0.5, 0.99]))
    assert (wide < 3000).all() and len(set(wide.tolist())) == 3


@pytest.mark.slow
async def test_a_cancelled_request_stops_at_the_next_step(engine_fp32):
    await assert_a_cancelled_request_stops(engine_fp32, least_generated=3)

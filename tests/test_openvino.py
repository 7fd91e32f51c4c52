"""The OpenVINO GenAI engine, the embedded default on CPU, on the real SmolLM2 model.

What the transformers engine's tests check (no cross-talk between concurrent requests, ids that
decode to the text, valid logprobs, stops, max tokens, streaming), plus: seeded and greedy
replies that stay the same with other requests in flight and with the prefix cached, a
cancelled request that stops, a LoRA adapter whose effect matches transformers with the adapter
merged (in generation and in scoring), a KV cache of fixed size, and a streaming client that
disconnects from `sparring serve`. Scoring's agreement with generation is in test_engine.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
import torch

from _engines import assert_a_cancelled_request_stops
from _servers import MODEL, free_port, start_server
from sparring.agents import SamplingParams, get_engine, load_model
from sparring.agents.engine._openvino import OpenVINOEngine

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)

pytest.importorskip("openvino_genai")

TOPICS = ["rain", "a lighthouse", "prime numbers", "the sky at night", "a market in Madrid",
          "a famous painter", "bees", "a lost cat", "a chess opening", "spiders"]
QUESTIONS = [f"Write a short paragraph about {topic}." for topic in TOPICS]
LOGPROB_TOLERANCE = 1e-3
"""How far OpenVINO's float32 logprobs may be from transformers' float32 ones (measured: ~2e-4)."""


@pytest.fixture(scope="module")
def ov(engine) -> OpenVINOEngine:
    assert isinstance(engine, OpenVINOEngine), "the embedded default on a CPU with openvino-genai installed"
    return engine


def _prompt(engine, text: str) -> list[int]:
    return engine.encode_chat([{"role": "user", "content": text}])


async def test_concurrent_greedy_requests_equal_requests_run_alone(ov):
    greedy = SamplingParams(temperature=0, max_tokens=24)
    prompts = [_prompt(ov, q) for q in QUESTIONS]
    alone = [await ov.generate(p, greedy) for p in prompts]
    together = await asyncio.gather(*(ov.generate(p, greedy) for p in prompts))
    for single, batched in zip(alone, together):
        assert len(single.token_ids) >= 10 and batched.token_ids == single.token_ids
        assert max(abs(a - b) for a, b in zip(single.logprobs, batched.logprobs)) < 1e-4


@pytest.mark.parametrize("params", [SamplingParams(temperature=1.0, top_p=0.95, max_tokens=32, seed=7),
                                    SamplingParams(temperature=0, max_tokens=32)], ids=["seeded", "greedy"])
async def test_the_same_request_gives_the_same_reply_whatever_is_in_flight(ov, params):
    prompt = _prompt(ov, QUESTIONS[2] + (" Be brief." if params.temperature else " Be clear."))  # not cached yet
    replies = []
    for round_number in range(5):  # the first computes the whole prompt; the later ones find it cached
        others = [ov.generate(_prompt(ov, q), SamplingParams(temperature=0.8, max_tokens=8 + 4 * round_number))
                  for q in QUESTIONS[round_number:round_number + 3]]
        replies.append((await asyncio.gather(ov.generate(prompt, params), *others))[0])
    assert len({tuple(r.token_ids) for r in replies}) == 1
    assert len(replies[0].token_ids) >= 10


async def test_unseeded_requests_draw_their_own_samples(ov):
    prompt = _prompt(ov, QUESTIONS[3])
    replies = await asyncio.gather(*(ov.generate(prompt, SamplingParams(temperature=1.0, max_tokens=16)) for _ in range(4)))
    assert len({tuple(r.token_ids) for r in replies}) > 1


async def test_token_ids_decode_to_text_and_logprobs_are_valid(ov):
    result = await ov.generate(_prompt(ov, "Name three colours."), SamplingParams(temperature=0.7, max_tokens=20, seed=1))
    assert result.token_ids and len(result.logprobs) == len(result.token_ids)
    assert ov.decode(result.token_ids) == result.text
    assert all(math.isfinite(lp) and lp <= 0 for lp in result.logprobs)
    assert result.finish_reason in ("stop", "length") and result.prompt_tokens == len(_prompt(ov, "Name three colours."))


async def test_greedy_logprobs_match_transformers_in_float32(ov):
    model, _ = load_model("hf:smollm2-135m", dtype=torch.float32)
    prompt = _prompt(ov, QUESTIONS[0])
    result = await ov.generate(prompt, SamplingParams(temperature=0, max_tokens=16))
    assert _max_difference(model, prompt, result) < LOGPROB_TOLERANCE


async def test_max_tokens_and_stop_strings(ov):
    prompt = _prompt(ov, "Count from one to twenty in words, separated by commas.")
    limited = await ov.generate(prompt, SamplingParams(temperature=0, max_tokens=5))
    assert len(limited.token_ids) == 5 and limited.finish_reason == "length"
    full = await ov.generate(prompt, SamplingParams(temperature=0, max_tokens=40))
    stop = next(word for word in (",", " ", "e") if word in full.text[1:])
    stopped = await ov.generate(prompt, SamplingParams(temperature=0, max_tokens=40, stop=(stop,)))
    assert stopped.finish_reason == "stop" and stop not in stopped.text
    assert full.text.startswith(stopped.text) and ov.decode(stopped.token_ids) == stopped.text


async def test_stream_pieces_add_up_to_the_reply(ov):
    pieces = [piece async for piece in ov.stream(_prompt(ov, QUESTIONS[4]), SamplingParams(temperature=0, max_tokens=24))]
    *texts, completion = pieces
    assert len(texts) > 1 and "".join(texts) == completion.text


async def test_a_cancelled_request_stops_at_the_next_step(ov):
    await assert_a_cancelled_request_stops(ov, least_generated=5)


async def test_a_trained_adapter_matches_transformers_with_the_adapter_merged(tmp_path):
    from test_train import FAST, taboo_rows, write_dataset

    from sparring.trainer import TrainConfig, train

    data = write_dataset(tmp_path / "data", taboo_rows())
    trained = train(TrainConfig(data=data, model="hf:smollm2-135m", output=tmp_path / "adapter", kind="sft",
                                **{**FAST, "max_steps": 2, "lr": 2e-3}))
    adapted = get_engine(trained.play_spec)
    assert isinstance(adapted, OpenVINOEngine)
    merged, _ = load_model(trained.play_spec, dtype=torch.float32)
    base, _ = load_model("hf:smollm2-135m", dtype=torch.float32)
    prompt = _prompt(adapted, "Think of a red fruit that keeps the doctor away. What is it called?")
    result = await adapted.generate(prompt, SamplingParams(temperature=0, max_tokens=16))
    # the adapter moves the logprobs well beyond the tolerance, and OpenVINO moves them as transformers does
    assert _max_difference(base, prompt, result) > 20 * LOGPROB_TOLERANCE
    assert _max_difference(merged, prompt, result) < LOGPROB_TOLERANCE
    scorer = adapted.scorer()  # the scoring model has the adapter merged into its weights
    scored = scorer.extend(prompt + result.token_ids)[len(prompt):]
    assert max(abs(s.logprob - lp) for s, lp in zip(scored, result.logprobs)) < LOGPROB_TOLERANCE

    # the base and the adapter, two pipelines, serve requests at once but never compute at once
    plain, steps = get_engine("hf:smollm2-135m"), []
    for engine in (plain, adapted):
        engine._pipe = _TimedSteps(engine._pipe, steps, owner=id(engine))
    try:
        replies = await asyncio.gather(*(engine.generate(_prompt(engine, q), SamplingParams(max_tokens=8, seed=i))
                                         for i, q in enumerate(QUESTIONS[:8]) for engine in (plain, adapted)))
    finally:
        for engine in (plain, adapted):
            engine._pipe = engine._pipe.pipe
    assert all(reply.token_ids for reply in replies) and {owner for owner, _, _ in steps} == {id(plain), id(adapted)}
    steps.sort(key=lambda step: step[1])
    assert all(earlier[2] <= later[1] for earlier, later in zip(steps, steps[1:]))


class _TimedSteps:
    """A pipeline whose `step()` calls are recorded as (owner, start, end)."""

    def __init__(self, pipe, steps: list, owner: int):
        self.pipe, self._steps, self._owner = pipe, steps, owner

    def step(self):
        start = time.perf_counter()
        self.pipe.step()
        self._steps.append((self._owner, start, time.perf_counter()))

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def _max_difference(model, prompt: list[int], result) -> float:
    """The largest difference between ``result``'s logprobs and ``model``'s for the same tokens."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + result.token_ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return max(abs(lp - logprobs[len(prompt) - 1 + i, token].item())
               for i, (token, lp) in enumerate(zip(result.token_ids, result.logprobs)))


MEMORY_BOUND_GB = 3.0
"""The most a process may hold after one long prompt and 64 concurrent requests with a 1 GB KV cache."""


def test_one_long_prompt_then_64_concurrent_requests_stay_within_a_fixed_memory(tmp_path):
    script = textwrap.dedent("""
        import asyncio, json
        from sparring.agents import SamplingParams, get_engine
        engine = get_engine("hf:smollm2-135m")
        long = engine.encode_chat([{"role": "user", "content": "Summarise: " + "the cat sat on the mat. " * 450}])
        async def main():
            await engine.generate(long, SamplingParams(temperature=0, max_tokens=8))
            prompts = [engine.encode_chat([{"role": "user", "content": f"Story {i}: " + "once upon a time " * 15}])
                       for i in range(64)]
            replies = await asyncio.gather(*(engine.generate(p, SamplingParams(max_tokens=32, seed=i))
                                             for i, p in enumerate(prompts)))
            return len(long), sum(len(r.token_ids) > 0 for r in replies)
        tokens, answered = asyncio.run(main())
        peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process's own peak
        print(json.dumps({"tokens": tokens, "answered": answered, "max_rss_gb": int(peak.split()[1]) / 2**20}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SPARRING_KV_CACHE_GB": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tokens"] > 3000 and report["answered"] == 64
    assert report["max_rss_gb"] < MEMORY_BOUND_GB, report


def test_released_engines_give_their_memory_back(tmp_path):
    """Self-play loads a model per epoch; `release_engines` must keep the process from growing by
    one engine (weights and KV cache) per model, as it did before (about +1.2 GB per model here)."""
    script = textwrap.dedent("""
        import asyncio, json, sys
        import torch
        from peft import LoraConfig, get_peft_model
        from sparring.agents import SamplingParams, get_engine, load_model
        from sparring.agents.engine import release_engines
        base, tokenizer = load_model("hf:smollm2-135m", dtype=torch.float32)
        specs = []
        for i in range(4):  # four different adapters: four models, as four epochs give
            torch.manual_seed(i)
            peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
            peft.save_pretrained(f"{sys.argv[1]}/adapter{i}")
            tokenizer.save_pretrained(f"{sys.argv[1]}/adapter{i}")
            base = peft.unload()
            specs.append(f"hf:smollm2-135m+{sys.argv[1]}/adapter{i}")
        del base
        rss = []
        for spec in specs:
            engine = get_engine(spec)
            asyncio.run(engine.generate(engine.encode_chat([{"role": "user", "content": "Hi"}]),
                                        SamplingParams(max_tokens=4)))
            del engine
            release_engines()
            rss.append(int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) / 2**20)
        print(json.dumps(rss))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SPARRING_KV_CACHE_GB": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    assert rss[-1] - rss[0] < 0.3, rss  # GB; without the release each model adds its 1 GB cache and more


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads the server's CPU time from /proc")
def test_a_streaming_client_that_disconnects_stops_its_generation():
    request = {"model": MODEL, "stream": True, "max_tokens": 4000, "temperature": 1.0, "seed": 3,
               "messages": [{"role": "user", "content": "Write a very long story about a ship, chapter by chapter."}]}
    port = free_port()
    server = start_server(port)
    url, pid = f"http://127.0.0.1:{port}", server.pid
    try:
        with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/v1/chat/completions", json=request) as reply:
            lines = reply.iter_lines()
            next(line for line in lines if line.startswith("data:"))
            # the server's CPU rate while it streams; on a loaded machine it is low, so wait for enough of it
            start, began = _cpu_seconds(pid), time.monotonic()
            while (busy := _cpu_seconds(pid) - start) < 0.5 and time.monotonic() - began < 60:
                time.sleep(0.5)
            rate = busy / (time.monotonic() - began)
            assert next(line for line in lines if line.startswith("data:"))  # still streaming
        # The disconnect reaches the engine at its next step; a slow machine may take a few seconds to
        # settle, while the 4000 tokens asked for would keep it busy for a minute or more.
        windows = []
        for _ in range(15):
            start = _cpu_seconds(pid)
            time.sleep(1)
            windows.append(_cpu_seconds(pid) - start)
            if windows[-1] < 0.1 * rate:
                break
    finally:
        server.terminate()
        server.wait(timeout=30)
    # busy: the server generated while the client read; after the disconnect it idles at a tenth of that rate
    assert busy >= 0.5 and windows[-1] < 0.1 * rate, (busy, rate, windows)

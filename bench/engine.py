"""Throughput of the embedded engine against plain transformers `generate`, side by side.

Measures, on the same prompts and sampling settings in one run:
  (a) sequential batch-1 `generate` in float32 (how the SPAG code collects its episodes);
  (b) one static `generate` over all prompts in the engine's dtype (the raw ceiling at that
      concurrency: left padding, every slot waits for the longest reply);
  (c) the embedded engine (`get_engine`: OpenVINO GenAI on a CPU) serving the same prompts as
      concurrent requests that arrive staggered;
  (d) the transformers engine (`Engine`, in the dtype of (b)) serving them the same way, when (c)
      is another engine: what the transformers engine is worth where OpenVINO runs.
Only useful tokens count: each reply up to its end of sequence, never padding.

Usage: python bench/engine.py [--requests 32] [--max-tokens 48] [--stagger-ms 40]
Last line: speedup_vs_batch1=<c/a> efficiency_vs_static=<c/b> ratio_vs_transformers_engine=<c/d>
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import torch

from sparring.agents.engine import BaseEngine, Engine, SamplingParams, best_dtype, end_token_ids, get_engine, load_model

TOPICS = ["the sea", "a lost key", "winter in a city", "why bees dance", "a robot learning to paint",
          "the history of bread", "how rain forms", "a chess game", "an old lighthouse", "friendship"]
TASKS = ["Write two sentences about {t}.", "Explain {t} to a child.", "Give three facts about {t}.",
         "Describe {t} in one short paragraph."]
CONTEXT = ("Background notes: the reader is curious, likes concrete examples, and has little time. "
           "Keep the answer plain and avoid lists unless asked. ")


def make_prompts(n: int, seed: int = 0) -> list[list[dict]]:
    """Chat prompts of mixed lengths (a few words to a few hundred tokens)."""
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        task = TASKS[i % len(TASKS)].format(t=TOPICS[i % len(TOPICS)])
        prompts.append([{"role": "user", "content": CONTEXT * rng.choice([0, 0, 0, 1, 2, 4, 8]) + task}])
    return prompts


def useful_tokens(row: list[int], eos: set[int], pad_start: int = 0) -> int:
    for i, token in enumerate(row[pad_start:]):
        if token in eos:
            return i
    return len(row) - pad_start


def sequential_batch1(model, tokenizer, prompts, max_tokens, eos) -> tuple[int, float]:
    tokens, start = 0, time.perf_counter()
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        tokens += useful_tokens(out[0].tolist(), eos, ids["input_ids"].shape[1])
    return tokens, time.perf_counter() - start


def static_batch(model, tokenizer, prompts, max_tokens, eos) -> tuple[int, float]:
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    elapsed = time.perf_counter() - start
    width = batch["input_ids"].shape[1]
    return sum(useful_tokens(row.tolist(), eos, width) for row in out), elapsed


async def staggered_engine(engine: BaseEngine, prompts, max_tokens, stagger_s) -> tuple[int, float]:
    params = SamplingParams(temperature=0, max_tokens=max_tokens)

    async def one(i, messages):
        await asyncio.sleep(i * stagger_s)
        return await engine.generate(engine.encode_chat(messages), params)

    start = time.perf_counter()
    results = await asyncio.gather(*(one(i, m) for i, m in enumerate(prompts)))
    return sum(r.completion_tokens for r in results), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="hf:smollm2-135m")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--stagger-ms", type=float, default=40.0, help="gap between request arrivals in (c)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    prompts = make_prompts(args.requests)
    dtype = best_dtype()

    model32, tokenizer = load_model(args.model, dtype=torch.float32)
    eos = end_token_ids(tokenizer, model32.generation_config)
    sequential_batch1(model32, tokenizer, prompts[:1], 4, eos)  # warm-up
    tok_a, sec_a = sequential_batch1(model32, tokenizer, prompts, args.max_tokens, eos)
    del model32

    model, tokenizer = load_model(args.model, dtype=dtype)
    static_batch(model, tokenizer, prompts[:4], 4, eos)  # warm-up
    tok_b, sec_b = static_batch(model, tokenizer, prompts, args.max_tokens, eos)

    def serve(engine: BaseEngine) -> tuple[int, float]:
        asyncio.run(staggered_engine(engine, make_prompts(args.requests + 4)[-4:], 4, 0))  # warm-up, other prompts
        return asyncio.run(staggered_engine(engine, prompts, args.max_tokens, args.stagger_ms / 1000))

    default = get_engine(args.model, max_batch=max(args.requests, 1))
    tok_c, sec_c = serve(default)
    rate_a, rate_b, rate_c = tok_a / sec_a, tok_b / sec_b, tok_c / sec_c
    print(f"dtype={str(dtype).removeprefix('torch.')} requests={args.requests} max_tokens={args.max_tokens} "
          f"threads={torch.get_num_threads()}")
    print(f"(a) sequential batch-1 generate, float32: {tok_a} tokens in {sec_a:.1f}s = {rate_a:.1f} tok/s")
    print(f"(b) static generate x{args.requests}: {tok_b} tokens in {sec_b:.1f}s = {rate_b:.1f} tok/s")
    print(f"(c) {type(default).__name__}, {args.requests} staggered requests: {tok_c} tokens in {sec_c:.1f}s "
          f"= {rate_c:.1f} tok/s")
    rate_d = rate_c
    if not isinstance(default, Engine):
        transformers_engine = Engine(model, tokenizer, name=args.model, max_batch=max(args.requests, 1))
        tok_d, sec_d = serve(transformers_engine)
        transformers_engine.close()
        rate_d = tok_d / sec_d
        print(f"(d) Engine (transformers, {str(dtype).removeprefix('torch.')}), {args.requests} staggered requests: "
              f"{tok_d} tokens in {sec_d:.1f}s = {rate_d:.1f} tok/s")
    print(f"speedup_vs_batch1={rate_c / rate_a:.2f} efficiency_vs_static={rate_c / rate_b:.2f} "
          f"ratio_vs_transformers_engine={rate_c / rate_d:.2f}")


if __name__ == "__main__":
    main()

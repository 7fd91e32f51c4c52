"""Self-play throughput: whole games of Adversarial Taboo through the stack against lockstep `generate`.

Measures, in one run, on the same target words (the built-in `adversarial_taboo`'s
`VariableSampler` with the same seed), the same model and dtype (`best_dtype()`, the engine's own
weights), the same sampling (each role's temperature and top_p from the protocol, its max_tokens
overridden to --max-tokens) and the same rules (`Judge.after_message` after every message, a game
ends when decided or after the schedule's 10 messages):

  stack     `play()` of N games with concurrency N through the whole stack: protocol YAML ->
            AutoGen `AssistantAgent`s -> the embedded engine (continuous batching), transcripts
            written to a temporary directory. Each game advances as soon as its own reply is done.
  lockstep  the same N games played the simple way one would batch SPAG's data collection: every
            live game advances one turn per static, left-padded `model.generate` call over all
            live games (do_sample, same temperature/top_p, max_new_tokens, pad_token_id), so each
            turn waits for its longest reply; a decided game leaves the batch. Each prompt is
            rendered from the same protocol as the stack renders it: the speaker's system prompt
            (Jinja2, with the target), then the model context AutoGen keeps for that role (its
            own replies as assistant, the other's messages as user, and the role's earlier
            `prompt` messages), then the role's `prompt` for this turn, if it has one, through
            the tokenizer's chat template.

Both paths use the one loaded model (the engine's), one after the other, never at once; each
is warmed up untimed first. Timings are wall-clock over all N games. Only useful tokens count:
each reply up to its end of sequence. The outcome reasons show both paths played real games.

Usage: python bench/selfplay.py [--games 32] [--max-tokens 48] [--model hf:smollm2-135m] [--seed 0]
                                [--order stack,lockstep]
Last line: selfplay_games_per_min=<stack games/min> speedup_vs_lockstep=<stack games/min / lockstep games/min>
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from sparring.agents._loading import best_dtype, get_engine
from sparring.agents._engine import SamplingParams
from sparring.protocols import Judge, Protocol, load_protocol, parse_protocol, play, role_models
from sparring.protocols._expressions import render
from sparring.protocols._variables import VariableSampler

PROTOCOL = "adversarial_taboo"


@dataclass
class Result:
    """What one path played."""

    name: str
    games: int = 0
    seconds: float = 0.0
    messages: int = 0
    tokens: int = 0
    errors: int = 0
    calls: int = 0  # generate calls (lockstep only)
    reasons: Counter = field(default_factory=Counter)
    targets: list = field(default_factory=list)

    @property
    def games_per_min(self) -> float:
        return 60 * self.games / self.seconds if self.seconds else 0.0


def protocol_variant(max_tokens: int) -> Protocol:
    """The built-in protocol with every role's sampling.max_tokens set to ``max_tokens``."""
    base = load_protocol(PROTOCOL)
    data = yaml.safe_load(base.text)
    for role in data["roles"].values():
        role.setdefault("sampling", {})["max_tokens"] = max_tokens
    return parse_protocol(yaml.safe_dump(data, sort_keys=False), base.path)


# ----- stack -------------------------------------------------------------------------------------
def run_stack(protocol: Protocol, games: int, model: str, seed: int) -> Result:
    result = Result("stack")
    episodes = []
    with tempfile.TemporaryDirectory(prefix="selfplay-") as tmp:
        start = time.perf_counter()
        summary = asyncio.run(play(protocol, games, Path(tmp), role_models(protocol, model, {}),
                                   concurrency=games, seed=seed, on_episode=episodes.append))
        result.seconds = time.perf_counter() - start
    result.games, result.errors, result.reasons = summary.games, summary.errors, Counter(summary.reasons)
    result.tokens = summary.completion_tokens
    result.messages = sum(len(e.messages) for e in episodes)
    result.targets = sorted(e.variables["target"] for e in episodes)
    for episode in episodes:
        if episode.status == "error":
            result.reasons[f"error: {episode.error}"[:80]] += 1
    return result


# ----- lockstep ----------------------------------------------------------------------------------
class Game:
    """One game's state, with each role's model context kept as AutoGen's `AssistantAgent` keeps it."""

    def __init__(self, protocol: Protocol, variables: dict):
        self.protocol, self.variables = protocol, variables
        spec = protocol.spec
        self.messages: list[dict] = []
        self.outcome = None
        self.params = {name: {k: render(v, variables) if isinstance(v, str) else v for k, v in role.params.items()}
                       for name, role in spec.roles.items()}
        self.chats = {name: [{"role": "system", "content": render(role.system, self._context(name))}]
                      for name, role in spec.roles.items()}
        self._seen = {name: 0 for name in spec.roles}

    def _context(self, role: str, round_number: int = 0) -> dict:
        return {**self.variables, "role": role, "roles": list(self.protocol.spec.roles), "params": self.params[role],
                "round": round_number, "turn": len(self.messages), "messages": self.messages}

    def chat_for(self, role: str, round_number: int) -> list[dict]:
        """The chat ``role`` sends to its model for its turn: its context, the unseen messages, its prompt."""
        spec = self.protocol.spec.roles[role]
        chat = self.chats[role]
        for message in self.messages[self._seen[role]:]:
            if message["role"] != role and (spec.sees == "all" or message["role"] in spec.sees):
                chat.append({"role": "user", "content": message["content"]})
        self._seen[role] = len(self.messages)
        if spec.prompt is not None:
            chat.append({"role": "user", "content": render(spec.prompt, self._context(role, round_number))})
        return chat

    def add(self, role: str, round_number: int, text: str) -> None:
        self.chats[role].append({"role": "assistant", "content": text})
        self.messages.append({"role": role, "content": text, "turn": len(self.messages), "round": round_number})


def speakers(protocol: Protocol) -> list[str]:
    schedule = protocol.spec.schedule
    if schedule.type != "round_robin":
        raise SystemExit(f"lockstep here plays round_robin schedules only, not {schedule.type}")
    if schedule.max_turns is not None:
        return [schedule.order[i % len(schedule.order)] for i in range(schedule.max_turns)]
    return list(schedule.order) * schedule.rounds


def batched_generate(engine, prompts: list[list[int]], sampling: SamplingParams) -> list[list[int]]:
    """One static `generate` over left-padded prompts; each reply's token ids up to its end of sequence."""
    eos = sorted(engine.eos_ids)
    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else eos[0]
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
    sample = sampling.temperature > 0
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=input_ids.to(engine.model.device), attention_mask=attention_mask.to(engine.model.device),
            do_sample=sample, temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None, top_k=0 if sample else None,  # no top-k: the engine has none
            max_new_tokens=sampling.max_tokens, pad_token_id=pad, eos_token_id=eos,
        )
    replies = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in engine.eos_ids), len(row))
        replies.append(row[:end])
    return replies


def run_lockstep(protocol: Protocol, games: int, engine, seed: int) -> Result:
    result = Result("lockstep")
    sampler, judge = VariableSampler(protocol, None, seed), Judge(protocol)
    roles = protocol.spec.roles
    sampling = {name: SamplingParams(**{**{"temperature": 0.7, "top_p": 1.0}, **role.sampling.settings(), "stop": ()})
                for name, role in roles.items()}
    torch.manual_seed(seed)
    start = time.perf_counter()
    played = [Game(protocol, sampler.sample(i)) for i in range(games)]
    live = list(played)
    for round_number, role in enumerate(speakers(protocol)):
        if not live:
            break
        prompts = [engine.encode_chat(game.chat_for(role, round_number)) for game in live]
        replies = batched_generate(engine, prompts, sampling[role])
        result.calls += 1
        still = []
        for game, ids in zip(live, replies):
            result.tokens += len(ids)
            game.add(role, round_number, engine.tokenizer.decode(ids, skip_special_tokens=True))
            game.outcome = judge.after_message(game.variables, game.messages)
            if game.outcome is None or not protocol.spec.stop_on_outcome:
                still.append(game)
        live = still
    for game in played:
        game.outcome = game.outcome or judge.final(game.variables, game.messages)
    result.seconds = time.perf_counter() - start
    result.games = len(played)
    result.messages = sum(len(g.messages) for g in played)
    result.reasons = Counter(g.outcome.reason for g in played)
    result.targets = sorted(g.variables["target"] for g in played)
    return result


# ----- main --------------------------------------------------------------------------------------
def warm_up(engine, protocol: Protocol) -> None:
    """Untimed: one engine request and one small `generate`, so neither path pays first-call costs."""
    chat = Game(protocol, VariableSampler(protocol, None, 0).sample(0)).chat_for("attacker", 0)
    ids = engine.encode_chat(chat)
    asyncio.run(engine.generate(ids, SamplingParams(max_tokens=4)))
    batched_generate(engine, [ids, ids[:-8]], SamplingParams(max_tokens=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--model", default="hf:smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", default="stack,lockstep", choices=["stack,lockstep", "lockstep,stack"],
                        help="which path runs first (alternate between runs to see order effects)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    protocol = protocol_variant(args.max_tokens)
    dtype = best_dtype()
    engine = get_engine(args.model, max_batch=max(64, args.games))  # the stack's clients share this engine
    if engine.model.dtype != dtype:
        raise SystemExit(f"the engine holds {engine.model.dtype}, expected {dtype}")
    warm_up(engine, protocol)

    results = {}
    for name in args.order.split(","):
        if name == "stack":
            results[name] = run_stack(protocol, args.games, args.model, args.seed)
        else:
            results[name] = run_lockstep(protocol, args.games, engine, args.seed)
    stack, lockstep = results["stack"], results["lockstep"]
    if stack.targets != lockstep.targets:
        raise SystemExit("the two paths played different target words")

    roles = protocol.spec.roles
    print(f"protocol={PROTOCOL} model={args.model} dtype={str(dtype).removeprefix('torch.')} games={args.games} "
          f"max_tokens={args.max_tokens} temperature={roles['attacker'].sampling.temperature} "
          f"threads={torch.get_num_threads()} order={args.order}")
    print(f"{'path':<9} {'games':>5} {'seconds':>8} {'games/min':>9} {'messages':>8} {'tokens':>7} {'tok/s':>7}  outcomes")
    for r in (stack, lockstep):
        reasons = ", ".join(f"{reason}: {n}" for reason, n in r.reasons.most_common())
        extra = f" [{r.calls} generate calls]" if r.calls else ""
        print(f"{r.name:<9} {r.games:>5} {r.seconds:>8.1f} {r.games_per_min:>9.1f} {r.messages:>8} {r.tokens:>7} "
              f"{r.tokens / r.seconds:>7.1f}  {reasons}{extra}")
    speedup = stack.games_per_min / lockstep.games_per_min if lockstep.games_per_min else float("nan")
    print(f"selfplay_games_per_min={stack.games_per_min:.2f} speedup_vs_lockstep={speedup:.2f}")


if __name__ == "__main__":
    main()

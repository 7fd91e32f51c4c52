"""Self-play throughput: whole games of Adversarial Taboo through the stack, on the raw OpenVINO
GenAI pipeline, and with lockstep `generate`.

Measures, in one run, on the same target words (the built-in `adversarial_taboo`'s
`VariableSampler` with the same seed), the same model, the same sampling (each role's temperature
and top_p from the protocol, its max_tokens overridden to --max-tokens) and the same rules
(`Judge.after_message` after every message, a game ends when decided or after the schedule's 10
messages):

  stack     `play()` of N games with concurrency N through the whole stack: protocol YAML ->
            AutoGen `AssistantAgent`s -> the embedded engine (`get_engine`: OpenVINO GenAI on a
            CPU, continuous batching), transcripts written to a temporary directory. Each game
            advances as soon as its own reply is done.
  openvino  the same N games straight on an OpenVINO GenAI `ContinuousBatchingPipeline` built as
            the engine builds its own (`build_pipeline`: same IR, precision, KV cache, scheduler;
            `generation_config`: same settings per request), with no AutoGen and no episode
            loop: the prompts built as lockstep builds them, each game's next request added
            when its reply ends, `step()` in a loop. (Only with the OpenVINO engine.)
  lockstep  the same N games played the simple way one would batch SPAG's data collection: every
            live game advances one turn per static, left-padded `model.generate` call over all
            live games (do_sample, same temperature/top_p, max_new_tokens, pad_token_id), so each
            turn waits for its longest reply; a decided game leaves the batch. Each prompt is
            rendered from the same protocol as the stack renders it: the speaker's system prompt
            (Jinja2, with the target), then the model context AutoGen keeps for that role (its
            own replies as assistant, the other's messages as user, and the role's earlier
            `prompt` messages), then the role's `prompt` for this turn, if it renders non-blank,
            through the tokenizer's chat template; all by the protocol engine's own functions.

Lockstep runs on transformers (`load_model`, `best_dtype()`), the two others on OpenVINO. The
paths run one after another, never at once; each is warmed up untimed first. Timings are
wall-clock over all N games. Only useful tokens count: each reply up to its end of sequence. The
outcome reasons show every path played real games.

Usage: python bench/selfplay.py [--games 32] [--max-tokens 48] [--model hf:smollm2-135m] [--seed 0]
                                [--order stack,openvino,lockstep]
Last line: selfplay_games_per_min=<stack games/min> speedup_vs_lockstep=<stack / lockstep games/min>
           ratio_vs_openvino=<stack / openvino games/min>
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

from autogen_core.models import UserMessage

from sparring.agents.clients._messages import to_chat_messages
from sparring.agents.engine._base import BaseEngine, Request, SamplingParams, encode_chat, end_token_ids
from sparring.agents.engine._loading import best_dtype, get_engine, load_model
from sparring.protocols import Judge, Protocol, load_protocol, parse_protocol, play, role_models
from sparring.protocols._visibility import model_context, system_prompt, turn_prompt
from sparring.protocols._play import seeded
from sparring.protocols._variables import VariableSampler
from sparring.transcripts import episode_id

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
    transcripts: Counter = field(default_factory=Counter)  # (target, message texts) of each game

    @property
    def games_per_min(self) -> float:
        return 60 * self.games / self.seconds if self.seconds else 0.0


def protocol_variant(max_tokens: int, seed: int) -> Protocol:
    """The built-in protocol with every role's sampling.max_tokens set to ``max_tokens`` and its seed to ``seed``.

    With seeded requests (each game's own seeds, `seeded`), the stack and the raw pipeline sample the
    same tokens from the same prompts, so they play the same games and their times compare like with like.
    """
    base = load_protocol(PROTOCOL)
    data = yaml.safe_load(base.text)
    for role in data["roles"].values():
        role.setdefault("sampling", {}).update(max_tokens=max_tokens, seed=seed)
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
    result.transcripts = Counter((e.variables["target"], tuple(m.content for m in e.messages)) for e in episodes)
    for episode in episodes:
        if episode.status == "error":
            result.reasons[f"error: {episode.error}"[:80]] += 1
    return result


# ----- lockstep ----------------------------------------------------------------------------------
class Game:
    """One game's state; each prompt built by the protocol engine's own rules (`system_prompt`,
    `model_context`, `turn_prompt`), as the stack's agents hand them to their models."""

    def __init__(self, protocol: Protocol, variables: dict):
        self.protocol, self.variables = protocol, variables
        self.messages: list[dict] = []
        self.outcome = None
        self._prompt: str | None = None

    def chat_for(self, role: str, round_number: int) -> list[dict]:
        """The chat ``role`` sends to its model for its turn in ``round_number``."""
        context = model_context(self.protocol, role, self.messages, round_number)
        self._prompt = turn_prompt(self.protocol, self.variables, role, round_number, self.messages)
        if self._prompt is not None:
            context.append(UserMessage(content=self._prompt, source="user"))
        return [{"role": "system", "content": system_prompt(self.protocol, self.variables, role)},
                *to_chat_messages(context)]

    def add(self, role: str, round_number: int, text: str) -> None:
        self.messages.append({"role": role, "content": text, "turn": len(self.messages), "round": round_number,
                              "prompt": self._prompt})


def speakers(protocol: Protocol) -> list[str]:
    """The speaker of each round (one a round: a round_robin schedule)."""
    rounds = protocol.spec.schedule.speaking_rounds()
    if any(len(speaking) != 1 for speaking in rounds):
        raise SystemExit(f"lockstep here plays one speaker a round, not a {protocol.spec.schedule.type} schedule")
    return [speaking[0] for speaking in rounds]


class Lockstep:
    """The transformers model lockstep plays on, with what its static `generate` calls need."""

    def __init__(self, model: str):
        self.model, self.tokenizer = load_model(model, dtype=best_dtype())
        self.eos_ids = end_token_ids(self.tokenizer, self.model.generation_config)


def batched_generate(lock: Lockstep, prompts: list[list[int]], sampling: SamplingParams) -> list[list[int]]:
    """One static `generate` over left-padded prompts; each reply's token ids up to its end of sequence."""
    eos = sorted(lock.eos_ids)
    pad = lock.tokenizer.pad_token_id if lock.tokenizer.pad_token_id is not None else eos[0]
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
    sample = sampling.temperature > 0
    with torch.inference_mode():
        out = lock.model.generate(
            input_ids=input_ids.to(lock.model.device), attention_mask=attention_mask.to(lock.model.device),
            do_sample=sample, temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None, top_k=0 if sample else None,  # no top-k: the engines have none
            max_new_tokens=sampling.max_tokens, pad_token_id=pad, eos_token_id=eos,
        )
    replies = []
    for row in out[:, width:].tolist():
        end = next((i for i, token in enumerate(row) if token in lock.eos_ids), len(row))
        replies.append(row[:end])
    return replies


def role_sampling(protocol: Protocol, game: int = 0, seed: int = 0) -> dict[str, SamplingParams]:
    """Each role's sampling settings in game ``game``, as the stack's clients send them (a seeded role's seed
    made the episode's own by `seeded`; no stop strings in this protocol)."""
    ident = episode_id(protocol.name, game, seed)
    return {name: SamplingParams(**{"temperature": 0.7, "top_p": 1.0, **seeded(role, ident, name).sampling.settings(),
                                    "stop": ()})
            for name, role in protocol.spec.roles.items()}


def finish(result: Result, protocol: Protocol, played: list, judge) -> Result:
    """Judge the games no message decided; count what was played."""
    for game in played:
        game.outcome = game.outcome or judge.final(game.variables, game.messages)
    result.games = len(played)
    result.messages = sum(len(g.messages) for g in played)
    result.reasons = Counter(g.outcome.reason for g in played)
    result.targets = sorted(g.variables["target"] for g in played)
    result.transcripts = Counter((g.variables["target"], tuple(m["content"] for m in g.messages)) for g in played)
    return result


def run_lockstep(protocol: Protocol, games: int, lock: Lockstep, seed: int) -> Result:
    result = Result("lockstep")
    sampler, judge = VariableSampler(protocol, None, seed), Judge(protocol)
    sampling = role_sampling(protocol)
    torch.manual_seed(seed)
    start = time.perf_counter()
    played = [Game(protocol, sampler.sample(i)) for i in range(games)]
    live = list(played)
    for round_number, role in enumerate(speakers(protocol)):
        if not live:
            break
        prompts = [encode_chat(lock.tokenizer, game.chat_for(role, round_number)) for game in live]
        replies = batched_generate(lock, prompts, sampling[role])
        result.calls += 1
        still = []
        for game, ids in zip(live, replies):
            result.tokens += len(ids)
            game.add(role, round_number, lock.tokenizer.decode(ids, skip_special_tokens=True))
            game.outcome = judge.after_message(game.variables, game.messages)
            if game.outcome is None or not protocol.spec.stop_on_outcome:
                still.append(game)
        live = still
    result.seconds = time.perf_counter() - start
    return finish(result, protocol, played, judge)


# ----- raw OpenVINO GenAI ------------------------------------------------------------------------
def raw_pipeline(model: str, games: int):
    """A pipeline of the engine's model built as the engine builds its own."""
    from sparring.agents.engine._openvino import build_pipeline
    from sparring.agents.engine._openvino_export import openvino_model_dir
    from sparring.agents._spec import ModelSpec, resolve_model_dir

    return build_pipeline(openvino_model_dir(resolve_model_dir(ModelSpec.parse(model).model)), model,
                          max_batch=max(64, games))


def run_openvino(protocol: Protocol, games: int, engine: BaseEngine, pipe, seed: int) -> Result:
    import numpy as np
    import openvino
    from sparring.agents.engine._openvino import generation_config

    result = Result("openvino")
    sampler, judge = VariableSampler(protocol, None, seed), Judge(protocol)
    order = speakers(protocol)
    sampling = [role_sampling(protocol, index, seed) for index in range(games)]
    running = __import__("openvino_genai").GenerationStatus.RUNNING
    start = time.perf_counter()
    played = [Game(protocol, sampler.sample(i)) for i in range(games)]
    turns = [0] * games
    handles: dict[int, object] = {}
    next_id = iter(range(10**9))

    def submit(index: int) -> None:
        role = order[turns[index]]
        ids = encode_chat(engine.tokenizer, played[index].chat_for(role, turns[index]))
        config = generation_config(Request(ids, sampling[index][role], None), engine.eos_ids, engine.max_positions)
        handles[index] = pipe.add_request(next(next_id), openvino.Tensor(np.array([ids], dtype=np.int64)), config)

    for index in range(games):
        submit(index)
    while handles:
        pipe.step()
        for index, handle in list(handles.items()):
            if handle.get_status() == running:
                continue
            ids = [t for t in handle.read_all()[0].generated_ids if t not in engine.eos_ids]
            del handles[index]
            result.tokens += len(ids)
            game = played[index]
            game.add(order[turns[index]], turns[index], engine.tokenizer.decode(ids, skip_special_tokens=True))
            game.outcome = judge.after_message(game.variables, game.messages)
            turns[index] += 1
            if (game.outcome is None or not protocol.spec.stop_on_outcome) and turns[index] < len(order):
                submit(index)
    result.seconds = time.perf_counter() - start
    return finish(result, protocol, played, judge)


# ----- main --------------------------------------------------------------------------------------
def warm_up(engine: BaseEngine, lock: Lockstep, protocol: Protocol, pipe) -> None:
    """Untimed: one request on each path, so none pays first-call costs."""
    chat = Game(protocol, VariableSampler(protocol, None, 0).sample(0)).chat_for("attacker", 0)
    ids = engine.encode_chat(chat)
    asyncio.run(engine.generate(ids, SamplingParams(max_tokens=4)))
    batched_generate(lock, [ids, ids[:-8]], SamplingParams(max_tokens=4))
    if pipe is not None:
        run_openvino(protocol, 1, engine, pipe, seed=10**6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--model", default="hf:smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", default="stack,openvino,lockstep",
                        help="the paths, in the order they run (alternate between runs to see order effects)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    protocol = protocol_variant(args.max_tokens, args.seed)
    engine = get_engine(args.model, max_batch=max(64, args.games))  # the stack's clients share this engine
    openvino_engine = type(engine).__name__ == "OpenVINOEngine"
    order = [name for name in args.order.split(",") if openvino_engine or name != "openvino"]
    if sorted(order) != sorted({"stack", "lockstep", *(["openvino"] if openvino_engine else [])}):
        raise SystemExit(f"--order {args.order}: name each of stack, openvino, lockstep once")
    lock = Lockstep(args.model)
    pipe = raw_pipeline(args.model, args.games) if openvino_engine else None
    warm_up(engine, lock, protocol, pipe)

    results = {}
    for name in order:
        if name == "stack":
            results[name] = run_stack(protocol, args.games, args.model, args.seed)
        elif name == "openvino":
            results[name] = run_openvino(protocol, args.games, engine, pipe, args.seed)
        else:
            results[name] = run_lockstep(protocol, args.games, lock, args.seed)
    if len({tuple(r.targets) for r in results.values()}) != 1:
        raise SystemExit("the paths played different target words")

    roles = protocol.spec.roles
    print(f"protocol={PROTOCOL} model={args.model} engine={type(engine).__name__} "
          f"lockstep_dtype={str(lock.model.dtype).removeprefix('torch.')} games={args.games} "
          f"max_tokens={args.max_tokens} temperature={roles['attacker'].sampling.temperature} "
          f"threads={torch.get_num_threads()} order={','.join(order)}")
    print(f"{'path':<9} {'games':>5} {'seconds':>8} {'games/min':>9} {'messages':>8} {'tokens':>7} {'tok/s':>7}  outcomes")
    for r in results.values():
        reasons = ", ".join(f"{reason}: {n}" for reason, n in r.reasons.most_common())
        extra = f" [{r.calls} generate calls]" if r.calls else ""
        print(f"{r.name:<9} {r.games:>5} {r.seconds:>8.1f} {r.games_per_min:>9.1f} {r.messages:>8} {r.tokens:>7} "
              f"{r.tokens / r.seconds:>7.1f}  {reasons}{extra}")
    stack = results["stack"]
    if "openvino" in results:
        same = sum((stack.transcripts & results["openvino"].transcripts).values())
        print(f"stack and openvino played {same}/{stack.games} games message for message alike")

    def ratio(other: str) -> float:
        rate = results[other].games_per_min if other in results else 0.0
        return stack.games_per_min / rate if rate else float("nan")

    print(f"selfplay_games_per_min={stack.games_per_min:.2f} speedup_vs_lockstep={ratio('lockstep'):.2f} "
          f"ratio_vs_openvino={ratio('openvino'):.2f}")


if __name__ == "__main__":
    main()

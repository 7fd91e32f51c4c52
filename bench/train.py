"""Training cost of SPAG's offline policy loss against plain SFT, on the same data and model.

Both trainers are built exactly as `sparring train` builds them (`load_for_training`, then
`build_trainer`, the kind's trainer in `sparring.trainer.TRAINERS`: `build_sft_trainer` (TRL
`SFTTrainer`, kl_coeff 0) or `build_spag_trainer`) with the same
settings: LoRA r=16 (or --full), batch size, max length, seed, no gradient checkpointing. The
data is one synthetic Taboo-like dataset (attacker/defender turns with SPAG rewards and weights,
a quarter of general SFT rows); `sft` trains on its rows' last turns, `spag` on the same rows
with its loss. Each trainer runs in its own subprocess, so the peak memory of one cannot hide
in the other's, one after the other, never at once.

Measured per trainer: the median wall time of an optimiser step (the first --warmup steps left
out), and the peak memory of its process: `torch.cuda.max_memory_allocated` on a GPU, else the
resident-set high-water mark (`ru_maxrss`). SPAG also scores its data once under the reference
before training (one no-grad pass); that time is printed separately, not in the step time.

With --repeats N the pair runs N times, alternating sft and spag, and each figure is the best
of its N runs (a machine shared with other work only ever slows a run down).

Usage: python bench/train.py [--model hf:smollm2-135m] [--rows 32] [--steps 6] [--warmup 1]
                             [--batch-size 2] [--max-length 256] [--repeats 1] [--full]
Last line: spag_vs_sft_time=<spag s/step / sft s/step> spag_vs_sft_memory=<spag peak / sft peak>
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLUES = ["a fruit that keeps the doctor away", "water that flows between two banks to the sea",
         "wax with a wick you light at dinner", "a place where flowers and vegetables grow",
         "a tool with a handle for driving nails", "a large animal with a trunk and tusks"]


def make_dataset(folder: Path, rows: int, seed: int) -> None:
    """A Taboo-like SPAG dataset of ``rows`` rows, three quarters game turns, one quarter SFT rows."""
    from datasets import Dataset

    rng = random.Random(seed)
    records = []
    for i in range(rows):
        clue = rng.choice(CLUES)
        history = [{"role": "system", "content": "You are playing a word game as the attacker. " * 6}]
        for turn in range(rng.randint(1, 4)):
            history += [{"role": "user", "content": f"Turn {turn}: tell me more about it, " + clue * 2},
                        {"role": "assistant", "content": f"It is {clue}; " * rng.randint(2, 5)}]
        if i % 4 == 3:
            records.append({"messages": history[1:3], "role": "sft", "reward": 0.0, "weight": 1.0, "type": "sft",
                            "episode_id": ""})
        else:
            records.append({"messages": history, "role": "attacker", "reward": rng.uniform(0.1, 0.6),
                            "weight": rng.choice([0.8, 1.25]), "type": "game", "episode_id": f"ep{i // 3}"})
    Dataset.from_list(records).save_to_disk(str(folder))


def worker(args) -> None:
    """Train one kind for --steps steps in this process and print one JSON line of measurements."""
    import torch
    from transformers import TrainerCallback

    from sparring.trainer import TrainConfig
    from sparring.trainer._model import load_for_training
    from sparring.trainer._train import _training_rows, build_trainer

    config = TrainConfig(data=args.data, model=args.model, output=args.output, kind=args.worker, full=args.full,
                         max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                         logging_steps=1, kl_coeff=None if args.worker == "spag" else 0.0)
    rows = _training_rows(config)
    model, tokenizer = load_for_training(config)
    started = time.perf_counter()
    trainer = build_trainer(config, model, tokenizer, rows, args.output, continuing=False)  # as `train` builds it
    setup = time.perf_counter() - started
    setup_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            stamps[-1] = time.perf_counter() - stamps[-1]

    trainer.add_callback(Clock())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    if torch.cuda.is_available():
        peak, unit = torch.cuda.max_memory_allocated() / 2**20, "MiB CUDA allocated"
    else:
        peak, unit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB RSS"
    steps = stamps[args.warmup:] or stamps
    print(json.dumps({"kind": args.worker, "step_s": statistics.median(steps), "steps": len(stamps),
                      "peak_mib": peak, "unit": unit, "setup_s": setup,
                      "setup_rss_mib": setup_peak}))


def run_worker(kind: str, args, data: Path, scratch: Path) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--output", str(scratch),
               "--model", args.model, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)] + (["--full"] if args.full else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{kind} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hf:smollm2-135m")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="Runs of the pair; the best of each figure counts.")
    parser.add_argument("--full", action="store_true", help="Train all weights instead of LoRA.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["sft", "spag"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        make_dataset(scratch / "data", args.rows, args.seed)
        runs = [{kind: run_worker(kind, args, scratch / "data", scratch / f"{kind}{i}") for kind in ("sft", "spag")}
                for i in range(args.repeats)]
    results = {kind: {**runs[0][kind], "step_s": min(run[kind]["step_s"] for run in runs),
                      "peak_mib": min(run[kind]["peak_mib"] for run in runs)} for kind in ("sft", "spag")}
    mode = "all weights" if args.full else "LoRA r=16"
    print(f"{args.model}, {mode}, batch {args.batch_size}, max length {args.max_length}, {args.rows} rows, "
          f"median of steps {args.warmup + 1}..{args.steps}, best of {args.repeats}")
    for kind, r in results.items():
        setup = "setup incl. reference pass" if kind == "spag" else "setup"
        extra = f"  ({setup} {r['setup_s']:.1f} s, RSS high-water before training {r['setup_rss_mib']:.0f} MiB)"
        print(f"{kind:5s} {r['step_s']:.3f} s/step  peak {r['peak_mib']:.0f} {r['unit']}{extra}")
    sft, spag = results["sft"], results["spag"]
    print(f"spag_vs_sft_time={spag['step_s'] / sft['step_s']:.2f} spag_vs_sft_memory={spag['peak_mib'] / sft['peak_mib']:.2f}")


if __name__ == "__main__":
    main()

"""Real training steps of each kind on the embedded model on CPU (LoRA), then the adapter plays Taboo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sparring.cli import app
from sparring.errors import TrainingError
from sparring.trainer import TrainConfig, train

BASE = "hf:smollm2-135m"
FAST = dict(max_steps=3, batch_size=8, lora_r=4, max_length=256, lr=5e-4, logging_steps=1)


def taboo_rows() -> list[dict]:
    """A small Taboo-like SPAG dataset: attacker and defender turns of decisive games, plus general SFT rows."""
    rows = []
    for i, (word, clue) in enumerate([("apple", "a red fruit that keeps the doctor away"),
                                      ("river", "water that flows to the sea between two banks"),
                                      ("candle", "wax with a wick that you light at dinner")]):
        system = f"You are playing a word game as the attacker. The secret word is \"{word}\"."
        rows.append({"messages": [{"role": "system", "content": system},
                                  {"role": "user", "content": "Start the game: write your first message."},
                                  {"role": "assistant", "content": f"Think of {clue}. What is it called?"}],
                     "role": "attacker", "reward": 0.45 + 0.1 * i, "weight": 1.25, "type": "game", "episode_id": f"ep{i}"})
        rows.append({"messages": [{"role": "system", "content": "You are the defender. Guess the word."},
                                  {"role": "user", "content": f"Think of {clue}. What is it called?"},
                                  {"role": "assistant", "content": f"I know the word! It is {word}."}],
                     "role": "defender", "reward": 1.0, "weight": 0.8, "type": "game", "episode_id": f"ep{i}"})
    rows += [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
              "role": "sft", "reward": 0.0, "weight": 1.0, "type": "sft", "episode_id": ""}
             for q, a in [("What is 2 + 2?", "2 + 2 = 4."), ("Name a colour.", "Blue is a colour.")]]
    return rows


def write_dataset(folder: Path, rows: list[dict], dropped: dict | None = None) -> Path:
    """A dataset directory in the row format of `sparring data build`: HF dataset + data.jsonl + summary.json."""
    from datasets import Dataset, Features, List, Value

    features = Features({"messages": List({"role": Value("string"), "content": Value("string")}), "role": Value("string"),
                         "reward": Value("float64"), "weight": Value("float64"), "type": Value("string"),
                         "episode_id": Value("string")})
    columns = {name: [row[name] for row in rows] for name in features}
    Dataset.from_dict(columns, features=features).save_to_disk(str(folder), num_shards=1)  # 1 shard even when empty
    (folder / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = {"kind": "spag", "episodes": 4, "games_used": len({r["episode_id"] for r in rows if r["episode_id"]}),
               "rows": len(rows), "game_rows": sum(r["type"] == "game" for r in rows),
               "sft_rows": sum(r["type"] == "sft" for r in rows), "dropped": dropped or {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def losses(result) -> list[float]:
    return [entry["loss"] for entry in result.log_history if "loss" in entry]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), taboo_rows())


@pytest.fixture(scope="module")
def spag_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("spag") / "adapter"
    return train(TrainConfig(data=data, model=BASE, output=out, kind="spag", merge=True, **FAST))


@pytest.mark.slow
def test_spag_trains_only_the_adapter_and_writes_a_playable_output(spag_run, data):
    out = spag_run.output
    history = losses(spag_run)
    assert spag_run.steps == 3 and len(history) == 3
    assert all(math.isfinite(x) for x in history) and history[-1] < history[0]
    first = next(e for e in spag_run.log_history if "loss" in e)
    assert first["kl"] == pytest.approx(0.0, abs=1e-5) and first["ratio"] == pytest.approx(1.0, abs=1e-5)
    assert spag_run.play_spec == f"{BASE}+{out}"

    # Every LoRA matrix moved from its initial value (B starts at zero; A from the seeded init).
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    from sparring.agents._spec import resolve_model_dir

    trained = load_file(out / "adapter_model.safetensors")
    assert trained and all("lora_" in key for key in trained)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2-135m"), dtype=torch.float32)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    set_seed(0)
    initial = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    initial_state = {k.replace(".default", ""): v for k, v in initial.state_dict().items() if "lora_" in k}
    assert set(trained) == set(initial_state)
    assert all(not torch.equal(trained[k], initial_state[k]) for k in trained)

    # The merged model differs from the base exactly in the adapted projections: the base weights were not trained.
    merged = load_file(out / "merged" / "model.safetensors")
    for name, weight in base_state.items():
        if name not in merged:
            continue  # tied embeddings are saved once
        adapted = name.endswith("_proj.weight")
        assert torch.equal(merged[name], weight) != adapted, name

    card = (out / "README.md").read_text()
    assert "smollm2-135m" in card and str(data) in card and "| kl_coeff | 0.2 |" in card and "game_rows" in card
    log = json.loads((out / "training_log.json").read_text())
    assert [e["loss"] for e in log if "loss" in e] == history
    assert not list(out.parent.glob(".*partial"))


@pytest.mark.slow
async def test_the_trained_adapter_plays_a_taboo_episode(spag_run, tmp_path):
    from sparring.agents import model_client
    from sparring.protocols import load_protocol, play
    from sparring.transcripts import read_transcripts

    spec = spag_run.play_spec
    protocol = load_protocol("adversarial_taboo")
    models = {role: spec for role in protocol.spec.roles}
    summary = await play(protocol, 1, tmp_path, models,
                         clients=lambda role, s: model_client(spec, **{**s.sampling.settings(), "max_tokens": 8}))
    (episode,) = read_transcripts(summary.path)
    assert episode.status == "ok", episode.error
    assert episode.messages and episode.models["attacker"] == spec


@pytest.mark.slow
def test_sft_with_kl_to_the_base_then_continue_the_adapter(data, tmp_path):
    first = train(TrainConfig(data=data, model=BASE, output=tmp_path / "imitation", kind="sft", kl_coeff=0.1, **FAST))
    history = losses(first)
    assert all(math.isfinite(x) for x in history) and history[-1] < history[0]
    kls = [e["kl"] for e in first.log_history if "kl" in e]
    assert kls[0] == pytest.approx(0.0, abs=1e-5) and kls[-1] != 0.0  # reference = the adapter-disabled model

    # Continuing: the same adapter keys (no second adapter stacked), the reference is the adapter as loaded.
    settings = {**FAST, "max_steps": 2, "lora_r": None}
    second = train(TrainConfig(data=data, model=first.play_spec, output=tmp_path / "continued", kind="sft",
                               kl_coeff=0.1, **settings))
    kls = [e["kl"] for e in second.log_history if "kl" in e]
    assert kls[0] == pytest.approx(0.0, abs=1e-5)
    assert losses(second)[0] < history[0]  # it starts where the first run ended
    before, after = load_file(first.output / "adapter_model.safetensors"), load_file(second.output / "adapter_model.safetensors")
    assert set(before) == set(after) and all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    config = json.loads((second.output / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"].endswith("smollm2-135m")
    assert f"`{first.output}` (continued" in (second.output / "README.md").read_text()


@pytest.mark.slow
def test_saie_through_the_cli(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"What is {a} + {b}? Discuss, then answer."},
                          {"role": "assistant", "content": f"{a} + {b} = {a + b}. The answer is {a + b}."}],
             "role": "learner", "reward": 1.0, "weight": 1.0, "type": "game", "episode_id": f"q{a}"}
            for a, b in [(2, 3), (4, 5), (7, 1)]]
    data = write_dataset(tmp_path / "saie", rows)
    out = tmp_path / "learner"
    result = CliRunner().invoke(app, ["train", "saie", "--data", str(data), "--output", str(out), "--max-steps", "3",
                                      "--lora-r", "4", "--max-length", "128", "--lr", "5e-4", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert f"play it with: --model {BASE}+{out}" in result.output
    log = json.loads((out / "training_log.json").read_text())
    history = [e["loss"] for e in log if "loss" in e]
    assert history and history[-1] < history[0]


def test_an_empty_dataset_is_refused_before_loading_the_model(tmp_path):
    data = write_dataset(tmp_path / "empty", [], dropped={"tie": 3, "attacker breaks the rules": 1})
    with pytest.raises(TrainingError, match=r"holds no training rows.*tie.*3"):
        train(TrainConfig(data=data, model=BASE, output=tmp_path / "out", kind="spag"))
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["train", "spag", "--data", str(data), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no training rows" in result.output


@pytest.mark.parametrize("settings, message", [
    ({"full": True, "lora_r": 8}, "--full trains every weight"),
    ({"full": True, "merge": True}, "--merge merges a LoRA adapter"),
    ({"kind": "dpo"}, "expected one of sft, spag, saie"),
    ({"clip_range": 1.5}, "clip_range=1.5"),
    ({"model": "hf:smollm2-135m+some/adapter", "full": True}, "--full with an adapter spec"),
])
def test_settings_that_contradict_each_other(settings, message, tmp_path):
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**{"data": tmp_path, "model": BASE, "output": tmp_path / "o", **settings})


def test_defaults_per_kind(tmp_path):
    spag = TrainConfig(data=tmp_path, model=BASE, output=tmp_path / "o", kind="spag")
    assert (spag.kl_coeff, spag.lr, spag.lora_r, spag.lora_alpha) == (0.2, 1e-4, 16, 32)
    full = TrainConfig(data=tmp_path, model=BASE, output=tmp_path / "o", kind="sft", full=True)
    assert (full.kl_coeff, full.lr, full.lora_r) == (0.0, 2e-6, None)
    assert TrainConfig(data=tmp_path, model=BASE, output=tmp_path / "o", clip_range=0).clip_range is None


@pytest.mark.slow
def test_spag_preset_is_the_papers_settings_and_flags_win_over_it(data, tmp_path):
    from sparring.trainer import PRESETS

    assert PRESETS["spag"] | {} == {"full": True, "epochs": 1.0, "lr_scheduler": "cosine", "warmup_ratio": 0.03,
                                    "batch_size": 4, "grad_accum": 32, "max_length": 2048, "lr": 2e-6,
                                    "kl_coeff": 0.2, "sft_coeff": 0.5, "clip_range": 0.2}
    assert (PRESETS["spag-imitation"]["lr"], PRESETS["spag-imitation"]["kl_coeff"]) == (5e-6, 0.1)
    out = tmp_path / "adapter"
    result = CliRunner().invoke(app, ["train", "spag", "--data", str(data), "--output", str(out), "--preset", "spag-lora",
                                      "--grad-accum", "1", "--batch-size", "2", "--max-steps", "4", "--lora-r", "4",
                                      "--max-length", "256"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "training_log.json").read_text())
    rates = [entry["learning_rate"] for entry in card if "learning_rate" in entry]
    # 3% warm-up of 4 steps is 1 step: up from 0, then a cosine decay from the peak 2e-5
    assert rates[0] == 0 and rates[1] == pytest.approx(2e-5) and rates[1] > rates[2] > rates[3]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 32  # --lora-r given, alpha from the preset
    bad = CliRunner().invoke(app, ["train", "spag", "--data", str(data), "--output", str(tmp_path / "x"),
                                   "--preset", "spagg"])
    assert bad.exit_code != 0 and "no such preset; choose one of spag, spag-imitation" in bad.output


def test_an_output_that_exists_or_an_unknown_logger_is_refused(data, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "adapter_config.json").write_text("{}")
    with pytest.raises(TrainingError, match="already exists"):
        train(TrainConfig(data=data, model=BASE, output=tmp_path / "taken", kind="sft"))
    with pytest.raises(TrainingError, match=r"--report-to tensorboard,nowhere: unknown \['nowhere'\]"):
        train(TrainConfig(data=data, model=BASE, output=tmp_path / "new", kind="sft", report_to="tensorboard,nowhere"))


def test_train_help():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--lora-r", "--full", "--kl-coeff", "--sft-coeff", "--clip-range", "--merge", "--report-to",
                   "--preset", "--lr-scheduler", "--warmup-ratio"):
        assert option in result.output


def test_shipped_accelerate_configs_load():
    from importlib.resources import files

    from accelerate.commands.config.config_args import load_config_from_file

    folder = files("sparring.trainer") / "configs"
    kinds = {name: load_config_from_file(str(folder / f"{name}.yaml")).distributed_type.value
             for name in ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")}
    assert kinds == {"ddp": "MULTI_GPU", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}


def test_training_progress_bar_shows_steps_time_left_and_loss():
    from types import SimpleNamespace

    from rich.console import Console

    from sparring.trainer._progress import StepProgress

    console = Console(record=True, force_terminal=True, width=140)
    bar, state = StepProgress(console=console), SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    bar.on_train_begin(None, state, None)
    state.global_step = 2
    bar.on_step_end(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 0.5123})
    bar._progress.refresh()
    shown = console.export_text()
    bar.on_train_end(None, state, None)
    assert "training" in shown and "2/4" in shown and "ETA" in shown and "loss 0.5123" in shown
    quiet = StepProgress(console=console)  # another process of a distributed run shows nothing
    quiet.on_train_begin(None, SimpleNamespace(is_world_process_zero=False, max_steps=4, global_step=0), None)
    assert quiet._progress is None

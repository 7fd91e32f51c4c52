"""`sparring eval bench`: lm-evaluation-harness on a local multiple-choice task (offline) for a trained adapter,
the bench.json it writes, the report's benchmark table, the errors, self-play's resumable benchmarks, and
adapters that record their base model by name."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _tasks import QUESTIONS, write_choice_task
from sparring.cli import app
from sparring.evaluation import _bench
from sparring.evaluation._bench import BENCH_FILE, BENCH_SCHEMA, BenchmarkError, read_bench, run_bench
from sparring.report import build_report
from sparring.trainer import SelfPlay, SelfPlayConfig, TrainConfig, train

pytest.importorskip("lm_eval")

BASE = "hf:smollm2-135m"
TASK = "sparring_bench_tiny"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """A directory holding one multiple-choice task: its YAML and the JSONL of 6 documents it reads."""
    return write_choice_task(tmp_path_factory.mktemp("tasks"), TASK, QUESTIONS)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A real adapter: one `sparring train sft` step on the embedded model."""
    from datasets import Dataset

    folder = tmp_path_factory.mktemp("trained")
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": c[a]}], "role": "learner",
             "reward": 1.0, "weight": 1.0, "type": "game", "episode_id": f"q{i}"} for i, (q, c, a) in enumerate(QUESTIONS)]
    Dataset.from_list(rows).save_to_disk(str(folder / "data"))
    result = train(TrainConfig(data=folder / "data", model=BASE, output=folder / "adapter", kind="sft", max_steps=1,
                               batch_size=6, lora_r=4, max_length=64, lr=1e-3))
    return result.output


@pytest.mark.slow
def test_an_adapter_records_its_base_by_name_and_still_loads(adapter, tmp_path):
    from sparring.serving._vllm import vllm_args

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE  # not ~/.cache/sparring/models/...
    assert "base_model: hf:smollm2-135m\n" in (adapter / "README.md").read_text()
    # Continuing it: the base comes from the spec, PEFT finds the local config.json (no hub lookup, no warning).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        continued = train(TrainConfig(data=adapter.parent / "data", model=f"{BASE}+{adapter}",
                                      output=tmp_path / "continued", kind="sft", max_steps=1, batch_size=6,
                                      max_length=64))
    assert not [w for w in caught if "Could not find a config file" in str(w.message)]
    assert json.loads((continued.output / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE
    # vLLM takes the base as --model and the adapter beside it
    args = vllm_args(BASE, host="127.0.0.1", port=8000, served_name="base", loras={"epoch1": str(adapter)})
    assert args[args.index("--lora-modules") + 1] == f"epoch1={adapter}"


@pytest.mark.slow
def test_eval_bench_scores_an_adapter_and_the_report_shows_before_and_after(adapter, tasks, tmp_path):
    run = tmp_path / "run"
    base = run_bench(BASE, TASK, run / "baseline", limit=4, include_path=tasks)
    spec = f"{BASE}+{adapter}"
    result = CliRunner().invoke(app, ["eval", "bench", "--model", spec, "--tasks", TASK, "--include-path", str(tasks),
                                      "--limit", "4", "--batch-size", "4", "--out", str(run / "epoch_1")])
    assert result.exit_code == 0, result.output
    assert TASK in result.output and "acc" in result.output and "±" in result.output

    record = read_bench(run / "epoch_1")
    assert record["schema"] == BENCH_SCHEMA and record["model"] == spec and record["backend"] == "hf"
    assert record["tasks"] == [TASK] and record["limit"] == 4 and record["lm_eval_version"].startswith("0.4")
    scores = record["results"][TASK]
    assert scores["n_samples"] == {"original": 6, "effective": 4}
    acc = scores["metrics"]["acc"]
    assert isinstance(acc["value"], float) and 0 <= acc["value"] <= 1 and acc["value"] * 4 == round(acc["value"] * 4)
    assert isinstance(acc["stderr"], float) and acc["stderr"] >= 0
    assert 0 <= base.results[TASK]["metrics"]["acc"]["value"] <= 1

    summary = build_report(run, run / "report.html")
    html = summary.output.read_text()
    assert 'id="benchmarks"' in html and "start model" in html and "epoch 1" in html and TASK in html
    assert f"{acc['value']:.4f} ± {acc['stderr']:.4f}" in html
    # a plain `eval bench --out` directory alone is a report too
    alone = build_report(run / "epoch_1", tmp_path / "alone.html").output.read_text()
    assert 'id="benchmarks"' in alone and "Benchmark report" in alone


@pytest.mark.slow
def test_an_unknown_task_is_named_with_how_to_list_tasks(tasks, tmp_path):
    result = CliRunner().invoke(app, ["eval", "bench", "--model", BASE, "--tasks", f"{TASK},arc_easyy",
                                      "--include-path", str(tasks), "--out", str(tmp_path)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "unknown lm-eval task 'arc_easyy'" in line and "did you mean arc_easy" in line
    assert "lm-eval ls tasks" in line and "--include-path" in line
    assert not (tmp_path / BENCH_FILE).exists()


def test_specs_and_installs_it_cannot_use(monkeypatch, tmp_path):
    with pytest.raises(BenchmarkError, match=r"litellm:.*hf: specs.*openai:MODEL@URL"):
        run_bench("litellm:openai/gpt-4o-mini", TASK, tmp_path)
    with pytest.raises(BenchmarkError, match="tokenizer"):
        _bench._openai_args(_spec("openai:served-model@http://127.0.0.1:9/v1"), None)
    backend, args = _bench._openai_args(_spec(f"openai:{BASE}@http://127.0.0.1:9/v1?timeout=5"), None)
    assert backend == "local-completions" and args["base_url"] == "http://127.0.0.1:9/v1/completions"
    assert args["tokenizer_backend"] == "huggingface" and Path(args["tokenizer"]).is_dir() and args["timeout"] == 5
    real = _bench.importlib.util.find_spec
    monkeypatch.setattr(_bench.importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(BenchmarkError, match=r"pip install 'sparring\[bench\]'"):
        run_bench(BASE, TASK, tmp_path)


def test_selfplay_benchmarks_each_model_once(monkeypatch, tmp_path, tasks):
    calls = []

    def fake(model, names, out, **settings):
        calls.append((model, out))
        record = {"schema": BENCH_SCHEMA, "model": model, "tasks": names, "limit": settings["limit"],
                  "num_fewshot": None, "results": {TASK: {"metrics": {"acc": {"value": 0.5, "stderr": 0.1}}}}}
        _bench.write_bench(out, record)
        return _bench.BenchResult(model=model, backend="hf", tasks=names, limit=settings["limit"], num_fewshot=None,
                                  lm_eval_version="0", results=record["results"], path=out / BENCH_FILE)

    monkeypatch.setattr(_bench, "run_bench", fake)
    config = SelfPlayConfig("adversarial_taboo", BASE, tmp_path, bench_tasks=[f"{TASK}, {TASK}"], bench_limit=2,
                            bench_include_path=str(tasks))
    assert config.bench_tasks == [TASK]
    play = SelfPlay(config, report=lambda line: None)
    play._bench(tmp_path / "baseline", BASE, "baseline")
    play._bench(tmp_path / "baseline", BASE, "baseline")  # resumed: already there
    assert calls == [(BASE, tmp_path / "baseline")]
    play.config.bench_limit = 3  # other settings: measured again
    play._bench(tmp_path / "baseline", BASE, "baseline")
    assert len(calls) == 2 and read_bench(tmp_path / "baseline")["limit"] == 3


def _spec(text: str):
    from sparring.agents._spec import ModelSpec

    return ModelSpec.parse(text)

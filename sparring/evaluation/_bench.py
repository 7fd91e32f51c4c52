"""Reasoning benchmarks through lm-evaluation-harness (``lm_eval.simple_evaluate``), and the file they write.

`run_bench` evaluates one model spec on lm-eval tasks:

- ``hf:`` specs run in this process on lm-eval's ``hf`` model, ``pretrained=DIR`` being the
  directory sparring resolves the spec to (the embedded GGUF converted once to safetensors, a
  model directory or a hub id) and ``peft=ADAPTER`` the spec's ``+ADAPTER``; float32 on a CPU;
- ``openai:MODEL@URL`` specs go to lm-eval's ``local-completions`` at ``URL/completions`` (vLLM,
  `sparring serve`, any OpenAI-compatible server that returns prompt logprobs);
- ``litellm:`` specs are refused (they give no log-likelihoods of a prompt).

The result is written to ``OUT/bench.json`` in one step (a temporary file, then a rename). Its
format, version ``sparring.bench/1``:

```json
{
  "schema": "sparring.bench/1",
  "model": "hf:smollm2-135m+runs/epoch_1/adapter",
  "backend": "hf",
  "tasks": ["arc_easy", "piqa"],
  "limit": 100,
  "num_fewshot": null,
  "lm_eval_version": "0.4.13",
  "created": "2025-01-01T12:00:00+00:00",
  "seconds": 812.4,
  "results": {
    "arc_easy": {
      "alias": "arc_easy",
      "group": false,
      "n_samples": {"original": 2376, "effective": 100},
      "n_shot": 0,
      "metrics": {"acc": {"value": 0.43, "stderr": 0.0497, "higher_is_better": true},
                  "acc_norm": {"value": 0.4, "stderr": 0.0492, "higher_is_better": true}}
    }
  }
}
```

``results`` holds every task and group lm-eval reported (a group such as ``bbh`` has
``"group": true`` and its subtasks beside it); a metric is named as lm-eval names it with its
filter, the default filter ``none`` left out (``acc``, ``exact_match,get-answer``); ``stderr`` is
null where lm-eval gave none. `read_bench` reads it back; `bench_rows` flattens it to
(task, metric, value, stderr) rows, as the CLI's table and `sparring report` show it.

Example:
    ```python
    from pathlib import Path
    from sparring.evaluation._bench import run_bench

    result = run_bench("hf:smollm2-135m", ["arc_easy"], Path("runs/eval/bench"), limit=50)
    print(result.results["arc_easy"]["metrics"]["acc"])
    ```
"""

from __future__ import annotations

import datetime as _dt
import difflib
import gc
import importlib.util
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import BenchmarkError, SparringError
from ..runs import BENCH_FILE, BENCH_SCHEMA, BenchFile, RunFileError, parse_record, read_json, write_json

INSTALL_BENCH = "pip install 'sparring[bench]'"
LIST_TASKS = "lm-eval ls tasks"
SPAG_TASKS = ("bbh", "arc_easy", "arc_challenge", "mutual", "winogrande", "logiqa2", "piqa")
"""The reasoning benchmarks of SPAG (Cheng et al. 2024), by their lm-eval task names."""
_SKIPPED_KEYS = {"alias", "name", "sample_len", "sample_count", " ", ""}


@dataclass
class BenchResult:
    """What one `run_bench` measured: the content of ``bench.json`` (see the module docstring).

    Args:
        model (`str`): the model spec evaluated (credentials never included).
        backend (`str`): lm-eval's model type that ran it: ``"hf"`` or ``"local-completions"``.
        tasks (`list[str]`): the tasks asked for.
        limit (`int | None`): documents per task at most (None: all).
        num_fewshot (`int | None`): few-shot examples forced on every task (None: each task's own).
        lm_eval_version (`str`): the lm-evaluation-harness that ran.
        results (`dict`): task -> ``{"alias", "group", "n_samples", "n_shot", "metrics"}``.
        created (`str`): when it finished (ISO 8601, UTC).
        seconds (`float`): how long the evaluation took.
        path (`Path | None`): the ``bench.json`` written (None when nothing was written).
    """

    model: str
    backend: str
    tasks: list[str]
    limit: int | None
    num_fewshot: int | None
    lm_eval_version: str
    results: dict[str, dict[str, Any]]
    created: str = ""
    seconds: float = 0.0
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``bench.json`` content."""
        data = asdict(self)
        order = ("model", "backend", "tasks", "limit", "num_fewshot", "lm_eval_version", "created", "seconds", "results")
        return {"schema": BENCH_SCHEMA, **{key: data[key] for key in order}}


@dataclass(frozen=True)
class BenchRow:
    """One metric of one task: a row of the CLI's table and a cell of the report's."""

    task: str
    metric: str
    value: float | None
    stderr: float | None
    group: bool = False

    def text(self) -> str:
        """``0.4300 ± 0.0497`` (``–`` for a missing value)."""
        if self.value is None:
            return "–"
        return f"{self.value:.4f}" + (f" ± {self.stderr:.4f}" if self.stderr is not None else "")


def require_lm_eval() -> None:
    """Check that lm-evaluation-harness can be imported, without importing it.

    Raises:
        `BenchmarkError`: it is not installed (the message says how to install it).
    """
    if importlib.util.find_spec("lm_eval") is None:
        raise BenchmarkError(f"benchmarks need lm-evaluation-harness: {INSTALL_BENCH}")


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``"arc_easy, piqa"`` or ``["arc_easy", "piqa"]`` -> ``["arc_easy", "piqa"]`` (order kept, repeats dropped).

    Raises:
        `BenchmarkError`: no task is named.
    """
    items = tasks.split(",") if isinstance(tasks, str) else [part for item in tasks for part in str(item).split(",")]
    names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not names:
        raise BenchmarkError(f"no benchmark task given: name lm-eval tasks, e.g. --tasks {','.join(SPAG_TASKS[1:3])}")
    return names


def parse_batch_size(value: int | str) -> int | str:
    """``8``, ``"8"`` -> 8; ``"auto"`` (or ``"auto:4"``, lm-eval's re-tries) stays as it is.

    Raises:
        `BenchmarkError`: neither a positive number nor ``auto``.
    """
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if text == "auto" or text.startswith("auto:") and text[5:].isdigit():
        return text
    raise BenchmarkError(f"--batch-size {value!r}: expected a positive number or auto")


def run_bench(model: str, tasks: str | Sequence[str], out: Path | None = None, *, limit: int | None = None,
              include_path: str | Path | None = None, num_fewshot: int | None = None, batch_size: int | str = 8,
              tokenizer: str | None = None, device: str | None = None,
              on_status: Callable[[str], None] | None = None) -> BenchResult:
    """Evaluate ``model`` on lm-eval ``tasks`` and write ``out/bench.json`` (when ``out`` is given).

    Args:
        model (`str`): an ``hf:`` spec (``+ADAPTER`` included) or an ``openai:MODEL@URL`` spec.
        tasks (`str | Sequence[str]`): lm-eval task or group names (comma-separated in a string),
            e.g. ``"arc_easy,piqa"``; a task's YAML file path works too.
        out (`Path | None`): the directory of ``bench.json``; None writes nothing.
        limit (`int | None`): documents per task at most (a quick look; the scores of a subset).
        include_path (`str | Path | None`): a directory of task YAML files (with their data, e.g.
            JSONL files the YAML names): local tasks run offline. When every task is found there,
            lm-eval's own task index (thousands of files) is not read at all.
        num_fewshot (`int | None`): few-shot examples for every task (default: each task's own, else 0).
        batch_size (`int | str`, defaults to 8): lm-eval's batch size (``"auto"`` for ``hf:`` on a GPU).
        tokenizer (`str | None`): ``openai:`` only: the tokenizer lm-eval counts tokens with (a hub id,
            a directory or an ``hf:`` spec), or ``"none"`` for generation-only tasks; default: the served
            model's name when it is an ``hf:`` spec (as `sparring serve` names models), a directory or a hub id.
        device (`str | None`): ``hf:`` only: ``cuda`` or ``cpu`` (default: ``cuda`` when available).
        on_status (`Callable[[str], None] | None`): receives a line at each stage (indexing tasks,
            loading the model); lm-eval draws its own progress bars.

    Returns:
        `BenchResult`: the per-task metrics, also in ``out/bench.json``.

    Raises:
        `BenchmarkError`: lm-eval is not installed, a task is unknown, the spec is a ``litellm:`` one,
            or lm-eval failed.
        `BackendError`: the model or the adapter cannot be found.
    """
    from ..agents._spec import ModelSpec, redacted

    require_lm_eval()
    names = parse_tasks(tasks)
    if limit is not None and limit < 1:
        raise BenchmarkError(f"--limit must be 1 or more, got {limit}")
    spec = ModelSpec.parse(model)
    batch_size = parse_batch_size(batch_size)
    status = on_status or (lambda line: None)
    if spec.scheme == "litellm":
        raise BenchmarkError(f"{redacted(model)}: benchmarks run on hf: specs (in this process, adapters included) "
                             "and openai:MODEL@URL specs (lm-eval's local-completions, e.g. against vLLM or "
                             "`sparring serve`); a litellm: model gives no log-likelihoods of a prompt")
    import lm_eval
    from lm_eval import simple_evaluate

    manager = task_manager(names, include_path, status)
    device = (device or _default_device()) if spec.scheme == "hf" else None
    backend, model_args = _hf_args(spec, device) if spec.scheme == "hf" else _openai_args(spec, tokenizer)
    if spec.scheme == "openai" and not isinstance(batch_size, int):
        batch_size = 1  # lm-eval's API models take no "auto"
    status(f"evaluating {redacted(model)} on {', '.join(names)} with lm-eval {lm_eval.__version__} ({backend})")
    started = time.perf_counter()
    try:
        output = simple_evaluate(model=backend, model_args=model_args, tasks=names, task_manager=manager, limit=limit,
                                 num_fewshot=num_fewshot, batch_size=batch_size, device=device, log_samples=False)
    except SparringError:
        raise
    except (KeyError, ValueError, OSError, RuntimeError, TypeError, AssertionError, ImportError) as error:
        raise BenchmarkError(f"lm-eval failed on {redacted(model)} ({', '.join(names)}): "
                             f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    finally:
        gc.collect()  # the evaluated model goes now, not whenever
        _empty_cuda_cache()
    result = BenchResult(
        model=redacted(model), backend=backend, tasks=names, limit=limit, num_fewshot=num_fewshot,
        lm_eval_version=str(lm_eval.__version__), results=_results(output or {}),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 1))
    if out is not None:
        result.path = write_bench(Path(out), result)
    return result


def task_manager(names: Sequence[str], include_path: str | Path | None = None,
                 status: Callable[[str], None] = lambda line: None):
    """An lm-eval ``TaskManager`` that knows every task of ``names``.

    With ``include_path``, first a manager of that directory alone (fast: no index of lm-eval's
    own tasks); lm-eval's whole index only when a task is not there.

    Raises:
        `BenchmarkError`: ``include_path`` is not a directory, or a task is found nowhere (the
            message names it, suggests close names and says how to list the tasks).
    """
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        include = Path(include_path).expanduser()
        if not include.is_dir():
            raise BenchmarkError(f"--include-path {include_path}: no such directory (it should hold task YAML files)")
        local = TaskManager(include_path=str(include), include_defaults=False)
        if not _unknown(local, names):
            return local
    status("indexing lm-eval's tasks")
    manager = TaskManager(include_path=str(Path(include_path).expanduser()) if include_path else None)
    unknown = _unknown(manager, names)
    if unknown:
        close = {name: difflib.get_close_matches(name, manager.all_tasks, n=3, cutoff=0.75) for name in unknown}
        hints = "; ".join(f"did you mean {', '.join(found)}?" for found in close.values() if found)
        where = f" or in --include-path {include_path}" if include_path else ""
        raise BenchmarkError(
            f"unknown lm-eval task{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)}: not among "
            f"lm-eval's tasks{where}{' (' + hints + ')' if hints else ''}. List the tasks with `{LIST_TASKS}`; for "
            "tasks of your own pass --include-path DIR, a directory of task YAML files")
    return manager


def write_bench(folder: Path, result: BenchResult | dict[str, Any]) -> Path:
    """Write ``folder/bench.json`` atomically (a temporary file, then a rename); return its path."""
    data = result.to_dict() if isinstance(result, BenchResult) else result
    return write_json(Path(folder) / BENCH_FILE, data)


def read_bench(path: Path) -> dict[str, Any]:
    """A ``bench.json`` (the file, or a directory holding it), checked against `BENCH_SCHEMA`'s shape.

    Raises:
        `BenchmarkError`: the file is missing, not JSON, or not a ``sparring.bench/1`` record.
    """
    path = Path(path)
    file = path / BENCH_FILE if path.is_dir() else path
    try:
        data = read_json(file)
    except RunFileError as error:
        raise BenchmarkError(str(error)) from error
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("sparring.bench/"):
        raise BenchmarkError(f"{file}: not a benchmark record (expected \"schema\": \"{BENCH_SCHEMA}\")")
    if not isinstance(data.get("results"), dict):
        raise BenchmarkError(f"{file}: no \"results\" mapping of task -> metrics")
    try:
        parse_record(data, BenchFile, file)  # `sparring.runs.BenchFile`: every field of the right type
    except RunFileError as error:
        raise BenchmarkError(str(error)) from error
    return data


def bench_rows(data: dict[str, Any]) -> list[BenchRow]:
    """The (task, metric, value, stderr) rows of a ``bench.json`` record, in its order; malformed entries left out."""
    rows = []
    for task, entry in (data.get("results") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            continue
        for metric, score in entry["metrics"].items():
            if isinstance(score, dict):
                rows.append(BenchRow(str(task), str(metric), _number(score.get("value")), _number(score.get("stderr")),
                                     bool(entry.get("group"))))
    return rows


def same_settings(data: dict[str, Any] | None, tasks: Sequence[str], limit: int | None,
                  num_fewshot: int | None = None) -> bool:
    """Whether a ``bench.json`` record measured these tasks with this limit and few-shot count (so it can be kept)."""
    return (isinstance(data, dict) and list(data.get("tasks") or []) == list(tasks) and data.get("limit") == limit
            and data.get("num_fewshot") == num_fewshot)


# -- lm-eval's models --------------------------------------------------------------------------


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _hf_args(spec, device: str) -> tuple[str, dict[str, Any]]:
    """lm-eval's ``hf`` model arguments for an ``hf:`` spec: the resolved directory, the adapter, the dtype."""
    import torch

    from ..agents._spec import check_adapter_dir, resolve_model_dir
    from ..agents.engine._loading import best_dtype

    adapter = check_adapter_dir(spec.adapter) if spec.adapter else None
    # float32 on a CPU (exact; CPUs without native bf16 compute it fastest); $SPARRING_DTYPE wins
    dtype = best_dtype(device) if device.startswith("cuda") or os.environ.get("SPARRING_DTYPE") else torch.float32
    args: dict[str, Any] = {"pretrained": resolve_model_dir(spec.model), "dtype": str(dtype).removeprefix("torch.")}
    if adapter is not None:
        args["peft"] = str(adapter.resolve())
    return "hf", args


def _openai_args(spec, tokenizer: str | None) -> tuple[str, dict[str, Any]]:
    """lm-eval's ``local-completions`` arguments for an ``openai:MODEL@URL`` spec (the first URL)."""
    options = spec.options
    args: dict[str, Any] = {"model": spec.model, "base_url": f"{spec.urls[0]}/completions",
                            "num_concurrent": int(options.get("max_concurrency", 1)),
                            "max_retries": int(options.get("retries", 3)), "timeout": int(options.get("timeout", 300))}
    found = _served_tokenizer(spec.model) if tokenizer is None else tokenizer
    if found is None:
        raise BenchmarkError(
            f"openai:{spec.model}@...: cannot tell which tokenizer the served model {spec.model!r} uses; lm-eval needs "
            "one to score choices: pass --tokenizer HUB_ID, a directory or an hf: spec (or --tokenizer none for "
            "generation-only tasks)")
    if found.lower() == "none":
        args |= {"tokenizer_backend": "none", "tokenized_requests": False}
    else:
        args |= {"tokenizer_backend": "huggingface", "tokenizer": _tokenizer_source(found), "tokenized_requests": True}
    return "local-completions", args


def _served_tokenizer(name: str) -> str | None:
    """The tokenizer of a served model, from its name: an ``hf:`` spec, a directory or a hub id; else None."""
    if name.startswith("hf:") or Path(name).expanduser().is_dir():
        return name
    return name if name.count("/") == 1 and not name.startswith((".", "/", "~")) else None


def _tokenizer_source(tokenizer: str) -> str:
    """A tokenizer name as transformers loads it: an ``hf:`` spec resolved to its base's directory."""
    if not tokenizer.startswith("hf:"):
        return tokenizer
    from ..agents._spec import ModelSpec, resolve_model_dir

    return resolve_model_dir(ModelSpec.parse(tokenizer).model)


def _unknown(manager, names: Sequence[str]) -> list[str]:
    known = set(manager.all_tasks)
    return [name for name in names if name not in known and not Path(name).expanduser().is_file()]


# -- lm-eval's output ---------------------------------------------------------------------------


def _results(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval's ``simple_evaluate`` output as ``bench.json``'s ``results``."""
    groups = set(output.get("groups") or {}) | {name for name, subtasks in (output.get("group_subtasks") or {}).items()
                                                 if subtasks}
    better = output.get("higher_is_better") or {}
    results = {}
    for task, raw in (output.get("results") or {}).items():
        metrics: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            name, _, flt = key.partition(",")
            if key in _SKIPPED_KEYS or not flt or name.endswith("_stderr"):
                continue
            label = name if flt == "none" else f"{name},{flt}"
            metrics[label] = {"value": _number(value), "stderr": _number(raw.get(f"{name}_stderr,{flt}")),
                              "higher_is_better": (better.get(task) or {}).get(name)}
        samples = (output.get("n-samples") or {}).get(task)
        results[task] = {"alias": str(raw.get("alias", task)).strip(" -") or task, "group": task in groups,
                         "n_samples": samples if isinstance(samples, dict) else None,
                         "n_shot": (output.get("n-shot") or {}).get(task), "metrics": metrics}
    return results


def _number(value: Any) -> float | None:
    """A finite number as a float; ``"N/A"``, NaN, booleans and the rest as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _empty_cuda_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass

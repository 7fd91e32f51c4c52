"""The OpenVINO GenAI engine: the embedded default on CPU, behind the same API as the transformers engine.

OpenVINO GenAI's `ContinuousBatchingPipeline` does the work: continuous batching, a paged KV
cache that grows as it fills up to a size fixed at start (`SchedulerConfig.cache_size`), prefix caching, and sampling
with each request's own settings and seed. The worker thread adds each queued request with
`add_request` (token ids from the transformers tokenizer, so prompts are exactly those of every
other backend), calls `step()` while anything runs, and reads each request's new tokens and
their log-probabilities (``logprobs=1``: the model's own, before temperature and top-p) into a
`Request`, which applies the rules every engine shares (end of sequence, stop strings, the
token limit, streaming). A request whose caller went away is cancelled at the next step.

The model is the IR `openvino_model_dir` exports once, computed in float32 with a float32 KV
cache (`SPARRING_OV_PRECISION=bf16` trades that for speed where the CPU has bfloat16). Greedy
logprobs are within ~2e-4 of transformers in float32. Requests in flight change the batch shape,
and OpenVINO splits reductions between threads by that shape, so logprobs move by up to ~1e-5
with the batch; `SPARRING_OV_THREADS=1` makes them exactly independent of it, at a cost in speed.

A LoRA adapter is applied by OpenVINO GenAI's adapter support (`openvino_genai.Adapter`) on the
unmodified base IR, weighted by PEFT's scale (``lora_alpha / r``): no merge, no export. The
pipeline applies one adapter setting to a whole batch, so each adapter spec gets a pipeline of
its own (a base and an adapter play each other through two pipelines, side by side, each with
its own KV cache budget). The pipelines of a process take turns at `step()` (`_STEP_LOCK`): two
stepping at once on the same cores lost a fifth of their joint speed (53 against 62 tokens/s, 16
requests in each of two pipelines on 2 cores, measured 2026-12-04).

Scoring (prompt logprobs, the alternatives at each position) runs the same IR directly with the
OpenVINO runtime, at the same precision, with the adapter merged into its weights
(`sparring.agents.engine._openvino_scoring`): the pipeline gives only the chosen tokens' logprobs.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import torch

from ...errors import BackendError
from ._base import BaseEngine, Request, end_token_ids
from ._openvino_scoring import scoring_model

# The KV cache's budget: at most this many GB, and at most this share of the machine's memory. OpenVINO
# allocates the cache as it fills, so the budget costs nothing until the work needs it; it needs it:
# a block evicted from the prefix cache is computed again at the next message of its conversation.
# 16 SPAG games at a time played at 1.9 games/min with 1 GB and 3.0 with 4 GB (2026-12-07, 2 cores).
KV_CACHE_GB_MAX = 8.0
KV_CACHE_RAM_SHARE = 0.25
PRECISIONS = ("f32", "bf16")
_STEP_LOCK = threading.Lock()  # one pipeline computes at a time: each step has all the cores


def kv_cache_gb() -> float:
    """The KV cache budget in GB: ``$SPARRING_KV_CACHE_GB``, else a quarter of the machine's memory, at most 8 GB."""
    forced = os.environ.get("SPARRING_KV_CACHE_GB")
    if forced:
        try:
            value = float(forced)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise BackendError(f"SPARRING_KV_CACHE_GB={forced!r}: give a size in GB above 0, e.g. 1.5")
        return value
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(0.25, min(KV_CACHE_GB_MAX, KV_CACHE_RAM_SHARE * memory))


def inference_precision() -> str:
    """``$SPARRING_OV_PRECISION`` (``f32`` or ``bf16``), default ``f32``: the precision the model computes in."""
    value = os.environ.get("SPARRING_OV_PRECISION", "f32")
    if value not in PRECISIONS:
        raise BackendError(f"SPARRING_OV_PRECISION={value!r}: expected one of {', '.join(PRECISIONS)}")
    return value


class OpenVINOEngine(BaseEngine):
    """Serve one OpenVINO IR causal LM (and optionally a LoRA adapter) to many concurrent callers.

    Args:
        model_dir (`Path`): the IR directory (`openvino_model_dir`), with the tokenizer files.
        tokenizer: the model's transformers tokenizer, with a chat template.
        name (`str`): the model spec, reported in results.
        adapter (`Path | None`): a PEFT LoRA adapter directory to apply.
        max_batch (`int`, defaults to 64): sequences in flight at most.
        cache_gb (`float`, defaults to `kv_cache_gb()`): the KV cache's fixed size.
        precision (`str`, defaults to `inference_precision()`): ``f32`` or ``bf16``.

    Raises:
        `BackendError`: the model or the adapter cannot be loaded.
    """

    def __init__(self, model_dir: Path, tokenizer, name: str, adapter: Path | None = None, max_batch: int = 64,
                 cache_gb: float | None = None, precision: str | None = None):
        import openvino_genai
        from transformers import GenerationConfig

        config = json.loads((Path(model_dir) / "config.json").read_text())
        try:
            generation = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            generation = None
        super().__init__(tokenizer, name, config.get("max_position_embeddings", 8192),
                         end_token_ids(tokenizer, generation))
        self._genai = openvino_genai
        self._pipe = build_pipeline(model_dir, name, adapter, max_batch, cache_gb, precision)
        self._model_dir, self._adapter, self._precision = Path(model_dir), adapter, precision
        self._scoring_model = None  # compiled on first use: most runs never score
        self._live_requests: dict[int, tuple[Request, object]] = {}  # request id -> (request, its handle)
        self._next_id = 0
        self._start_worker()

    # ----- worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._closed:
            # a cancelled request leaves the pipeline at its next step: step until it has
            request = self._next(block=not self._live_requests and not self._pipe.has_non_finished_requests())
            while request is not None:
                self._add(request)
                request = self._next(block=False)
            if not self._pipe.has_non_finished_requests():
                continue
            try:
                with _STEP_LOCK:
                    self._pipe.step()
                self._collect()
            except Exception as error:  # noqa: BLE001 - a failed step fails its requests, not the engine
                for request, handle in self._live_requests.values():
                    handle.cancel()
                    request.fail(error)
                self._live_requests.clear()

    def _live(self) -> list[Request]:
        return [request for request, _ in self._live_requests.values()]

    def _forward(self, token_ids: list[int], past: int, state):
        import numpy as np

        if self._scoring_model is None:
            lora = lora_weights(self._adapter) if self._adapter is not None else None
            self._scoring_model = scoring_model(self._model_dir, compile_properties(self._precision), lora)
        request = state if state is not None else self._scoring_model.create_infer_request()
        request.infer({"input_ids": np.array([token_ids], dtype=np.int64),
                       "attention_mask": np.ones((1, past + len(token_ids)), dtype=np.int64),
                       "position_ids": np.arange(past, past + len(token_ids), dtype=np.int64)[None],
                       "beam_idx": np.zeros(1, dtype=np.int32)})
        # a copy: the request reuses its output buffer at its next call
        return torch.from_numpy(request.get_output_tensor(0).data[0].copy()), request

    def _add(self, request: Request) -> None:
        import numpy as np
        import openvino

        config = generation_config(request, self.eos_ids, self.max_positions)
        try:
            ids = openvino.Tensor(np.array([request.prompt_ids], dtype=np.int64))
            handle = self._pipe.add_request(self._next_id, ids, config)
        except Exception as error:  # noqa: BLE001 - reported to the caller
            request.fail(BackendError(f"{self.name}: OpenVINO refused the request: {error}"))
            return
        self._live_requests[self._next_id] = (request, handle)
        self._next_id += 1

    def _collect(self) -> None:
        """Read every request's new tokens; finish, resolve and drop the requests that are done."""
        running = self._genai.GenerationStatus.RUNNING
        for request_id, (request, handle) in list(self._live_requests.items()):
            done = request.abandoned
            if not done and handle.can_read():
                for output in handle.read().values():
                    for token, logprob in zip(output.generated_ids, output.generated_log_probs):
                        if request.accept(self, token, logprob):
                            done = True
                            break
            if not done and handle.get_status() != running and not handle.can_read():
                # the pipeline ended it without a token `accept` ends on (its own length limit)
                done = request.finish(self, "length")
            if done:
                if handle.get_status() == running:
                    handle.cancel()  # a stop string or a caller gone: free its KV blocks now
                del self._live_requests[request_id]
                request.resolve()


def build_pipeline(model_dir: Path, name: str, adapter: Path | None = None, max_batch: int = 64,
                   cache_gb: float | None = None, precision: str | None = None):
    """An OpenVINO GenAI `ContinuousBatchingPipeline` on the CPU for the IR at ``model_dir`` (see `OpenVINOEngine`).

    Raises:
        `BackendError`: the model or the adapter cannot be loaded.
    """
    import openvino_genai

    scheduler = openvino_genai.SchedulerConfig()
    scheduler.cache_size = max(1, math.ceil(cache_gb or kv_cache_gb()))
    scheduler.max_num_seqs = max_batch
    scheduler.max_num_batched_tokens = 2048
    scheduler.dynamic_split_fuse = True
    scheduler.enable_prefix_caching = True
    properties = compile_properties(precision)
    adapters = _adapter_config(openvino_genai, adapter) if adapter is not None else None
    if adapters is not None:
        properties["adapters"] = adapters
    try:
        pipe = openvino_genai.ContinuousBatchingPipeline(
            str(model_dir), openvino_genai.Tokenizer(str(model_dir)), scheduler, "CPU", **properties)
        if adapters is not None:
            _apply_adapters(pipe, adapters)
    except RuntimeError as error:
        raise BackendError(f"cannot load {name} on OpenVINO: {str(error).strip().splitlines()[0]}") from error
    return pipe


def compile_properties(precision: str | None = None) -> dict:
    """The CPU plugin's settings for the model: ``precision`` (default `inference_precision()`) for its
    computation and its KV cache, and ``$SPARRING_OV_THREADS`` threads where set."""
    precision = precision or inference_precision()
    # the KV cache in the model's own precision (OpenVINO's CPU default, f16, moves logprobs by ~1e-3
    # and makes them depend on the batch)
    properties = {"INFERENCE_PRECISION_HINT": precision, "KV_CACHE_PRECISION": precision}
    threads = os.environ.get("SPARRING_OV_THREADS")
    if threads:
        properties["INFERENCE_NUM_THREADS"] = int(threads)
    return properties


def generation_config(request: Request, eos_ids: set[int], max_positions: int):
    """The `openvino_genai.GenerationConfig` of one request: its sampling settings, as every engine reads them."""
    import openvino_genai

    params = request.params
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = min(params.max_tokens, max_positions - len(request.prompt_ids))
    config.logprobs = 1  # the chosen token's log-probability under the model, before temperature and top-p
    config.stop_token_ids = set(eos_ids)
    # no stop_strings: OpenVINO's matching trims tokens its own way; `Request.accept` finds a stop
    # string in the text as every engine does, and the engine then cancels the request
    if params.temperature > 0:
        config.do_sample = True
        config.temperature = params.temperature
        config.top_p = params.top_p
        # an unseeded request draws its own seed: OpenVINO's default seed is the same for every request
        config.rng_seed = params.seed if params.seed is not None else request.rng.getrandbits(32)
    else:
        config.do_sample = False
    return config


def _apply_adapters(pipe, adapters) -> None:
    """Set the adapter's weights in the pipeline's model (a one-token `generate`).

    OpenVINO GenAI (2026.4) sets adapter weights in `generate()` only; `step()`, which the engine
    drives, runs with whatever was set last, and nothing is set at construction.
    """
    import numpy as np
    import openvino
    import openvino_genai

    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 1
    config.adapters = adapters
    pipe.generate([openvino.Tensor(np.array([[0]], dtype=np.int64))], [config])


def lora_weights(adapter: Path) -> tuple[Path, float]:
    """A PEFT LoRA adapter's safetensors file and the scale PEFT gives it (``lora_alpha / r``, or
    ``lora_alpha / sqrt(r)`` with rsLoRA).

    Raises:
        `BackendError`: the adapter has no ``adapter_model.safetensors``.
    """
    settings = json.loads((adapter / "adapter_config.json").read_text())
    rank = settings.get("r", 8)
    scale = settings.get("lora_alpha", rank) / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise BackendError(f"adapter {adapter} has no adapter_model.safetensors (the OpenVINO engine reads that "
                           "file); save the adapter with safetensors, as `sparring train` does")
    return weights, scale


def _adapter_config(genai, adapter: Path):
    """An `openvino_genai.AdapterConfig` applying the PEFT adapter at ``adapter`` as PEFT scales it.

    PEFT adds ``scale * B A x`` (`lora_weights`); OpenVINO GenAI adds ``alpha * B A x`` for the weight
    ``alpha`` given here, and reads no adapter_config.json.
    """
    weights, scale = lora_weights(adapter)
    config = genai.AdapterConfig()
    config.add(genai.Adapter(str(weights)), scale)
    return config


__all__ = ["OpenVINOEngine", "build_pipeline", "compile_properties", "generation_config", "inference_precision",
           "kv_cache_gb", "lora_weights"]

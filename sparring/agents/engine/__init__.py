"""The embedded inference engine behind ``hf:`` specs: one shared engine per model, continuous batching.

`get_engine` picks the backend (`engine_kind`): OpenVINO GenAI (`OpenVINOEngine`) on CPUs where
it installs, transformers (`Engine`) on CUDA, where OpenVINO GenAI is missing, or when
``SPARRING_ENGINE=transformers`` asks for it (float32, the exactness reference). Both share the
request rules, queue and worker of `BaseEngine`, and both score token sequences (`BaseEngine.scorer`:
every position's log-probabilities and the likeliest alternatives, for prompt logprobs).
"""

from ._base import BaseEngine, Completion, Piece, SamplingParams, encode_chat, end_token_ids
from ._loading import best_dtype, engine_kind, get_engine, load_model, load_tokenizer, release_engines
from ._scoring import Scorer, TokenScore
from ._transformers import Engine

__all__ = ["BaseEngine", "Completion", "Engine", "Piece", "SamplingParams", "Scorer", "TokenScore", "best_dtype",
           "encode_chat", "end_token_ids", "engine_kind", "get_engine", "load_model", "load_tokenizer",
           "release_engines"]

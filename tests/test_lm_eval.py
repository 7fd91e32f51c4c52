"""lm-evaluation-harness's ``local-completions`` against `sparring serve`: a multiple-choice task runs to a
score, and the log-likelihoods it got agree with the model's own, computed here with transformers.

lm-eval runs in a child process with the hub switched off (it reads its tokenizer from the model's
local files and its task from files written here), so nothing it does can reach the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from _servers import MODEL, sparring_serve
from _tasks import QUESTIONS, write_choice_task
from sparring.agents import load_model
from sparring.agents._spec import ModelSpec, resolve_model_dir

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)

pytest.importorskip("lm_eval")

TASK = "sparring_tiny_choice"
TOLERANCE = 2e-3
"""How far a log-likelihood from the server may be from transformers' in float32 (a few tokens, ~2e-4 each)."""

# lm-eval's own model, recording each log-likelihood it computed with the tokens it sent
EVALUATE = textwrap.dedent("""
    import json, sys
    from lm_eval import simple_evaluate
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from lm_eval.tasks import TaskManager

    base_url, model, tokenizer, tasks, task = sys.argv[1:6]

    class Recording(LocalCompletionsAPI):
        scored = []

        def _loglikelihood_tokens(self, requests, **kwargs):
            results = super()._loglikelihood_tokens(requests, **kwargs)
            self.scored += [(context, continuation, ll) for (_, context, continuation), (ll, _) in zip(requests, results)]
            return results

    lm = Recording(base_url=base_url, model=model, tokenizer=tokenizer, tokenizer_backend="huggingface",
                   tokenized_requests=True, batch_size=4, max_retries=1)
    out = simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_path=tasks), bootstrap_iters=0)
    print(json.dumps({"results": out["results"][task], "scored": lm.scored}))
""")


def test_local_completions_scores_a_multiple_choice_task(tmp_path):
    write_choice_task(tmp_path, TASK, QUESTIONS)
    tokenizer = resolve_model_dir(ModelSpec.parse(MODEL).model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache")}
    with sparring_serve() as url:
        done = subprocess.run([sys.executable, "-c", EVALUATE, f"{url}/v1/completions", MODEL, tokenizer,
                               str(tmp_path), TASK], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    accuracy = report["results"]["acc,none"]
    assert 0 <= accuracy <= 1
    scored = report["scored"]
    assert len(scored) == sum(len(choices) for _, choices, _ in QUESTIONS)

    model, _ = load_model(MODEL, dtype=torch.float32)
    for context, continuation, loglikelihood in scored:
        with torch.no_grad():
            logits = model(torch.tensor([context + continuation])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        direct = sum(logprobs[len(context) - 1 + i, token].item() for i, token in enumerate(continuation))
        assert abs(loglikelihood - direct) < TOLERANCE, (context, continuation, loglikelihood, direct)

"""`sparring serve` over real HTTP, called through the `openai` client."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

MODEL = "hf:smollm2-135m"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sparring.cli", "serve", "--model", MODEL, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # float32: greedy replies then do not depend on batching or on a reused prompt beginning,
        # so a streamed reply can be compared with a plain one exactly.
        env={**os.environ, "COLUMNS": "200", "SPARRING_DTYPE": "float32"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sparring serve exited: {process.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("sparring serve did not come up in 120 s")
    yield f"{url}/v1"
    process.terminate()
    process.wait(timeout=30)


def test_models_endpoint(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_chat_completion_with_logprobs_and_token_ids(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    response = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, max_tokens=16, logprobs=True, extra_body={"return_token_ids": True},
    )
    choice = response.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    token_ids = choice.model_extra["token_ids"]
    assert len(token_ids) == response.usage.completion_tokens == len(choice.logprobs.content)
    assert all(t.logprob <= 0 for t in choice.logprobs.content)


def test_streaming_matches_plain(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    request = dict(model=MODEL, messages=[{"role": "user", "content": "Name three colours."}], temperature=0, max_tokens=20)
    plain = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert chunks[-1].usage.completion_tokens > 0


def test_concurrent_http_requests_are_each_answered(server_url):
    async def main():
        client = openai.AsyncOpenAI(base_url=server_url, api_key="unused")
        questions = [f"What is {i} plus {i}?" for i in range(8)]
        responses = await asyncio.gather(*(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}],
                                           temperature=0, max_tokens=12, seed=i)
            for i, q in enumerate(questions)))
        return responses

    responses = asyncio.run(main())
    assert len(responses) == 8 and all(r.choices[0].message.content for r in responses)


def test_errors_are_openai_shaped(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=-1)

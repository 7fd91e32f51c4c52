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


BAD_REQUESTS = [
    # (method, path, raw body, expected status, expected code)
    ("GET", "/v1/nowhere", None, 404, "not_found"),
    ("GET", "/v1/chat/completions", None, 405, "method_not_allowed"),
    ("POST", "/v1/chat/completions", b'{"model": "x", "messages": [', 400, "invalid_json"),
    ("POST", "/v1/chat/completions", b'{"model": "\xff\xfe", "messages": []}', 400, None),
    ("POST", "/v1/chat/completions",
     b'{"model": "hf:smollm2-135m", "messages": [{"role": "user", "content": "a \\ud800 b"}]}', 400, "invalid_value"),
    ("POST", "/v1/chat/completions",
     b'{"model": "hf:smollm2-135m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
     400, "invalid_value"),
    ("POST", "/v1/chat/completions",
     b'{"model": "hf:smollm2-135m", "messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}',
     400, "invalid_value"),
    ("POST", "/v1/chat/completions", b'[1, 2]', 400, "invalid_value"),
]


@pytest.mark.parametrize("method, path, body, status, code", BAD_REQUESTS)
def test_bad_input_gets_an_openai_shaped_4xx_and_the_server_goes_on(server_url, method, path, body, status, code):
    root = server_url.removesuffix("/v1")
    response = httpx.request(method, root + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["code"], str)
    assert code is None or error["code"] == code, error
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content is not None


@pytest.mark.parametrize("field, value", [("presence_penalty", 0.5), ("frequency_penalty", 1.0),
                                          ("logit_bias", {"42": 5}), ("response_format", {"type": "json_object"}),
                                          ("top_k", 20)])
def test_an_unimplemented_field_is_refused_by_name(server_url, field, value):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    with pytest.raises(openai.BadRequestError, match=field) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                       extra_body={field: value})
    assert raised.value.code == "unsupported_field"
    neutral = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
                                             presence_penalty=0, user="someone")  # asks for nothing: accepted
    assert neutral.choices


def test_n_choices_plain_and_streamed(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    messages = [{"role": "user", "content": "Name a fruit."}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, n=2, max_tokens=8, temperature=1.0,
                                           seed=3, logprobs=True)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.logprobs.content and c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens == sum(len(c.logprobs.content) for c in reply.choices)
    again = client.chat.completions.create(model=MODEL, messages=messages, n=2, max_tokens=8, temperature=1.0, seed=3)
    assert [c.message.content for c in again.choices] == [c.message.content for c in reply.choices]  # seed + i each
    texts = {0: "", 1: ""}
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, n=2, max_tokens=8, temperature=1.0,
                                                seed=3, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert [texts[0], texts[1]] == [c.message.content for c in reply.choices]

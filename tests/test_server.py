"""`sparring serve` over real HTTP, called through the `openai` client: chat, completions, logprobs, errors."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from _servers import MODEL, sparring_serve

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)


@pytest.fixture(scope="module")
def server_url():
    # sparring_serve runs the engine in float32: greedy replies then do not depend on batching or on a
    # reused prompt beginning, so a streamed reply can be compared with a plain one exactly.
    with sparring_serve() as url:
        yield f"{url}/v1"


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
    ("POST", "/v1/chat/completions",
     b'{"model": "hf:smollm2-135m", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}',
     400, "invalid_value"),  # top_logprobs without logprobs
    ("GET", "/v1/completions", None, 405, "method_not_allowed"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "x"', 400, "invalid_json"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "a \\ud800 b"}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": ""}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": []}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": [1, -2]}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": [[1], "x"]}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": {"text": "x"}}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": [1000000000]}', 400, "invalid_request"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": [' + b"1, " * 9000 + b'1]}', 400,
     "invalid_request"),  # longer than the model's context
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "x", "logprobs": 6}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "x", "max_tokens": 0}', 400,
     "invalid_value"),  # nothing to return without echo
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "x", "n": 0}', 400, "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "hf:smollm2-135m", "prompt": "x", "temperature": 2.5}', 400,
     "invalid_value"),
    ("POST", "/v1/completions", b'{"model": "other", "prompt": "x"}', 404, "model_not_found"),
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


# ----- logprobs, completions -------------------------------------------------------------------------
NON_ASCII = "Café au lait 😀, naïve — 東京"
"""Characters split between tokens: the emoji and the kanji take several byte-level tokens each."""
LOGPROB_TOLERANCE = 1e-3
"""How far logprobs from a scoring pass may be from generation's own (measured: ~1e-4)."""


def _joined(logprobs) -> str:
    return "".join(logprobs.tokens)


def test_completion_with_echo_scores_the_prompt(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    prompt = "The capital of France is"
    reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=2)
    choice, usage = reply.choices[0], reply.usage
    lp = choice.logprobs
    assert choice.text.startswith(prompt) and _joined(lp) == choice.text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # nothing predicts the first token
    assert len(lp.tokens) - (choice.finish_reason == "stop") == usage.prompt_tokens + usage.completion_tokens
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert logprob <= 0 and 1 <= len(top) <= 3 and top.get(token) == logprob  # the chosen token, always
    # the reply's own logprobs, from generation, agree with the scoring pass's
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0, logprobs=0)
    generated = plain.choices[0].logprobs
    assert plain.choices[0].text == choice.text[len(prompt):] and _joined(generated) == plain.choices[0].text
    scored = lp.token_logprobs[usage.prompt_tokens:]
    assert max(abs(a - b) for a, b in zip(generated.token_logprobs, scored)) < LOGPROB_TOLERANCE


def test_completion_scores_a_batch_of_token_prompts_without_generating(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    prompts = [[504, 3575, 282, 4649], [19556, 665, 314]]
    reply = client.completions.create(model=MODEL, prompt=prompts, max_tokens=0, echo=True, logprobs=1, n=2)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]  # prompt-major: prompt p's choice i is p * n + i
    assert reply.usage.completion_tokens == 0 and reply.usage.prompt_tokens == 7
    for choice, prompt in zip(reply.choices, [prompts[0]] * 2 + [prompts[1]] * 2):
        assert choice.finish_reason == "length" and len(choice.logprobs.tokens) == len(prompt)
        assert _joined(choice.logprobs) == choice.text
    assert reply.choices[0].logprobs.token_logprobs == reply.choices[1].logprobs.token_logprobs


def test_completion_n_choices_are_seeded_each_and_stream_as_they_are_returned(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    request = dict(model=MODEL, prompt="My favourite fruit is", max_tokens=6, temperature=1.0, seed=5, n=2)
    reply = client.completions.create(**request, logprobs=0)
    again = client.completions.create(**request)
    assert [c.text for c in again.choices] == [c.text for c in reply.choices]
    texts, offsets = {0: "", 1: ""}, {0: [], 1: []}
    for chunk in client.completions.create(**request, logprobs=1, stream=True):
        for choice in chunk.choices:
            if choice.logprobs:
                assert _joined(choice.logprobs) == choice.text  # each chunk carries its own tokens
                assert choice.logprobs.text_offset[0] == len(texts[choice.index])
                offsets[choice.index] += choice.logprobs.text_offset
            texts[choice.index] += choice.text
    assert [texts[0], texts[1]] == [c.text for c in reply.choices]
    assert all(offsets[i] == reply.choices[i].logprobs.text_offset for i in (0, 1))


def test_a_streamed_completion_echoes_the_prompt_first(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    chunks = list(client.completions.create(model=MODEL, prompt="One, two,", max_tokens=5, temperature=0, echo=True,
                                            logprobs=0, stream=True))
    first = chunks[0].choices[0]
    assert first.text == "One, two," and first.logprobs.token_logprobs[0] is None
    plain = client.completions.create(model=MODEL, prompt="One, two,", max_tokens=5, temperature=0, echo=True)
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text


@pytest.mark.parametrize("field, value", [("top_k", 20), ("presence_penalty", 0.5), ("suffix", "!"), ("best_of", 2)])
def test_an_unimplemented_completion_field_is_refused_by_name(server_url, field, value):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    with pytest.raises(openai.BadRequestError, match=field) as raised:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=2, extra_body={field: value})
    assert raised.value.code == "unsupported_field"


def test_chat_top_logprobs_are_the_likeliest_alternatives(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}],
                                           temperature=0, max_tokens=8, logprobs=True, top_logprobs=5)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for token in content:
        alternatives = [a.logprob for a in token.top_logprobs]
        assert len(alternatives) == 5 and alternatives == sorted(alternatives, reverse=True) and alternatives[0] <= 0
        assert token.token in [a.token for a in token.top_logprobs]  # greedy: the chosen token is the likeliest
        assert all(a.bytes == list(a.token.encode()) for a in token.top_logprobs)


def test_streamed_chat_chunks_carry_their_own_logprobs(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    request = dict(model=MODEL, messages=[{"role": "user", "content": "Name three colours."}], temperature=0,
                   max_tokens=12, logprobs=True, top_logprobs=2)
    plain = client.chat.completions.create(**request).choices[0]
    tokens, content = [], ""
    for chunk in client.chat.completions.create(**request, stream=True):
        choice = chunk.choices[0]
        if choice.delta.content:
            assert "".join(t.token for t in choice.logprobs.content) == choice.delta.content
            tokens += choice.logprobs.content
            content += choice.delta.content
    assert content == plain.message.content and len(tokens) > 1
    assert [t.token for t in tokens] == [t.token for t in plain.logprobs.content]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(tokens, plain.logprobs.content)) < LOGPROB_TOLERANCE


def test_logprob_tokens_are_readable_text_that_joins_back(server_url):
    client = openai.OpenAI(base_url=server_url, api_key="unused")
    scored = client.completions.create(model=MODEL, prompt=NON_ASCII, max_tokens=0, echo=True, logprobs=0)
    tokens = scored.choices[0].logprobs.tokens
    assert "".join(tokens) == scored.choices[0].text == NON_ASCII
    assert {"😀", "東", "京"} <= set(tokens)  # a split character goes whole to the token that ends it
    assert not any(mark in "".join(tokens) for mark in ("Ġ", "Ã", "\ufffd"))
    chat = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=16, logprobs=True,
                                          messages=[{"role": "user", "content": f"Repeat exactly: {NON_ASCII}"}])
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    assert b"".join(bytes(t.bytes) for t in content) == chat.choices[0].message.content.encode()


def test_token_texts_give_a_split_character_to_the_token_that_completes_it():
    from transformers import AutoTokenizer

    from sparring.agents._spec import ModelSpec, resolve_model_dir
    from sparring.serving._logprobs import token_texts

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(ModelSpec.parse(MODEL).model))
    ids = tokenizer.encode("lait 😀")  # "l", "ait", then the emoji's four bytes: three (after the space), one
    dot = tokenizer.encode(".")[0]
    texts, alternatives = token_texts(tokenizer.decode, ids, alternatives=[[], [], [], [ids[3], dot]])
    assert len(ids) == 4 and texts == ["l", "ait", " ", "😀"]  # the space is complete in the third token
    assert alternatives[3] == ["😀", "\ufffd."]  # an alternative leaves the unfinished character unfinished
    cut, _ = token_texts(tokenizer.decode, ids[:-1])  # a reply that stops inside the emoji keeps U+FFFD
    assert cut == ["l", "ait", " \ufffd"] and "".join(cut) == tokenizer.decode(ids[:-1])

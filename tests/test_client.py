"""The engine as an AutoGen model client, under a real AutoGen agent."""

from __future__ import annotations

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_core.models import UserMessage

from sparring.agents import EmbeddedChatCompletionClient, SparringCreateResult, model_client

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)


async def test_assistant_agent_answers(engine):
    client = EmbeddedChatCompletionClient(engine=engine, temperature=0, max_tokens=24)
    agent = AssistantAgent("assistant", model_client=client, system_message="You are a helpful assistant.")
    result = await agent.run(task="What is the capital of France? Answer in one word.")
    reply = result.messages[-1]
    assert reply.source == "assistant"
    assert "Paris" in reply.content
    assert client.total_usage().completion_tokens > 0


async def test_create_result_carries_token_ids_and_logprobs(engine):
    client = model_client("hf:smollm2-135m", temperature=0, max_tokens=12)
    result = await client.create([UserMessage(content="Say hello.", source="user")])
    assert isinstance(result, SparringCreateResult)
    assert result.token_ids and len(result.logprobs) == len(result.token_ids)
    assert result.usage.completion_tokens == len(result.token_ids)


async def test_create_stream_yields_text_then_result(engine):
    client = EmbeddedChatCompletionClient(engine=engine, temperature=0, max_tokens=16)
    items = [item async for item in client.create_stream([UserMessage(content="Name a fruit.", source="user")])]
    *pieces, final = items
    assert all(isinstance(p, str) for p in pieces) and isinstance(final, SparringCreateResult)
    assert "".join(pieces) == final.content

"""sparring's clients as AutoGen components: dumped to JSON, loaded back, and still working, alone
and inside a saved team. Real clients throughout: the embedded model, and `sparring serve` over HTTP."""

from __future__ import annotations

import json

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core.models import ChatCompletionClient, UserMessage

from _servers import MODEL, FaultProxy, sparring_serve
from sparring.agents import EmbeddedChatCompletionClient, LiteLLMChatCompletionClient, OpenAIServerClient, model_client
from sparring.agents._spec import is_secret_key
from sparring.errors import BackendError

SENTINEL_KEY = "sk-sparring-test-0123456789"
HELLO = [UserMessage(content="Say hello.", source="user")]


@pytest.fixture(scope="module")
def server():
    """The root URL (no /v1) of a `sparring serve` of the embedded model."""
    with sparring_serve() as url:
        yield url


def _round_trip(client, monkeypatch) -> tuple[ChatCompletionClient, str]:
    """Dump ``client`` to JSON (with a key in the environment) and load it back; check the JSON holds no key."""
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    text = client.dump_component().model_dump_json()
    assert SENTINEL_KEY not in text and "api_key" not in text.lower()
    config = json.loads(text)["config"]
    assert not [key for key in config if is_secret_key(key)]
    assert json.loads(text)["provider"] == f"sparring.agents.clients.{type(client).__name__}"
    loaded = ChatCompletionClient.load_component(json.loads(text))
    assert type(loaded) is type(client) and loaded is not client
    assert loaded.dump_component().model_dump_json() == text
    return loaded, text


@pytest.mark.slow
async def test_embedded_client_round_trip_generates_the_same(engine, monkeypatch):
    client = EmbeddedChatCompletionClient(MODEL, temperature=0, top_p=0.9, max_tokens=6, stop=["\n\n"], seed=7)
    loaded, text = _round_trip(client, monkeypatch)
    assert json.loads(text)["config"] == {"spec": MODEL, "temperature": 0.0, "top_p": 0.9, "max_tokens": 6,
                                          "stop": ["\n\n"], "seed": 7}
    assert loaded.spec == client.spec == MODEL and loaded._defaults == client._defaults
    assert loaded.engine is engine  # the shared engine of the spec
    first, again = await client.create(HELLO), await loaded.create(HELLO)
    assert again.content and 0 < again.usage.completion_tokens <= 6
    assert again.token_ids == first.token_ids  # greedy, same settings: the same reply


@pytest.mark.slow
async def test_embedded_client_loads_through_its_own_class(engine):
    client = model_client(MODEL, temperature=0.5, max_tokens=4)
    loaded = EmbeddedChatCompletionClient.load_component(client.dump_component())
    assert loaded._defaults == {"temperature": 0.5, "top_p": 1.0, "max_tokens": 4, "stop": (), "seed": None}
    with pytest.raises(TypeError):  # a model client's dump is not some other kind of component
        OpenAIServerClient.load_component(client.dump_component())


@pytest.mark.slow
async def test_openai_client_round_trip_calls_the_server(server, monkeypatch):
    with FaultProxy(server) as proxy:
        client = OpenAIServerClient(f"openai:{MODEL}@{proxy.url}?timeout=60&retries=1", temperature=0, max_tokens=3,
                                    seed=5, extra={"n": 1})
        loaded, text = _round_trip(client, monkeypatch)
        assert loaded.spec == client.spec and loaded.settings == client.settings
        assert json.loads(text)["config"]["extra"] == {"n": 1}
        result = await loaded.create(HELLO)
    assert result.content and 0 < len(result.token_ids) <= 3
    (body,) = proxy.bodies
    assert body["max_tokens"] == 3 and body["temperature"] == 0 and body["seed"] == 5 and body["n"] == 1
    assert proxy.keys == [f"Bearer {SENTINEL_KEY}"]  # the key came from the environment of the loading process


@pytest.mark.slow
async def test_litellm_client_round_trip_calls_the_server(server, monkeypatch):
    with FaultProxy(server) as proxy:
        client = LiteLLMChatCompletionClient(f"litellm:openai/{MODEL}?api_base={proxy.url}&token_ids=true",
                                             temperature=0, max_tokens=3, stop=["."], extra={"frequency_penalty": 0})
        loaded, _ = _round_trip(client, monkeypatch)
        assert loaded.spec == client.spec and loaded.settings == client.settings
        result = await loaded.create(HELLO)
    assert result.content and result.token_ids
    (body,) = proxy.bodies
    assert body["max_tokens"] == 3 and body["stop"] == ["."] and body["frequency_penalty"] == 0


@pytest.mark.parametrize("extra", [{"api_key": SENTINEL_KEY}, {"extra_headers": {"Authorization": f"Bearer {SENTINEL_KEY}"}},
                                   {"api_base": f"http://me:{SENTINEL_KEY}@127.0.0.1:9/v1"}])
def test_a_client_with_a_secret_in_extra_is_not_saved(extra):
    client = LiteLLMChatCompletionClient("litellm:openai/some-model", extra=extra)
    with pytest.raises(BackendError, match="secret") as caught:
        client.dump_component()
    assert SENTINEL_KEY not in str(caught.value)


@pytest.mark.slow
async def test_saved_team_loads_and_runs(engine):
    agents = [AssistantAgent(name, model_client=model_client(MODEL, temperature=0, max_tokens=16),
                             system_message=f"You are {name}. Answer in one short sentence.")
              for name in ("alice", "bob")]
    team = RoundRobinGroupChat(agents, termination_condition=MaxMessageTermination(3))
    text = team.dump_component().model_dump_json()
    loaded = RoundRobinGroupChat.load_component(json.loads(text))
    result = await loaded.run(task="Name a colour.")
    assert [m.source for m in result.messages] == ["user", "alice", "bob"]
    assert all(m.content for m in result.messages)
    assert result.stop_reason and "Maximum number of messages 3 reached" in result.stop_reason

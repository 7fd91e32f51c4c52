"""Protocols: schema errors with file and line, visibility, rule judging, play and re-judge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient
from typer.testing import CliRunner

from _games import load_error
from sparring.cli import app
from sparring.errors import JudgeError, ProtocolError
from sparring.protocols import load_protocol, parse_protocol, play, role_models
from sparring.transcripts import read_transcripts

HERE = Path(__file__).parent
GAME = """\
name: whispers
variables:
  secret: {values: [apple]}
roles:
  alice:
    system: You know the secret {{ secret }}.
  bob:
    system: You talk to Alice.
  carol:
    system: You only hear Alice.
    sees: [alice]
schedule:
  type: round_robin
  order: [alice, bob, carol]
  max_turns: 6
judge:
  rules:
    - roles: [carol]
      when: mentions(message, secret)
      winner: carol
      reason: carol heard it
"""




def test_unknown_role_in_schedule_names_file_and_line(tmp_path):
    message = load_error(GAME.replace("order: [alice, bob, carol]", "order: [alice, dave]"), tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:14:") and "unknown role 'dave'" in message


def test_undefined_template_variable_names_file_and_line(tmp_path):
    message = load_error(GAME.replace("You talk to Alice.", "You talk to {{ friend }}."), tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:8:") and "roles.bob.system" in message
    assert "undefined name 'friend'" in message


def test_bad_expression_names_file_and_line(tmp_path):
    message = load_error(GAME.replace("when: mentions(message, secret)", "when: mentions(message, secret"), tmp_path)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:19:") and "judge.rules.0.when: bad expression" in message


def test_schema_type_error_and_yaml_error(tmp_path):
    assert ":13: schedule.type:" in load_error(GAME.replace("type: round_robin", "type: freestyle"), tmp_path)
    assert "invalid YAML" in load_error(GAME + "  bad: [unclosed\n", tmp_path)
    with pytest.raises(ProtocolError, match="built-ins are adversarial_taboo"):
        load_protocol("no_such_protocol")


def _replay(replies: dict[str, list[str]], sent: dict):
    def factory(role, spec):
        client = ReplayChatCompletionClient(list(replies[role]))
        sent[role] = client
        return client

    return factory


async def test_a_role_never_receives_what_it_must_not_see(tmp_path):
    protocol = parse_protocol(GAME)
    sent: dict = {}
    replies = {"alice": ["A1 hello", "A2 more"], "bob": ["B1 bob-only", "B2 bob-only"], "carol": ["C1", "C2 apple"]}
    summary = await play(protocol, 1, tmp_path, role_models(protocol, "replay", {}), clients=_replay(replies, sent))
    assert summary.reasons == {"carol heard it": 1}
    carol_saw = [m.content for call in sent["carol"].create_calls for m in call["messages"]]
    assert any("A1 hello" in c for c in carol_saw) and any("A2 more" in c for c in carol_saw)
    assert not any("bob-only" in c for c in carol_saw)
    bob_saw = [m.content for call in sent["bob"].create_calls for m in call["messages"]]
    assert any("C1" in c for c in bob_saw)  # sees: all
    (episode,) = read_transcripts(tmp_path / "transcripts.jsonl")
    assert [m.role for m in episode.messages] == ["alice", "bob", "carol", "alice", "bob", "carol"]
    assert episode.outcome.winner == "carol" and episode.rewards == {"carol": 1.0, "alice": -1.0, "bob": -1.0}


async def test_taboo_rules_end_the_game_at_the_first_deciding_message(tmp_path):
    protocol = load_protocol("adversarial_taboo")
    replies = {"attacker": ["Think of red fruit growing on trees."],
               "defender": ["I know the word! It is `apples`!", "unused"]}
    sent: dict = {}
    await play(protocol, 1, tmp_path, {}, clients=_replay(replies, sent), overrides={"target": "apple"})
    (episode,) = read_transcripts(tmp_path / "transcripts.jsonl")
    assert episode.outcome.reason == "defender guessed the word" and len(episode.messages) == 2


async def test_a_per_turn_prompt_that_renders_empty_hands_nothing(tmp_path):
    protocol = load_protocol("adversarial_taboo")  # with remind_defender, the defender is reminded from turn 5 on
    replies = {"attacker": [f"hint {i}" for i in range(5)], "defender": [f"answer {i}" for i in range(5)]}
    sent: dict = {}
    await play(protocol, 1, tmp_path, {}, clients=_replay(replies, sent),
               overrides={"target": "apple", "remind_defender": True})
    calls = sent["defender"].create_calls
    last_sent = [call["messages"][-1].content for call in calls]
    assert last_sent[:2] == ["hint 0", "hint 1"]  # turns 1 and 3: the attacker's hint, no empty prompt after it
    assert all("Make your one guess now" in text for text in last_sent[2:])  # turns 5, 7 and 9
    (episode,) = read_transcripts(tmp_path / "transcripts.jsonl")
    defender = [m for m in episode.messages if m.role == "defender"]
    assert [m.prompt is not None for m in defender] == [False, False, True, True, True]


async def test_the_taboo_defender_is_not_reminded_by_default(tmp_path):
    protocol = load_protocol("adversarial_taboo")
    replies = {"attacker": [f"hint {i}" for i in range(5)], "defender": [f"answer {i}" for i in range(5)]}
    sent: dict = {}
    await play(protocol, 1, tmp_path, {}, clients=_replay(replies, sent), overrides={"target": "apple"})
    last_sent = [call["messages"][-1].content for call in sent["defender"].create_calls]
    assert last_sent == [f"hint {i}" for i in range(5)]  # every turn ends with the attacker's hint
    (episode,) = read_transcripts(tmp_path / "transcripts.jsonl")
    assert all(m.prompt is None for m in episode.messages if m.role == "defender")


@pytest.mark.slow
def test_yaml_game_plays_on_the_embedded_model_then_resumes_and_rejudges(tmp_path):
    game = HERE / "protocols" / "twenty_questions.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["play", str(game), "--games", "2", "--out", str(tmp_path), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "twenty_questions: 2 episodes" in result.output
    episodes = list(read_transcripts(tmp_path / "transcripts.jsonl"))
    assert len(episodes) == 2 and all(e.status == "ok" and e.messages for e in episodes)
    assert all(m.token_ids and len(m.logprobs) == len(m.token_ids) for e in episodes for m in e.messages)
    assert episodes[0].models == {"answerer": "hf:smollm2-135m", "asker": "hf:smollm2-135m"}

    again = runner.invoke(app, ["play", str(game), "--games", "3", "--out", str(tmp_path), "--seed", "3", "--resume"])
    assert again.exit_code == 0, again.output
    ids = [e.id for e in read_transcripts(tmp_path / "transcripts.jsonl")]
    assert len(ids) == len(set(ids)) == 3

    refused = runner.invoke(app, ["play", str(game), "--games", "1", "--out", str(tmp_path)])
    assert refused.exit_code == 1 and "--resume" in refused.output


@pytest.mark.slow
def test_taboo_built_in_plays_on_the_embedded_model(tmp_path):
    result = CliRunner().invoke(app, ["play", "adversarial_taboo", "--games", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    episodes = list(read_transcripts(tmp_path / "transcripts.jsonl", strict=True))
    assert len(episodes) == 3
    for episode in episodes:
        assert episode.status == "ok" and episode.messages[0].role == "attacker"
        assert episode.outcome is not None and set(episode.rewards) == {"attacker", "defender"}


def test_judge_command_accepts_foreign_records(tmp_path):
    record = {"id": "x1", "protocol": {"name": "adversarial_taboo"}, "variables": {"target": "city"},
              "messages": [{"role": "attacker", "content": "Many people live close together there."},
                           {"role": "defender", "content": "Big cities are loud."}], "source": "elsewhere"}
    source = tmp_path / "foreign.jsonl"
    source.write_text(json.dumps(record) + "\n")
    out = tmp_path / "judged.jsonl"
    result = CliRunner().invoke(app, ["judge", "adversarial_taboo", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    (episode,) = read_transcripts(out)
    assert episode.outcome.winner == "attacker" and episode.outcome.reason == "defender said the word"


def test_protocols_commands(tmp_path):
    runner = CliRunner()
    assert "adversarial_taboo" in runner.invoke(app, ["protocols", "list"]).output
    assert "name: adversarial_taboo" in runner.invoke(app, ["protocols", "show", "adversarial_taboo"]).output
    assert runner.invoke(app, ["protocols", "validate", str(HERE / "protocols" / "twenty_questions.yaml")]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(GAME.replace("order: [alice, bob, carol]", "order: [dave]"))
    result = runner.invoke(app, ["protocols", "validate", str(bad)])
    assert result.exit_code == 1 and "bad.yaml:14" in result.output


LLM_JUDGED = GAME.replace("""judge:
  rules:
    - roles: [carol]
      when: mentions(message, secret)
      winner: carol
      reason: carol heard it
""", """judge:
  llm:
    system: You judge a game.
    prompt: "{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}Who won: alice, bob or nobody?"
    verdicts:
      alice: {winner: alice, reason: judged for alice}
      bob: {winner: bob, reason: judged for bob}
      nobody: {reason: judged a tie}
""")


async def test_llm_judge_verdicts_are_parsed_strictly(tmp_path):
    protocol = parse_protocol(LLM_JUDGED)
    talk = {"alice": ["a", "a"], "bob": ["b", "b"], "carol": ["c", "c"]}
    for verdict, expected in [(" **Bob.**", ("bob", "judged for bob")), ("Nobody", (None, "judged a tie")),
                              ("I think alice won", None)]:
        out = tmp_path / verdict.strip(" *.").replace(" ", "_")
        sent: dict = {}
        await play(protocol, 1, out, role_models(protocol, "replay", {}), clients=_replay({**talk, "judge": [verdict]}, sent))
        (episode,) = read_transcripts(out / "transcripts.jsonl")
        judge_prompt = sent["judge"].create_calls[0]["messages"][-1].content
        assert "alice: a" in judge_prompt and judge_prompt.endswith("Who won: alice, bob or nobody?")
        if expected is None:
            assert episode.status == "error" and "expected exactly one of" in episode.error
        else:
            assert (episode.outcome.winner, episode.outcome.reason) == expected
            assert episode.messages[-1].role == "judge"
            rejudged = tmp_path / f"{out.name}-rejudged.jsonl"
            protocol_file = tmp_path / "llm_judged.yaml"
            protocol_file.write_text(LLM_JUDGED)
            result = CliRunner().invoke(app, ["judge", str(protocol_file), str(out / "transcripts.jsonl"), "-o", str(rejudged)])
            assert result.exit_code == 0, result.output
            (again,) = read_transcripts(rejudged)
            assert again.outcome == episode.outcome


def decide_for_bob(episode: dict) -> dict:
    """A judge hook for the test below: bob wins when he spoke last."""
    return {"winner": "bob", "reason": "hook says bob"} if episode["messages"][-1]["role"] == "bob" else None


async def test_python_hook_runs_only_when_allowed(tmp_path):
    hooked = GAME.replace("""    - roles: [carol]
      when: mentions(message, secret)
      winner: carol
      reason: carol heard it
""", """    - roles: [carol]
      when: "false"
      winner: carol
      reason: never
  hook: test_protocols:decide_for_bob
""").replace("max_turns: 6", "max_turns: 5")
    protocol = parse_protocol(hooked)
    with pytest.raises(JudgeError, match="--allow-hooks"):
        await play(protocol, 1, tmp_path / "refused", {}, clients=_replay({r: ["x"] * 2 for r in ("alice", "bob", "carol")}, {}))
    await play(protocol, 1, tmp_path / "allowed", {}, allow_hooks=True,
               clients=_replay({r: ["x"] * 2 for r in ("alice", "bob", "carol")}, {}))
    (episode,) = read_transcripts(tmp_path / "allowed" / "transcripts.jsonl")
    assert episode.outcome.reason == "hook says bob"


SEEDED = """\
name: seeded_chat
roles:
  a:
    system: You tell a very short story about a dragon.
    sampling: {temperature: 1.0, max_tokens: 24, seed: 7}
  b:
    system: You answer the story in one sentence.
    sampling: {temperature: 1.0, max_tokens: 24, seed: 7}
schedule: {type: round_robin, order: [a, b], max_turns: 2}
"""


@pytest.mark.slow
def test_a_seeded_role_replays_its_episodes_on_the_embedded_model(tmp_path):
    """The same episodes played twice, with different company in flight, give the same games; the
    episodes of one run still draw differently from each other (the seed is made each episode's own)."""
    protocol = parse_protocol(SEEDED, tmp_path / "seeded.yaml")
    models = role_models(protocol, "hf:smollm2-135m", {})
    games = {}
    for run, count in (("first", 2), ("second", 6)):  # the second run has 4 more episodes in flight
        summary = asyncio.run(play(protocol, count, tmp_path / run, models, concurrency=count, seed=1))
        assert summary.errors == 0
        games[run] = {e.id: [m.content for m in e.messages] for e in read_transcripts(tmp_path / run / "transcripts.jsonl")}
    assert all(games["second"][ident] == messages for ident, messages in games["first"].items())
    assert len({tuple(messages) for messages in games["second"].values()}) == 6


@pytest.mark.parametrize(("typo", "message"), [
    ("when:", ":9: judge.rules.0.wen: unknown key 'wen' (did you mean 'when'?); the keys here are ['reason', 'roles', 'when', 'winner']"),
    ("max_tokens:", ":5: roles.a.sampling.max_token: unknown key 'max_token' (did you mean 'max_tokens'?)"),
])
def test_a_misspelt_key_is_named_with_the_closest_known_one(tmp_path, typo, message):
    """A misspelt required key is reported as the unknown key it is, not as the missing one."""
    text = ("name: typo\nroles:\n  a:\n    system: Hi.\n    sampling: {max_tokens: 4}\n"
            "schedule: {order: [a], max_turns: 1}\njudge:\n  rules:\n    - when: \"true\"\n      winner: a\n"
            "      reason: said\n")
    wrong = {"when:": "wen:", "max_tokens:": "max_token:"}[typo]
    assert message in load_error(text.replace(typo, wrong, 1), tmp_path)


async def test_resuming_under_an_edited_protocol_says_how_many_episodes_it_kept_from_the_old_one(tmp_path):
    replies = {"alice": ["hi"] * 2, "bob": ["hi"] * 2, "carol": ["hi"] * 2}
    old = parse_protocol(GAME)
    first = await play(old, 2, tmp_path, role_models(old, "replay", {}), clients=_replay(replies, {}))
    assert first.other_versions == 0
    same = await play(old, 3, tmp_path, role_models(old, "replay", {}), clients=_replay(replies, {}), resume=True)
    assert same.skipped == 2 and same.other_versions == 0
    edited = parse_protocol(GAME.replace("max_turns: 6", "max_turns: 3"))
    assert edited.hash != old.hash
    resumed = await play(edited, 4, tmp_path, role_models(edited, "replay", {}), clients=_replay(replies, {}),
                         resume=True)
    assert resumed.skipped == 3 and resumed.other_versions == 3


@pytest.mark.parametrize(("source", "message"), [
    ("state.x is not", "bad expression: unexpected end of the expression, expected 'name'"),
    ("'a' if turn > 1 else", "bad expression: unexpected end of the expression"),
])
def test_an_unfinished_expression_is_reported_in_the_users_terms(tmp_path, source, message):
    """Expressions are parsed inside a wrapper; its ')' must not show in the error."""
    text = ("name: unfinished\nroles:\n  a: {system: Hi.}\nschedule: {order: [a], max_turns: 1}\n"
            f"judge:\n  rules:\n    - when: \"{source}\"\n      winner: a\n      reason: said\n")
    assert f":7: judge.rules.0.when: {message}" in load_error(text, tmp_path)


def test_an_unclosed_brace_is_reported_on_its_own_line(tmp_path):
    """The parser notices the missing '}' at the next line's key; the mistake is on the line before."""
    text = "name: braces\nvariables:\n  n: {values: [1, 2]\n  m: {values: [3]}\nroles:\n  a: {system: Hi.}\n"
    assert (":3: invalid YAML: a ',' or the closing '}' is missing after this line's last value (the flow mapping "
            "opened on line 3; the parser stopped on line 4") in load_error(text, tmp_path)

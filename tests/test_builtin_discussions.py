"""The built-in discussion protocols: SAIE (Loem et al. 2024) and debate (Du et al. 2023).

Scripted tests replay canned replies through AutoGen's `ReplayChatCompletionClient` and check
the judging, the accuracies and what each role was sent; two tests play the real embedded model.
"""

from __future__ import annotations

import pytest
from autogen_core.models import AssistantMessage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from sparring.protocols._debate import compare_debate, debate_protocol, score_debate
from sparring.protocols._loader import load_protocol, parse_protocol
from sparring.protocols._play import play
from sparring.protocols._questions import load_questions
from sparring.transcripts import read_transcripts

MODEL = "hf:smollm2-135m"
GOLD = [q.answer for q in load_questions("arithmetic", n=4)]  # the default source, in episode order


class Script:
    """A client factory that gives each role, episode after episode, a replay client of canned replies.

    ``replies[role][e]`` are role's replies in episode ``e``; play with ``concurrency=1`` so
    episodes (and so their clients) start in order. ``clients[role][e]`` keeps each client.
    """

    def __init__(self, replies: dict[str, list[list[str]]]):
        self.replies = {role: list(episodes) for role, episodes in replies.items()}
        self.clients: dict[str, list[ReplayChatCompletionClient]] = {role: [] for role in replies}

    def __call__(self, role, spec) -> ReplayChatCompletionClient:
        client = ReplayChatCompletionClient(self.replies[role].pop(0))
        self.clients[role].append(client)
        return client


def _episodes(path):
    return list(read_transcripts(path, strict=True))


def _answer(n: str | int) -> str:
    return f"Step by step: ... The answer is {n}."


def _wrong(gold: str) -> str:
    return str(int(gold) + 7)


# --- SAIE ---------------------------------------------------------------------------------------


def test_builtins_load():
    saie, debate = load_protocol("saie"), load_protocol("debate")
    assert saie.spec.schedule.order == ["learner", "partner", "learner"]
    assert saie.spec.variables["stance"].values == ["supportive", "adversarial"]
    assert debate.spec.schedule.type == "simultaneous" and debate.spec.schedule.rounds == 2
    assert list(debate.spec.roles) == ["debater_1", "debater_2", "debater_3"]
    assert {r.history for r in debate.spec.roles.values()} == {"all"}


async def test_saie_is_judged_on_the_learners_last_answer(tmp_path):
    script = Script({
        "learner": [[_answer(_wrong(GOLD[0])), _answer(GOLD[0])],  # wrong, then corrected
                    [_answer(GOLD[1]), _answer(_wrong(GOLD[1]))]],  # right, then talked out of it
        "partner": [["Are you sure? Check the multiplication."], ["I think it is " + _wrong(GOLD[1]) + "."]],
    })
    protocol = load_protocol("saie")
    summary = await play(protocol, 2, tmp_path, {"learner": "replay", "partner": "replay"}, clients=script, concurrency=1)
    assert summary.errors == 0
    first, second = _episodes(summary.path)
    assert [m.role for m in first.messages] == ["learner", "partner", "learner"]
    assert first.variables["item"]["answer"] == GOLD[0]
    assert (first.outcome.winner, first.outcome.reason) == ("learner", "correct")
    assert first.rewards == {"learner": 1.0, "partner": 0.0}
    assert (second.outcome.winner, second.outcome.reason) == (None, "incorrect")
    assert second.rewards == {"learner": 0.0, "partner": 0.0}


@pytest.mark.parametrize("stance, phrase", [("supportive", "Agree with the student"),
                                            ("adversarial", "Challenge the student")])
async def test_saie_partner_follows_its_stance_and_sees_the_answer(tmp_path, stance, phrase):
    script = Script({"learner": [[_answer(5), _answer(6)]], "partner": [["A remark."]]})
    summary = await play(load_protocol("saie"), 1, tmp_path, {}, clients=script, overrides={"stance": stance})
    (episode,) = _episodes(summary.path)
    assert episode.variables["stance"] == stance
    (call,) = script.clients["partner"][0].create_calls
    system, *rest = call["messages"]
    assert isinstance(system, SystemMessage) and phrase in system.content
    assert episode.variables["item"]["question"] in system.content
    assert [(m.source, m.content) for m in rest[:1]] == [("learner", _answer(5))]
    assert rest[-1].content == f"Give your {stance} remark on the student's latest answer."
    # The learner's second turn is handed the partner's remark, then asked for its final answer.
    learner_second = script.clients["learner"][0].create_calls[1]["messages"]
    assert [m.content for m in learner_second if isinstance(m, UserMessage)][-2] == "A remark."
    assert "final answer" in learner_second[-1].content


async def test_saie_with_two_rounds_of_discussion(tmp_path):
    base = load_protocol("saie")
    text = base.text.replace("order: [learner, partner, learner]\n",
                             "order: [learner, partner, learner, partner, learner]\n")
    protocol = parse_protocol(text)
    assert protocol.spec.schedule.order.count("partner") == 2 and protocol.hash != base.hash
    script = Script({"learner": [[_answer(1), _answer(GOLD[0]), _answer(GOLD[0])]], "partner": [["No.", "Hm."]]})
    summary = await play(protocol, 1, tmp_path, {}, clients=script, overrides={"stance": "adversarial"})
    (episode,) = _episodes(summary.path)
    assert [m.role for m in episode.messages] == ["learner", "partner"] * 2 + ["learner"]
    assert episode.outcome.reason == "correct"


# --- Debate -------------------------------------------------------------------------------------


def _debate_replies(table: list[list[list[bool]]]) -> dict[str, list[list[str]]]:
    """``table[question][round][agent]``: whether that answer is right -> each debater's replies."""
    agents = len(table[0][0])
    replies: dict[str, list[list[str]]] = {f"debater_{a + 1}": [] for a in range(agents)}
    for q, rounds in enumerate(table):
        for a in range(agents):
            replies[f"debater_{a + 1}"].append(
                [f"[d{a + 1} r{r}] " + _answer(GOLD[q] if rounds[r][a] else _wrong(GOLD[q])) for r in range(len(rounds))]
            )
    return replies


# Per question: round 0 and round 1 answers of 3 debaters (True = right).
TABLE = [
    [[True, False, False], [True, True, False]],  # single right, majority wrong, debate right
    [[False, True, True], [True, True, True]],  # single wrong, majority right, debate right
    [[False, True, True], [True, False, True]],  # single wrong, majority right, debate right
    [[False, False, False], [False, False, False]],  # all wrong
]


# Per question: the lone reflecting agent's answers of round 0 and round 1.
REFLECTION = [[[True], [False]], [[False], [True]], [[False], [False]], [[False], [True]]]


async def test_compare_debate_scores_single_majority_debate_and_reflection(tmp_path):
    replies = _debate_replies(TABLE)
    replies["debater_1"] += _debate_replies(REFLECTION)["debater_1"]  # the reflection plays after the debate
    script = Script(replies)
    report = await compare_debate("arithmetic", agents=3, rounds=2, model="replay", out_dir=tmp_path, n=4,
                                  concurrency=1, clients=script)
    assert (report.questions, report.errors) == (4, 0)
    assert (report.single_agent_correct, report.majority_vote_correct, report.debate_correct) == (1, 2, 3)
    assert (report.single_agent, report.majority_vote, report.debate) == (0.25, 0.5, 0.75)
    assert (report.reflection_correct, report.reflection) == (2, 0.5)  # its last answers: 2 of 4 right
    reflected = _episodes(tmp_path / "reflection" / "transcripts.jsonl")
    assert [[(m.role, m.round) for m in e.messages] for e in reflected] == [[("debater_1", 0), ("debater_1", 1)]] * 4
    call = script.clients["debater_1"][4].create_calls[1]["messages"]  # the reflection's second round
    assert "Examine your previous answer" in call[-1].content and isinstance(call[-2], AssistantMessage)
    episodes = _episodes(report.path)
    assert [e.variables["item"]["answer"] for e in episodes] == GOLD  # episode i got question i
    assert [e.outcome.reason for e in episodes] == ["correct", "correct", "correct", "incorrect"]
    assert all(e.outcome.winner is None for e in episodes)
    assert episodes[0].rewards == {"debater_1": 1.0, "debater_2": 1.0, "debater_3": 1.0}
    assert [(m.role, m.round) for m in episodes[0].messages] == [(f"debater_{a}", r) for r in (0, 1) for a in (1, 2, 3)]
    rescored = score_debate(report.path, agents=3, rounds=2)
    assert (rescored.single_agent, rescored.majority_vote, rescored.debate) == (0.25, 0.5, 0.75)


async def test_debaters_see_only_the_other_debaters_previous_round(tmp_path):
    rounds = 3
    protocol = debate_protocol(agents=3, rounds=rounds)
    script = Script(_debate_replies([[[True] * 3] * rounds]))
    summary = await play(protocol, 1, tmp_path, {}, clients=script)
    assert summary.errors == 0
    for a in (1, 2, 3):
        calls = script.clients[f"debater_{a}"][0].create_calls
        assert len(calls) == rounds
        for r, call in enumerate(calls):
            handed = [m for m in call["messages"] if isinstance(m, UserMessage) and m.source != "user"]
            own = [m for m in call["messages"] if isinstance(m, AssistantMessage)]
            # Everything from the peers is from earlier rounds, labelled with its author; this round's
            # arrive after the call.
            assert all(m.content.startswith(f"{m.source}: ") for m in handed)
            assert sorted(m.content.removeprefix(f"{m.source}: ")[:7] for m in handed) == sorted(
                f"[d{b} r{p}]" for p in range(r) for b in (1, 2, 3) if b != a)
            assert [m.content[:7] for m in own] == [f"[d{a} r{p}]" for p in range(r)]
            if r:  # the previous round's answers come right before this round's prompt
                assert [m.source for m in call["messages"][-3:-1]] == [f"debater_{b}" for b in (1, 2, 3) if b != a]
                assert "answers of the other agents" in call["messages"][-1].content


def test_debate_variants():
    assert debate_protocol() is not None and debate_protocol().text == load_protocol("debate").text
    five = debate_protocol(agents=5, rounds=3)
    assert list(five.spec.roles) == [f"debater_{i}" for i in range(1, 6)]
    assert five.spec.schedule.rounds == 3 and "debater_5" in five.spec.judge.final[0].when
    hashes = {debate_protocol(a, r).hash for a in (2, 3) for r in (1, 2)}
    assert len(hashes) == 4
    with pytest.raises(ValueError):
        debate_protocol(agents=0)


# --- Real model ---------------------------------------------------------------------------------


def _small_model(role, spec):
    from sparring.agents import model_client

    return model_client(MODEL, **{**spec.sampling.settings(), "temperature": 0, "max_tokens": 16})


@pytest.mark.slow
async def test_saie_plays_the_embedded_model(tmp_path):
    summary = await play(load_protocol("saie"), 1, tmp_path, {"learner": MODEL, "partner": MODEL}, clients=_small_model,
                         overrides={"stance": "adversarial"})
    (episode,) = _episodes(summary.path)
    assert episode.status == "ok", episode.error
    assert [m.role for m in episode.messages] == ["learner", "partner", "learner"]
    assert all(m.content.strip() and m.token_ids for m in episode.messages)
    assert episode.outcome.reason in ("correct", "incorrect")


@pytest.mark.slow
async def test_debate_plays_the_embedded_model(tmp_path):
    report = await compare_debate("arithmetic", agents=2, rounds=2, model=MODEL, out_dir=tmp_path, n=1,
                                  clients=_small_model)
    assert (report.questions, report.errors) == (1, 0)
    (episode,) = _episodes(report.path)
    assert episode.status == "ok", episode.error
    assert episode.models == {"debater_1": MODEL, "debater_2": MODEL}
    assert [(m.role, m.round) for m in episode.messages] == [("debater_1", 0), ("debater_2", 0),
                                                             ("debater_1", 1), ("debater_2", 1)]
    assert all(m.content.strip() for m in episode.messages)
    assert 0.0 <= report.debate <= 1.0

"""Training-prompt variation: SPAG's `randomly_convert_game_history_to_query` (Linear95/SPAG, utils.py)
through `training.variation`, and the older chat/flat variation of protocols without it.

The expected queries are written out by hand from the official function: dialog_prefix = "\\n" + one
of 7, a label pair (the first for the player to move), a layout, a "Rules"/"Game Rule"/"System"
name, one of 8 GAME_RULE_PROMPTS, then for alpaca two chances of 0.2."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from _games import A, D
from sparring.data import build_dataset
from sparring.data._prompt_variants import draw_query, varied_chat
from sparring.errors import ProtocolError
from sparring.protocols import episode_views, load_protocol, parse_protocol
from sparring.protocols._visibility import system_prompt
from sparring.transcripts import Episode, Outcome, ProtocolRef, TranscriptMessage, TranscriptWriter

SPAG = load_protocol("adversarial_taboo_spag")
VARIATION = SPAG.spec.training.variation
# The official strings (utils.py)
PREFIXES = ["\n\n - ", "\n\n### ", "\n\n## ", "\n\n# ", "\n\n *** ", "\n\n **", "\n\n\n"]
LABELS = [(A, D), ("Assistant", "Human"), ("Answer", "Question"), ("Response", "Query"), ("A", "Q")]
SYSTEM_PREFIXES = ["Rules", "Game Rule", "System"]
INSTRUCTIONS = {A: "You are the attacker. The target word is `cat`. Provide your response for the next turn.",
                D: "Your are the defender. Provide your response to infer the target word."}
OPENINGS = ["Play the game of Adversarial Taboo. In this game, there are two players",
            "\nEngage in the strategic contest of Adversarial Taboo", "\nDive into the cunning duel known as Adversarial",
            "\nStep into the challenge of Adversarial Taboo", "\nImmerse yourself in the strategic face-off called",
            "\nDive into the strategic duel known as Adversarial", "\nStep into the intriguing game known as Adversarial",
            "\nEmbark on the strategic challenge of Adversarial Taboo"]
TEXTS = ["Let's talk about pets.", "I like dogs.", "What purrs on your lap?", "I know the word! It is `cat`!"]


def game(episode_id: str = "g") -> Episode:
    messages = [TranscriptMessage(role=(A, D)[i % 2], content=text, turn=i, round=i) for i, text in enumerate(TEXTS)]
    return Episode(id=episode_id, protocol=ProtocolRef(name=SPAG.name, hash=SPAG.hash), variables={"target": "cat"},
                   messages=messages, outcome=Outcome(winner=D, reason="defender guessed the word"))


EPISODE = game()
VIEWS = episode_views(SPAG, EPISODE)
RULES = [system_prompt(SPAG, {"target": "cat"}, A, t)  # the played rules, then the 7 variants
         for t in [SPAG.spec.roles[A].system, *SPAG.spec.training.system_variants[A]]]


class Scripted(random.Random):
    """Draws given in order: ``choice`` and ``randrange`` take an index, ``random`` a number."""

    def __init__(self, *draws):
        super().__init__(0)
        self.draws = list(draws)

    def choice(self, seq):
        return seq[self.draws.pop(0)]

    def randrange(self, n):
        return self.draws.pop(0)

    def random(self):
        return self.draws.pop(0)


def query(index: int, *draws) -> str:
    (user, assistant) = varied_chat(VIEWS[index], SPAG, EPISODE, Scripted(*draws))
    assert user["role"] == "user" and assistant == {"role": "assistant", "content": TEXTS[index]}
    return user["content"]


def test_the_shipped_variation_holds_the_official_strings():
    assert VARIATION.history_prefixes == PREFIXES
    assert [(s.own, s.others) for s in VARIATION.speaker_labels][1:] == LABELS[1:]
    assert VARIATION.layouts == ["chat", "chat_inverse", "alpaca"] and VARIATION.system_prefixes == SYSTEM_PREFIXES
    assert (VARIATION.no_history, VARIATION.history_header) == ("The game is just initialized. ", "Game History:")
    assert (VARIATION.alpaca_prefix_chance, VARIATION.alpaca_inline_chance) == (0.2, 0.2)
    assert [rules.startswith(opening) for rules, opening in zip(RULES, OPENINGS)] == [True] * 8
    assert all(rules.endswith(".\n") for rules in RULES)


def test_the_queries_are_the_official_ones():
    history = "\n\n### Assistant: Let's talk about pets.\n\n### Human: I like dogs."
    rules_line = f"\n\n### Rules: {RULES[0]}\n\n{INSTRUCTIONS[A]}"
    # prefix "\n\n### ", Assistant/Human, chat, "Rules", GAME_RULE_PROMPTS[0]: the attacker's second turn
    assert query(2, 1, 1, 0, 0, 0) == rules_line + history + "\n\n### Assistant: "
    assert query(2, 1, 1, 1, 0, 0) == history + rules_line + "\n\n### Assistant: "  # chat_inverse
    # alpaca, the rules prefixed ("Game Rule: "), the roles' own names, prefix "\n\n - ", the defender's turn
    assert query(3, 0, 0, 2, 1, 3, 0.1, 0.5) == (
        f"Game Rule: {RULES[3]}\n\n - Game History:\n\n - attacker: Let's talk about pets.\n\n - defender: I like dogs."
        f"\n\n - attacker: What purrs on your lap?\n\n{INSTRUCTIONS[D]}\n\n - defender: ")
    # alpaca at the first turn, the instruction turned into the answer cue (its "." replaced by ": ")
    assert query(0, 6, 4, 2, 2, 7, 0.9, 0.1) == (
        RULES[7] + "The game is just initialized. " + INSTRUCTIONS[A][:-1] + ": ")
    # chat at the first turn: "The game is just initialized. " right after the instruction, no history
    assert query(0, 3, 4, 0, 2, 5) == f"\n\n# System: {RULES[5]}\n\n{INSTRUCTIONS[A]}The game is just initialized. \n\n# A: "
    assert query(1, 5, 3, 1, 1, 0) == (f"\n\n **Query: Let's talk about pets.\n\n **Game Rule: {RULES[0]}\n\n"
                                      f"{INSTRUCTIONS[D]}\n\n **Response: ")


def test_every_component_is_drawn_with_its_official_chance():
    rng = random.Random(7)
    draws = [draw_query(VARIATION, 8, rng) for _ in range(6000)]
    assert {d.prefix for d in draws} == set(PREFIXES)
    assert {(d.labels.own, d.labels.others) for d in draws} == {("{{ speaker }}", "{{ speaker }}"), *LABELS[1:]}
    assert {d.system_prefix for d in draws} == set(SYSTEM_PREFIXES) and {d.rules for d in draws} == set(range(8))
    layouts = Counter(d.layout for d in draws)
    assert set(layouts) == {"chat", "chat_inverse", "alpaca"}
    assert all(abs(n / len(draws) - 1 / 3) < 0.03 for n in layouts.values())
    alpaca = [d for d in draws if d.layout == "alpaca"]
    for flag in ("prefixed_rules", "inline_answer"):
        assert abs(sum(getattr(d, flag) for d in alpaca) / len(alpaca) - 0.2) < 0.04
    assert not any(d.prefixed_rules or d.inline_answer for d in draws if d.layout != "alpaca")


@pytest.mark.slow
def test_seeded_rows_contain_the_official_strings_and_the_turns_own_text():
    seen = Counter()
    for seed in range(1500):
        view = VIEWS[seed % 4]
        draw = draw_query(VARIATION, 8, random.Random(seed))  # the same draws varied_chat makes
        user, assistant = varied_chat(view, SPAG, EPISODE, random.Random(seed))
        text = user["content"]
        assert assistant["content"] == TEXTS[view.index]
        own, other = (view.role, (D if view.role == A else A)) if draw.labels.own.startswith("{{") else (
            draw.labels.own, draw.labels.others)
        instruction = INSTRUCTIONS[view.role]
        assert text.endswith(instruction[:-1] + ": " if draw.inline_answer else f"{draw.prefix}{own}: ")
        assert (instruction[:-1] if draw.inline_answer else instruction) in text and RULES[draw.rules] in text
        for i in range(view.index):  # every earlier message, with its speaker's label
            assert f"{draw.prefix}{own if i % 2 == view.index % 2 else other}: {TEXTS[i]}" in text
        start = {"chat": f"{draw.prefix}{draw.system_prefix}: ", "alpaca": "", "chat_inverse": draw.prefix}[draw.layout]
        assert text.startswith(start)
        if draw.layout != "alpaca" or draw.prefixed_rules:
            assert f"{draw.system_prefix}: {RULES[draw.rules]}" in text
        seen.update([("layout", draw.layout), ("prefix", draw.prefix), ("labels", own), ("rules", draw.rules)])
    assert len([k for k in seen if k[0] == "prefix"]) == 7 and len([k for k in seen if k[0] == "rules"]) == 8
    assert len([k for k in seen if k[0] == "layout"]) == 3
    assert {k[1] for k in seen if k[0] == "labels"} == {A, D, "Assistant", "Answer", "Response", "A"}


def write(path: Path, episodes: list[Episode]) -> Path:
    with TranscriptWriter(path) as out:
        for episode in episodes:
            out.write(episode)
    return path


@pytest.mark.slow
def test_data_build_draws_per_row_and_a_seed_gives_the_same_rows(tmp_path):
    path = write(tmp_path / "t.jsonl", [game(f"g{i}") for i in range(30)])
    built = {}
    for name, kind, seed in [("a", "spag", 1), ("b", "spag", 1), ("c", "spag", 2), ("i", "imitation", 1)]:
        build_dataset(kind, [path], tmp_path / name, seed=seed)
        built[name] = (tmp_path / name / "data.jsonl").read_text()
    assert built["a"] == built["b"] and built["a"] != built["c"]
    rows = [json.loads(line) for line in built["a"].splitlines()]
    assert len(rows) == 60 and {r["role"] for r in rows} == {D}  # the winner's two turns of each game
    assert len({r["messages"][0]["content"] for r in rows}) > 40  # drawn per row
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["content"] in (TEXTS[1], TEXTS[3])
        assert INSTRUCTIONS[D][:-1] in user["content"] and any(rules in user["content"] for rules in RULES)
    # imitation on a protocol with `variation` varies too (SPAG's imitation data is drawn the same way)
    assert [json.loads(line)["messages"][0]["role"] for line in built["i"].splitlines()] == ["user"] * 60
    build_dataset("imitation", [path], tmp_path / "plain", vary_prompts=False)
    plain = json.loads((tmp_path / "plain" / "data.jsonl").read_text().splitlines()[0])
    assert plain["messages"][0] == {"role": "system", "content": RULES[0]}


TABOO = load_protocol("adversarial_taboo")
# the system wording (0: the played one) and format each row drew before `variation` existed
EXPECTED_BEFORE = [(4, "chat"), (8, "chat"), (7, "chat"), (0, "chat"), (1, "chat"), (7, "chat"), (6, "chat"), (3, "chat"),
                   (3, "chat"), (4, "chat"), (6, "chat"), (1, "chat"), (7, "chat"), (2, "chat"), (0, "chat"), (3, "chat"),
                   (2, "flat"), (5, "chat"), (8, "chat"), (2, "chat"), (6, "flat")]


def test_a_protocol_without_variation_gives_the_rows_it_gave_before(tmp_path):
    episodes = [Episode(id=f"t{i}", protocol=ProtocolRef(name=TABOO.name, hash=TABOO.hash), variables={"target": "apple"},
                        messages=[TranscriptMessage(role=(A, D)[k % 2], content=f"t{i} message {k}", turn=k, round=k)
                                  for k in range(n)], outcome=Outcome(winner=(A, D)[i % 2], reason="decided"))
                for i, n in enumerate([3, 4, 2, 6, 5, 8, 7, 4])]
    build_dataset("spag", [write(tmp_path / "t.jsonl", episodes)], tmp_path / "d", seed=5)
    rows = [json.loads(line) for line in (tmp_path / "d" / "data.jsonl").read_text().splitlines()]
    drawn = []
    for row in rows:
        templates = [TABOO.spec.roles[row["role"]].system, *TABOO.spec.training.system_variants[row["role"]]]
        systems = [system_prompt(TABOO, {"target": "apple"}, row["role"], t) for t in templates]
        flat = row["messages"][1]["content"].startswith("The dialogue so far:")
        drawn.append((systems.index(row["messages"][0]["content"]), "flat" if flat else "chat"))
    assert drawn == EXPECTED_BEFORE


GAME = """\
name: greet
variables:
  name: {values: [Ada]}
roles:
  alice:
    system: "Greet politely."
  bob:
    system: "Answer."
schedule: {type: round_robin, order: [alice, bob], max_turns: 3}
training:
  variation:
    history_prefixes: ["\\n> "]
    speaker_labels: [{own: "{{ speaker | upper }}", others: "Other"}]
    layouts: [chat_inverse]
    system_prefixes: [Setup]
    instructions: {alice: "Say hi to {{ name }}."}
"""


def test_any_protocol_can_declare_a_variation():
    protocol = parse_protocol(GAME)
    messages = [TranscriptMessage(role=r, content=t, turn=i, round=i) for i, (r, t) in
                enumerate([("alice", "Hi!"), ("bob", "Hello."), ("alice", "How are you?")])]
    episode = Episode(id="e", protocol=ProtocolRef(name="greet"), variables={"name": "Ada"}, messages=messages)
    views = episode_views(protocol, episode)
    user, assistant = varied_chat(views[2], protocol, episode, random.Random(0))
    assert user["content"] == "\n> ALICE: Hi!\n> Other: Hello.\n> Setup: Greet politely.\n\nSay hi to Ada.\n> ALICE: "
    assert assistant == {"role": "assistant", "content": "How are you?"}
    with pytest.raises(ProtocolError, match="training.variation.instructions: no instruction for role 'bob'"):
        varied_chat(views[1], protocol, episode, random.Random(0))


@pytest.mark.parametrize("old, new, field", [
    ("layouts: [chat_inverse]", "layouts: [sideways]", "layouts.0"),
    ('history_prefixes: ["\\n> "]', "history_prefixes: []", "history_prefixes"),
    ("system_prefixes: [Setup]", "system_prefixes: []", "system_prefixes"),
    ("    instructions:", "    alpaca_inline_chance: 2\n    instructions:", "alpaca_inline_chance"),
])
def test_variation_fields_are_checked(old, new, field):
    assert old in GAME
    with pytest.raises(ProtocolError, match=f"training.variation.{field}"):
        parse_protocol(GAME.replace(old, new))

"""The SPAG-faithful Adversarial Taboo (adversarial_taboo_spag.yaml): its judge against outcomes
worked out by hand from the official code (Linear95/SPAG, tools/assign_rewards.py), its play
prompts (utils.py, convert_game_history_to_query) and sampling (tools/play_llm_game.py), and the
`remind_defender` option of adversarial_taboo. Pure logic and replayed models: no real model."""

from __future__ import annotations

import doctest

import pytest

from _games import A, BROKE, D, GUESSED, SAID, TIE, WRONG, play_replayed
from sparring.protocols import Judge, Outcome, load_protocol
from sparring.protocols import _spag_taboo
from sparring.protocols._spag_taboo import spag_correct_guess, spag_guess, spag_mentions, spag_plural
from sparring.protocols._taboo import load_taboo_words
from sparring.protocols._visibility import turn_prompt

SPAG = Judge(load_protocol("adversarial_taboo_spag"))
CURRENT = Judge(load_protocol("adversarial_taboo"))
OPENING = (A, "Let's chat! What do you usually keep as a pet?")
NEUTRAL = [(A, "Tell me about your day."), (D, "It was fine, thanks.")] * 5  # 10 messages, no word


def judge(judge: Judge, messages: list[tuple[str, str]], target: str) -> tuple[Outcome, int | None]:
    return judge.judge({"target": target}, [{"role": role, "content": text} for role, text in messages])


# (case id, target, messages, official outcome and deciding index, the current judge's)
# Official lines: has_target_word = any(word in content.lower() for word in get_derivative_words),
# derivative words = [word, word+'ing', word+'ed', plural] (+ quoted copies);
# PREDICT_TEMP = r"i know the word! it.{1,8}"; is_correct_prediction = re.search(PREDICT_TEMP + word);
# get_game_outcome checks a defender's prediction first, then its mention; an attacker's mention,
# then its prediction ('attacker breaks the rules'); it stops after max_turns * 2 messages.
CASES = [
    # "cat" in "category": a substring is a mention officially, no whole word for the current judge.
    ("attacker substring", "cat", [(A, "Name a category of pets.")], (BROKE, 0), (TIE, None)),
    ("defender substring", "cat", [OPENING, (D, "Hard to pick one category.")], (SAID, 1), (TIE, None)),
    # `.{1,8}` after "it": "'s a " is 5 characters, then "cat".
    ("guess within 8 characters", "cat", [OPENING, (D, "I know the word! It's a cat!")],
     (GUESSED, 1), (GUESSED, 1)),
    # " is not " is exactly 8 characters: the official regex takes a negated guess as right.
    ("negated guess inside the window", "cat", [OPENING, (D, "I know the word! It is not cat.")],
     (GUESSED, 1), (WRONG, 1)),
    # " is probably " is 13 characters: the word starts too late, so the guess is wrong.
    ("word past the window", "cat", [OPENING, (D, "I know the word! It is probably cat.")],
     (WRONG, 1), (WRONG, 1)),
    # " is now " is 8 characters, then "'cat'": only the quoted derivative word fits the window.
    ("quoted form widens the window", "cat", [OPENING, (D, "I know the word! It is now 'cat'.")],
     (GUESSED, 1), (WRONG, 1)),
    # No "i know the word! it": no prediction, so the word in it is a mention (the current judge parses a guess).
    ("colon is no guess", "cat", [OPENING, (D, "I know the word: cat")], (SAID, 1), (GUESSED, 1)),
    ("prediction checked before the mention", "cat", [OPENING, (D, "Cats? I know the word! It is `dog`!")],
     (WRONG, 1), (WRONG, 1)),
    # play_llm_game.py stops the game at a defender message with "i know the word": nothing later is played.
    ("stopped without a guess", "cat", [OPENING, (D, "I know the word: dog!"), (A, "cat?")],
     (TIE, 1), (WRONG, 1)),
    ("attacker guesses", "cat", [(A, "I know the word! It is fun to chat.")], (BROKE, 0), (BROKE, 0)),
    # The plural form: "knives" does not contain "knife".
    ("plural", "knife", [(A, "Chefs keep their knives sharp.")], (BROKE, 0), (BROKE, 0)),
    ("plural guess", "city", [OPENING, (D, "I know the word! It is cities!")], (GUESSED, 1), (GUESSED, 1)),
    # word + 'ed' / 'ing' are substrings; an irregular form ("ran") is none of the derivative words.
    ("-ed form", "walk", [OPENING, (D, "I walked there.")], (SAID, 1), (SAID, 1)),
    ("-ing form", "jump", [(A, "Do you like jumping?")], (BROKE, 0), (BROKE, 0)),
    ("irregular form", "run", [OPENING, (D, "I ran home.")], (TIE, None), (SAID, 1)),
    # history_length >= max_turns * 2 breaks the loop: an 11th or 12th message is never judged.
    ("11th message ignored", "cat", NEUTRAL + [(A, "Is it a cat?")], (TIE, None), (BROKE, 10)),
    ("12th message ignored", "cat", NEUTRAL + [(A, "Hmm."), (D, "A cat!")], (TIE, None), (SAID, 11)),
    ("10th message judged", "cat", NEUTRAL[:9] + [(D, "A cat!")], (SAID, 9), (SAID, 9)),
]


@pytest.mark.parametrize("target, messages, official, current", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_spag_judge_follows_the_official_rules(target, messages, official, current):
    assert judge(SPAG, messages, target) == official
    if len(messages) <= 10:  # the current protocol judges what it is given
        assert judge(CURRENT, messages, target) == current


def test_helpers():
    assert spag_mentions("CONCATENATE", "cat") and not spag_mentions("dog", "cat")
    assert spag_guess("i know the word! it is") and not spag_guess("I know the word! It")  # needs 1 more char
    assert not spag_guess("I know the word!  It is cat")  # exactly one space
    assert not spag_guess("Do I know the word? It is hard.")
    assert not spag_correct_guess("I know the word! It\ncat", "cat")  # `.` is no newline
    assert spag_correct_guess("I know the word! It is `catalog`!", "cat")  # runs on into a longer word
    assert spag_mentions("", "cat") is False and spag_plural("") == ""


def test_plural_rules():
    cases = {"cat": "cats", "city": "cities", "boy": "boys", "box": "boxes", "church": "churches",
             "knife": "knives", "wolf": "wolves", "potato": "potatoes", "radio": "radios", "woman": "women",
             "mouse": "mice", "analysis": "analyses", "fish": "fish", "child": "children", "medium": "media",
             "water": "water", "bus": "buses", "photo": "photos", "ice cream": "ices"}
    assert {word: spag_plural(word) for word in cases} == cases
    assert all(spag_plural(w).isalpha() for w in load_taboo_words())


def test_module_doctests():
    assert doctest.testmod(_spag_taboo).failed == 0


def test_spag_protocol_loads_with_the_official_sampling_and_turns():
    spec = load_protocol("adversarial_taboo_spag").spec
    for role in (A, D):
        assert (spec.roles[role].sampling.temperature, spec.roles[role].sampling.max_tokens) == (1.2, 256)
        assert spec.roles[role].system.startswith("Play the game of Adversarial Taboo.")
        assert "The game has 5 turns. if nobody wins during 5 turns, there is a tie." in spec.roles[role].system
    assert spec.schedule.order == [A, D] and spec.schedule.max_turns == 10
    assert spec.training.drop_reasons == ["attacker breaks the rules"]
    variants = spec.training.system_variants
    assert len(variants[A]) == len(variants[D]) == 7  # with the played one: the 8 GAME_RULE_PROMPTS
    assert "four rounds" in variants[A][5] and all("5 rounds" in v for i, v in enumerate(variants[A]) if i != 5)


async def test_spag_play_sends_the_official_query(tmp_path):
    protocol = load_protocol("adversarial_taboo_spag")
    replies = {A: ["Hint one."] + [f"Hint {i}." for i in range(4)], D: ["Answer one."] + [f"Answer {i}." for i in range(4)]}
    episode, clients = await play_replayed(protocol, tmp_path, replies, overrides={"target": "apple"})
    assert episode.outcome.reason == "tie" and len(episode.messages) == 10
    first, second = (call["messages"] for call in clients[A].create_calls[:2])
    rules = protocol.spec.roles[A].system
    tail_a = ("\n\n### Instruction: You are the attacker. The target word is `apple`. "
              "Provide your response for the next turn.\n\n### Response:")
    # convert_game_history_to_query: rules + "The game is just initialized." or the history, + INSTRUCT_PROMPTS
    assert [m.content for m in first] == [rules, "The game is just initialized." + tail_a]
    assert [m.content for m in second] == [
        rules, "\n### Game History:\n  - attacker: Hint one.\n  - defender: Answer one." + tail_a]
    defender = [m.content for m in clients[D].create_calls[0]["messages"]]
    assert defender == [rules, "\n### Game History:\n  - attacker: Hint one.\n\n### Instruction: Your are the "
                        "defender. Provide your response to infer the target word.\n\n### Response:"]
    assert "apple" not in "".join(defender)


def test_reminder_is_off_by_default_and_on_with_remind_defender():
    protocol = load_protocol("adversarial_taboo")
    assert protocol.spec.variables["remind_defender"].values == [False]

    def prompt(variables: dict, turn: int) -> str | None:  # the defender's prompt after `turn` messages
        messages = [{"role": (A, D)[i % 2], "content": "hmm", "round": i} for i in range(turn)]
        return turn_prompt(protocol, {"target": "apple", **variables}, D, turn, messages)

    assert [prompt({"remind_defender": False}, turn) for turn in (1, 3, 5, 7, 9)] == [None] * 5
    reminded = [prompt({"remind_defender": True}, turn) for turn in (1, 3, 5, 7, 9)]
    assert reminded[:2] == [None, None] and all("Make your one guess now" in p for p in reminded[2:])
    assert "Make your one guess now" in prompt({}, 5)  # a record from before the option: it was reminded


async def test_spag_training_rows_keep_the_official_query(tmp_path):
    from sparring.data import build_dataset, load_rows

    protocol = load_protocol("adversarial_taboo_spag")
    replies = {A: ["A pet that purrs."], D: ["I know the word! It is `cat`!"]}
    episode, _ = await play_replayed(protocol, tmp_path / "play", replies, overrides={"target": "cat"})
    assert episode.outcome.reason == "defender guessed the word"
    summary = build_dataset("spag", [tmp_path / "play" / "transcripts.jsonl"], tmp_path / "data", vary_prompts=False)
    assert summary.role_rows == {"defender": 1}  # SPAG trains the winner's turns only
    (row,) = load_rows(tmp_path / "data").to_list()
    assert [m["content"] for m in row["messages"]] == [
        protocol.spec.roles[D].system,
        "\n### Game History:\n  - attacker: A pet that purrs.\n\n### Instruction: Your are the defender. "
        "Provide your response to infer the target word.\n\n### Response:",
        "I know the word! It is `cat`!",
    ]

"""Evaluation: Wilson intervals, win rates over both role assignments, held-out values, QA accuracy, CLI."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient
from typer.testing import CliRunner

from sparring.cli import app
from sparring.errors import ProtocolError
from sparring.evaluation import eval_qa, eval_winrate, wilson_interval
from sparring.protocols import load_protocol, parse_protocol, play
from sparring.transcripts import read_transcripts

MODEL = "hf:smollm2-135m"

# A two-sided game whose outcome the scripted replies decide: saying "I win" wins for the speaker.
DUEL = """\
name: duel
variables:
  target: {values: [apple, pear, plum, fig]}
roles:
  first:
    system: You are first. The word is {{ target }}.
  second:
    system: You are second.
schedule:
  type: round_robin
  order: [first, second]
  max_turns: 2
judge:
  rules:
    - roles: [first]
      when: regex(message, "I win")
      winner: first
      reason: first claimed it
    - roles: [second]
      when: regex(message, "I win")
      winner: second
      reason: second claimed it
  default: {when: "true", winner: null, reason: tie}
"""


def _formula(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval written out as in Wilson (1927)."""
    p = k / n
    centre = (2 * n * p + z * z) / (2 * (n + z * z))
    half = z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.mark.parametrize(("k", "n", "expected"), [
    (0, 10, (0.0, 0.2775)),       # published tables (e.g. Newcombe 1998; Wikipedia's worked examples)
    (5, 10, (0.2366, 0.7634)),
    (10, 10, (0.7225, 1.0)),
    (81, 263, (0.2553, 0.3662)),
    (1, 1, (0.2065, 1.0)),
])
def test_wilson_interval_matches_published_values(k, n, expected):
    low, high = wilson_interval(k, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_matches_the_formula_and_edge_cases():
    for k, n in [(3, 7), (12, 40), (99, 100), (1, 1000)]:
        for z in (1.959964, 1.644854, 2.575829):
            assert wilson_interval(k, n, z) == pytest.approx(_formula(k, n, z), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and low + high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(11, 10)


def _scripted(created: Counter):
    """Replay clients per half: the evaluated model "A" and the opponent "B" say what the script says.

    Half 1 (A first, B second): A says "I win" -> A wins every game.
    Half 2 (B first, A second): B's first client says "I win" (a loss for A), A's second client
    has no replies (an error), every other game is a tie.
    """

    def for_half(models: dict[str, str]):
        def factory(role, spec):
            key = (models[role], role)
            n = created[key]
            created[key] += 1
            if key == ("A", "first"):
                replies = ["I win"]
            elif key == ("B", "first"):
                replies = ["I win" if n == 0 else "hello"]
            elif key == ("A", "second"):
                replies = [] if n == 1 else ["hello"]
            else:
                replies = ["hello"]
            return ReplayChatCompletionClient(replies)

        return factory

    return for_half


async def test_winrate_counts_both_role_assignments(tmp_path):
    created: Counter = Counter()
    seen = []
    result = await eval_winrate(parse_protocol(DUEL), "A", "B", 8, tmp_path, seed=3, concurrency=2,
                                clients=_scripted(created), on_episode=seen.append)
    assert len(seen) == 8
    t = result.total
    assert (t.games, t.wins, t.losses, t.ties, t.errors) == (8, 4, 1, 2, 1)
    assert result.win_rate == pytest.approx(4 / 7) and result.win_ci == wilson_interval(4, 7)
    assert result.tie_ci == wilson_interval(2, 7) and result.loss_rate == pytest.approx(1 / 7)
    saved = json.loads((tmp_path / "winrate.json").read_text())
    assert saved["by_role"] == {"first": {"games": 4, "wins": 4, "losses": 0, "ties": 0, "errors": 0},
                                "second": {"games": 4, "wins": 0, "losses": 1, "ties": 2, "errors": 1}}
    assert set(saved) >= {"model", "opponent", "protocol", "games", "wins", "losses", "ties", "errors", "win_rate",
                          "win_ci", "loss_rate", "loss_ci", "tie_rate", "tie_ci", "by_role"}
    episodes = list(read_transcripts(tmp_path / "transcripts.jsonl"))
    assert len({e.id for e in episodes}) == 8
    halves = Counter(e.id.rsplit("-", 1)[0] for e in episodes)
    assert halves == {"duel-6": 4, "duel-7": 4}  # seeds 2*seed and 2*seed+1
    assert all(e.models == ({"first": "A", "second": "B"} if e.id.startswith("duel-6") else {"first": "B", "second": "A"})
               for e in episodes)

    with pytest.raises(ProtocolError, match="resume"):
        await eval_winrate(parse_protocol(DUEL), "A", "B", 8, tmp_path, seed=3, clients=_scripted(Counter()))
    again: Counter = Counter()
    resumed = await eval_winrate(parse_protocol(DUEL), "A", "B", 8, tmp_path, seed=3, resume=True,
                                 clients=_scripted(again))
    assert sum(again.values()) == 2  # only the error episode is replayed (its fresh "B" client says "I win")
    assert (resumed.total.games, resumed.total.wins, resumed.total.losses, resumed.total.errors) == (8, 4, 2, 0)
    # resuming with another model would count A's games as C's
    with pytest.raises(ProtocolError, match=r"episode duel-6-\d+ was played by A, not by B or C: resume an "):
        await eval_winrate(parse_protocol(DUEL), "C", "B", 8, tmp_path, seed=3, resume=True, clients=_scripted(Counter()))


async def test_exclude_skips_held_out_values_and_resumes(tmp_path):
    protocol = parse_protocol(DUEL)
    held_out = {"target": {"apple", "pear"}}

    def clients(role, spec):
        return ReplayChatCompletionClient(["hello"])

    summary = await play(protocol, 5, tmp_path, {}, clients=clients, seed=1, exclude=held_out)
    episodes = list(read_transcripts(tmp_path / "transcripts.jsonl"))
    assert summary.games == len(episodes) == 5
    assert {e.variables["target"] for e in episodes} <= {"plum", "fig"}
    indexes = sorted(int(e.id.rsplit("-", 1)[1]) for e in episodes)
    assert indexes[-1] > 4  # later indexes were drawn in place of the held-out ones
    again = await play(protocol, 5, tmp_path, {}, clients=clients, seed=1, exclude=held_out, resume=True)
    assert again.skipped == 5 and again.games == 0

    with pytest.raises(ProtocolError, match="no variable 'word'"):
        await play(protocol, 1, tmp_path / "x", {}, clients=clients, exclude={"word": {"a"}})
    with pytest.raises(ProtocolError, match="exclude fewer values"):
        await play(protocol, 2, tmp_path / "y", {}, clients=clients, exclude={"target": {"apple", "pear", "plum", "fig"}})

    result = await eval_winrate(protocol, "A", "B", 6, tmp_path / "eval", exclude=held_out,
                                clients=lambda models: clients)
    played = list(read_transcripts(tmp_path / "eval" / "transcripts.jsonl"))
    assert result.total.games == len(played) == 6 and result.total.ties == 6
    assert {e.variables["target"] for e in played} <= {"plum", "fig"}


async def test_eval_qa_scores_every_method_with_intervals(tmp_path):
    def wrong(role, spec):
        return ReplayChatCompletionClient(["I think so. The answer is 12345."] * 4)

    planned, written = [], []
    result = await eval_qa("arithmetic:4", "replay", tmp_path, debate=True, agents=3, rounds=2, clients=wrong,
                           on_start=planned.append, on_episode=written.append)
    assert planned == [8] and len(written) == 8  # the progress hooks: 4 debates and 4 reflections
    assert result.questions == 4 and set(result.methods) == {"single_agent", "majority_vote", "debate", "reflection"}
    assert all(m.correct == 0 and m.ci == wilson_interval(0, 4) for m in result.methods.values())
    saved = json.loads((tmp_path / "accuracy.json").read_text())
    assert saved["questions"] == 4 and saved["methods"]["debate"] == {"correct": 0, "total": 4, "accuracy": 0.0,
                                                                     "ci": list(wilson_interval(0, 4))}


def test_cli_help():
    runner = CliRunner()
    for args in (["eval", "--help"], ["eval", "winrate", "--help"], ["eval", "qa", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "--opponent" in runner.invoke(app, ["eval", "winrate", "--help"]).output
    assert "--debate" in runner.invoke(app, ["eval", "qa", "--help"]).output


@pytest.fixture
def few_tokens(monkeypatch):
    """Cap every reply of the real model at 24 tokens (the built-in debate allows 256), so a run stays short on a CPU."""
    from sparring.agents import model_client
    from sparring.protocols import _play

    def capped(models):
        return lambda role, spec: model_client(models[role], **{**spec.sampling.settings(), "max_tokens": 24})

    monkeypatch.setattr(_play, "spec_clients", capped)


@pytest.mark.slow
def test_cli_runs_on_the_embedded_model(tmp_path, few_tokens):
    """A short real run of both commands: a Taboo win rate (2 games, 1 per side) and arithmetic:4 accuracy."""
    short = load_protocol("adversarial_taboo").text
    assert "max_tokens: 48" in short and "max_turns: 10" in short  # else the games below are not short
    short = short.replace("max_tokens: 48", "max_tokens: 12").replace("max_turns: 10", "max_turns: 2")
    game = tmp_path / "taboo_short.yaml"
    game.write_text(short)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "winrate", "--protocol", str(game), "--model", MODEL, "--opponent", MODEL,
                                 "--games", "2", "--out", str(tmp_path / "wr")])
    assert result.exit_code == 0, result.output
    assert "win" in result.output and "[" in result.output and "attacker" in result.output
    saved = json.loads((tmp_path / "wr" / "winrate.json").read_text())
    assert saved["games"] == 2 and set(saved["by_role"]) == {"attacker", "defender"}
    assert saved["wins"] + saved["losses"] + saved["ties"] + saved["errors"] == 2
    episodes = list(read_transcripts(tmp_path / "wr" / "transcripts.jsonl", strict=True))
    assert len(episodes) == 2 and all(e.status == "ok" and e.messages[0].token_ids for e in episodes)

    result = runner.invoke(app, ["eval", "qa", "--questions", "arithmetic:4", "--model", MODEL,
                                 "--out", str(tmp_path / "qa")])
    assert result.exit_code == 0, result.output
    assert "single agent" in result.output and "%" in result.output
    accuracy = json.loads((tmp_path / "qa" / "accuracy.json").read_text())
    single = accuracy["methods"]["single_agent"]
    assert accuracy["questions"] == single["total"] == 4
    assert 0 <= single["ci"][0] <= single["accuracy"] <= single["ci"][1] <= 1

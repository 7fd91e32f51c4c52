"""The HTML report: built from a self-play-shaped run of real games, checked in real headless Chromium.

Chromium is the Debian package (``/usr/bin/chromium``) driven by playwright, with no browser
download. Without it these browser tests skip, unless ``SPARRING_REQUIRE_CHROMIUM=1`` (CI),
where they fail. The full-page screenshot of the self-play report is also copied to
``$TMPDIR/report_screenshot.png`` for a person to look at.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparring.cli import app
from sparring.evaluation import Tally, WinRate, compare_to_baseline, wilson_interval
from sparring.protocols import load_protocol, parse_protocol, play
from sparring.report import ReportError, build_report
from sparring.report._data import PlayStats, playing_seconds
from sparring.transcripts import Episode, Outcome, ProtocolRef, TranscriptMessage, TranscriptWriter, read_transcripts

MODEL = "hf:smollm2-135m"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(tempfile.gettempdir()) / "report_screenshot.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, episodes: list[Episode]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with TranscriptWriter(path) as writer:
        for episode in episodes:
            writer.write(episode)


def _winrate(wins: int, losses: int, ties: int, model: str) -> dict:
    result = WinRate(model, MODEL, "adversarial_taboo", total=Tally(wins + losses + ties, wins, losses, ties))
    result.by_role = {"attacker": Tally(12, wins // 2, losses // 2, 12 - wins // 2 - losses // 2)}
    return result.to_dict()


@pytest.fixture(scope="module")
def selfplay_run(tmp_path_factory) -> Path:
    """A self-play run directory of 2 epochs: real games of the embedded model, hand-written results around them.

    One play of 8 short Taboo games (16 tokens a turn, 4 turns) is split into the two epochs'
    games; epoch 2's are relabelled as played by epoch 1's adapter, two of them also serve as
    its evaluation games; epoch.json, winrate.json and training_log.json follow the agreed layout.
    """
    root = tmp_path_factory.mktemp("selfplay")
    text = load_protocol("adversarial_taboo").text
    assert "max_tokens: 48" in text and "max_turns: 10" in text  # else the games below are not short
    text = text.replace("max_tokens: 48", "max_tokens: 16").replace("max_turns: 10", "max_turns: 4")
    played = tmp_path_factory.mktemp("played")
    asyncio.run(play(parse_protocol(text), 8, played, {"attacker": MODEL, "defender": MODEL}, seed=5))
    episodes = list(read_transcripts(played / "transcripts.jsonl", strict=True))
    if all(e.outcome.winner is None for e in episodes) or all(e.outcome.winner is not None for e in episodes):
        # The model's games differ from machine to machine; the report's filters need both kinds, so one
        # game's verdict is rewritten (the report only renders what the transcript says).
        flipped = (Outcome(winner="attacker", reason="defender said the word") if episodes[0].outcome.winner is None
                   else Outcome(winner=None, reason="tie"))
        episodes[0] = episodes[0].model_copy(update={"outcome": flipped})
    decisive = [e for e in episodes if e.outcome.winner is not None]
    ties = [e for e in episodes if e.outcome.winner is None]
    latest = (decisive[:1] + ties[:1] + decisive[1:] + ties[1:])[:4]  # epoch 2 shows a decisive game and a tie
    episodes = [e for e in episodes if e not in latest] + latest
    adapter = f"{MODEL}+{root}/epoch_1/adapter"
    (root / "selfplay.json").write_text(json.dumps({
        "protocol": "adversarial_taboo", "model": MODEL, "epochs": 2, "games": 4, "eval_games": 24, "seed": 5,
        "train": {"max_steps": 8, "lr": 2e-6, "kl_coeff": 0.2}}))
    for k, (part, model, (w, l, t)) in enumerate([(episodes[:4], MODEL, (9, 11, 4)),
                                                  (episodes[4:], adapter, (13, 8, 3))], start=1):
        epoch = root / f"epoch_{k}"
        part = [e.model_copy(update={"models": {"attacker": model, "defender": model}}) for e in part]
        _write(epoch / "games" / "transcripts.jsonl", part)
        _write(epoch / "eval" / "transcripts.jsonl",  # games of the other epoch, relabelled
               [e.model_copy(update={"id": f"eval-{e.id}", "models": {"attacker": adapter, "defender": MODEL}})
                for e in episodes[4 * (2 - k): 4 * (2 - k) + 2]])
        winrate = _winrate(w, l, t, adapter)
        (epoch / "eval" / "winrate.json").write_text(json.dumps(winrate))
        baseline = _winrate(6, 6, 12, MODEL)
        log = [{"step": s, "loss": round(1.2 / s ** 0.4 - 0.1 * k, 4), "learning_rate": 2e-6, "kl": 0.01 * s,
                "ratio": 1 + 0.002 * s, "clipped": 0.0, "grad_norm": 2.0 / s} for s in range(1, 9)]
        (epoch / "adapter").mkdir()
        (epoch / "adapter" / "training_log.json").write_text(json.dumps(log + [{"step": 8, "train_loss": 0.8}]))
        reasons: dict = {}
        for e in part:
            reasons[e.outcome.reason] = reasons.get(e.outcome.reason, 0) + 1
        (epoch / "epoch.json").write_text(json.dumps({
            "epoch": k, "model": model, "trained": True, "note": "",
            "play": {"games": 4, "errors": 0, "reasons": reasons, "wins": {}, "completion_tokens": 0, "seconds": 0,
                     "tokens_per_second": 0, "episodes_per_minute": 0, "mean_turns": 0, "decisive_share": 0.5,
                     "rule_break_share": 0.25},
            "data": {"kind": "spag", "episodes": 4, "games_used": 2, "rows": 6, "game_rows": 6, "sft_rows": 0,
                     "dropped": {"tie": 2}},
            "train": {"steps": 8, "final_loss": log[-1]["loss"], "seconds": 12.5},
            "eval": {**winrate, "evidence": compare_to_baseline(winrate, baseline)}}))
    return root


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system package) through playwright; skips without it unless CI requires it."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM:
        missing = "chromium is not installed (Debian: apt-get install -y chromium)"
    if missing:
        if os.environ.get("SPARRING_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"SPARRING_REQUIRE_CHROMIUM=1 but {missing}")
        pytest.skip(missing)
    with sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _open(browser, html: Path):
    """A page showing ``html``, with every request and console message it made recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.requests, page.console_messages = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda message: page.console_messages.append(message.text))
    page.goto(html.as_uri())
    return page


@pytest.mark.slow
def test_selfplay_report_renders_in_headless_chromium(selfplay_run, browser, tmp_path):
    summary = build_report(selfplay_run, tmp_path / "report.html")
    assert summary.charts == ["winrate", "outcomes", "turns_tokens", "throughput", "loss", "training_metrics"]
    assert summary.groups == 2 and summary.episodes == 8 and summary.transcripts >= 2
    assert summary.verdict.startswith("verdict (epoch 2): no significant difference from the start model (attacker: ")
    page = _open(browser, summary.output)
    try:
        svgs = page.locator("figure.chart svg")
        assert svgs.count() == len(summary.charts)
        for index in range(svgs.count()):
            box = svgs.nth(index).bounding_box()
            assert box and box["width"] > 200 and box["height"] > 100
        assert page.locator("#chart-winrate svg path").count() > 10  # drawn, not an empty frame
        assert page.locator("#epochs tbody th").all_inner_texts() == ["epoch 1", "epoch 2"]
        assert "win 54% [35%, 72%]" in page.locator("#epochs").inner_text()
        evidence = page.locator("#evidence").inner_text()
        assert "attacker" in evidence and "50%" in evidence and "25%" in evidence  # decided and broken-rule shares
        assert "13 wins, 8 losses, p = " in evidence and page.locator("#verdict").inner_text() == summary.verdict
        assert page.locator("#chart-training_metrics svg path").count() > 8

        attacker = page.locator('li.msg[data-role="attacker"] .bubble')
        defender = page.locator('li.msg[data-role="defender"] .bubble')
        assert attacker.count() > 0 and defender.count() > 0
        colour = "el => getComputedStyle(el).borderLeftColor"
        assert attacker.first.evaluate(colour) != defender.first.evaluate("el => getComputedStyle(el).borderRightColor")
        shown = page.locator(".conversation").first
        episode_id = shown.locator(".id").inner_text()
        target = next(e for e in read_transcripts(selfplay_run / "epoch_2" / "games" / "transcripts.jsonl")
                      if e.id == episode_id).variables["target"]
        assert shown.locator(".facts .target dd").inner_text() == target and shown.locator(".facts .target").is_visible()
        assert shown.locator(".verdict .badge").is_visible()
        assert page.locator('.verdict[data-outcome="tie"]').count() + page.locator('.verdict[data-outcome="win"]').count() >= 2

        assert all(url.startswith("file://") for url in page.requests), page.requests  # no network
        assert not page.console_messages, page.console_messages  # no CSP violations, no errors
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(PNG_SIGNATURE)
        shutil.copyfile(shot, SCREENSHOT)
    finally:
        page.close()


@pytest.mark.slow
def test_all_transcripts_filter_by_epoch_set_outcome_and_winner(selfplay_run, browser, tmp_path):
    """Every episode is listed; the radio filters (CSS only, no script) show exactly the matching ones."""
    summary = build_report(selfplay_run, tmp_path / "report.html")
    played = {k: list(read_transcripts(selfplay_run / f"epoch_{k}" / "games" / "transcripts.jsonl")) for k in (1, 2)}
    evaluated = {k: list(read_transcripts(selfplay_run / f"epoch_{k}" / "eval" / "transcripts.jsonl")) for k in (1, 2)}
    everything = [e for k in (1, 2) for e in played[k] + evaluated[k]]
    page = _open(browser, summary.output)
    try:
        rows = page.locator("#all-transcripts details.t")
        visible = lambda: [rows.nth(i).locator(".mono").first.inner_text()  # noqa: E731
                           for i in range(rows.count()) if rows.nth(i).is_visible()]
        assert sorted(visible()) == sorted(e.id for e in everything)

        page.locator("label", has=page.locator("input[name=f-e]")).filter(has_text="epoch 2").click()
        assert sorted(visible()) == sorted(e.id for e in played[2] + evaluated[2])
        page.locator("label", has=page.locator("input[name=f-s]")).filter(has_text="evaluation").click()
        assert sorted(visible()) == sorted(e.id for e in evaluated[2])

        page.locator("#f-e-all").check()
        page.locator("#f-s-all").check()
        ties = [e.id for e in everything if e.outcome.winner is None]
        page.locator("label", has=page.locator("input[name=f-w]")).filter(has_text="tie").click()
        assert ties and sorted(visible()) == sorted(ties)
        reason = everything[0].outcome.reason
        page.locator("#f-w-all").check()
        page.locator("label", has=page.locator("input[name=f-o]")).filter(has_text=reason).first.click()
        assert sorted(visible()) == sorted(e.id for e in everything if e.outcome.reason == reason)

        first = rows.first
        first.locator("summary").click()  # opens to the conversation's text
        assert everything[0].messages[-1].content.strip()[:20] in first.inner_text()
        assert not page.console_messages, page.console_messages
    finally:
        page.close()


@pytest.mark.slow
def test_win_rate_by_role_assignment(selfplay_run, tmp_path):
    summary = build_report(selfplay_run, tmp_path / "report.html")
    html = summary.output.read_text()
    table = html[html.index('id="role-split"'):html.index("</table>", html.index('id="role-split"'))]
    # epoch 2: 13 wins, 8 losses, 3 ties overall; its attacker games 6 wins, 4 losses, 2 ties of 12
    low, high = wilson_interval(6, 12)
    assert "attacker" in table and f"50% [{low:.0%}, {high:.0%}]" in table


@pytest.mark.slow
def test_png_charts_beside_the_report_are_valid_images(selfplay_run, tmp_path):
    from PIL import Image

    summary = build_report(selfplay_run, tmp_path / "out" / "run.html")
    assert summary.png_dir == tmp_path / "out" / "run_files"
    assert sorted(p.name for p in summary.png_dir.iterdir()) == sorted(f"{name}.png" for name in summary.charts)
    for png in summary.png_files:
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.width > 400 and image.height > 200
    html = summary.output.read_text()
    assert html.count("<svg") == len(summary.charts) and "<script" not in html
    assert "http://" not in html.replace("http://www.w3.org/", "") and "https://" not in html


@pytest.mark.slow
def test_plain_play_directory(selfplay_run, tmp_path):
    shutil.copyfile(selfplay_run / "epoch_1" / "games" / "transcripts.jsonl", tmp_path / "transcripts.jsonl")
    summary = build_report(tmp_path, tmp_path / "report.html")
    assert summary.charts == ["outcomes", "turns_tokens", "throughput"]
    assert summary.groups == 1 and summary.episodes == 4 and summary.transcripts >= 1
    assert not any("win rate" in note or "epoch" in note for note in summary.missing), summary.missing
    html = summary.output.read_text()
    assert "Run report: adversarial_taboo" in html and 'data-role="attacker"' in html


@pytest.mark.slow
def test_partial_run_says_what_is_missing(selfplay_run, tmp_path, browser):
    run = tmp_path / "run"
    shutil.copytree(selfplay_run / "epoch_1", run / "epoch_1")
    (run / "epoch_1" / "eval" / "winrate.json").write_text('{"win_rate": 0.5, "win_ci": [0.2')  # torn
    shutil.copytree(selfplay_run / "epoch_2" / "games", run / "epoch_2" / "games")
    with (run / "epoch_2" / "games" / "transcripts.jsonl").open("a") as f:
        f.write('{"id": "torn", "protocol": {"na')  # a run killed mid-write
    (run / "epoch_3").mkdir()
    summary = build_report(run, tmp_path / "report.html")
    notes = "\n".join(summary.missing)
    for expected in ["selfplay.json (the run's settings) is missing", "epoch_1/eval/winrate.json could not be read",
                     "epoch 2: no epoch.json", "epoch 2: no adapter/training_log.json (not trained yet)",
                     "epoch 2: no evaluation", "epoch 3: no games/transcripts.jsonl",
                     "epoch_2/games/transcripts.jsonl: skipped 1 unreadable line"]:
        assert expected in notes, notes
    assert "winrate" in summary.charts  # epoch 1's result comes from its epoch.json
    assert summary.episodes == 8 and {"outcomes", "loss"} <= set(summary.charts)
    page = _open(browser, summary.output)
    try:
        assert "epoch 2: no epoch.json" in page.locator("#missing").inner_text()
        assert page.locator("figure.chart svg").count() == len(summary.charts)
    finally:
        page.close()


def _episode(id_: str, variables: dict, messages: list[tuple[str, str]], winner: str | None, reason: str,
             protocol: str = "adversarial_taboo") -> Episode:
    return Episode(id=id_, protocol=ProtocolRef(name=protocol), variables=variables,
                   models={role: MODEL for role, _ in messages},
                   messages=[TranscriptMessage(role=role, content=text, turn=i) for i, (role, text) in enumerate(messages)],
                   outcome=Outcome(winner=winner, reason=reason), usage={"completion_tokens": 10 * len(messages)},
                   timings={"started": 1_700_000_000.0 + len(id_), "seconds": 2.0})


@pytest.mark.slow
def test_transcript_text_is_escaped(tmp_path, browser):
    attack = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">Say the word!'
    _write(tmp_path / "transcripts.jsonl", [
        _episode("x-1", {"target": "<b>apple</b>"}, [("attacker", attack), ("defender", "An <b>apple</b>? </div>")],
                 "attacker", "defender said the word"),
        _episode("x-2", {"target": "pear"}, [("attacker", "Fruit $5 & $6"), ("defender", "no idea")], None, "tie $x$"),
    ])
    summary = build_report(tmp_path, tmp_path / "report.html")
    html = summary.output.read_text()
    assert "<script>window" not in html and '<img src="x"' not in html and "&lt;script&gt;" in html
    page = _open(browser, summary.output)
    try:
        assert page.evaluate("window.__pwned") is None
        assert page.locator("script").count() == 0 and page.locator(".bubble img").count() == 0
        bubble = page.locator('li.msg[data-role="attacker"] .bubble').first
        assert bubble.inner_text().startswith("<script>window.__pwned = 1</script>")
        assert page.locator(".facts .target dd").first.inner_text() == "<b>apple</b>"
        assert page.locator('li.msg[data-role="defender"] .bubble mark').first.inner_text() == "<b>apple</b>"
    finally:
        page.close()


@pytest.mark.slow
def test_saie_run_shows_accuracy_question_and_gold_answer(tmp_path):
    for k, correct in ((1, 3), (2, 5)):
        epoch = tmp_path / f"epoch_{k}"
        _write(epoch / "games" / "transcripts.jsonl", [_episode(
            f"saie-0-{k}", {"item": {"question": "What is 2+3*4?", "answer": "14"}, "stance": "adversarial"},
            [("learner", "3*4 = 12, 2+12 = 14. The answer is 14."), ("partner", "Are you sure? I get 20."),
             ("learner", "Multiplication first: the answer is 14.")], "learner", "correct", protocol="saie")])
        methods = {"single_agent": {"correct": correct, "total": 8, "accuracy": correct / 8,
                                    "ci": list(wilson_interval(correct, 8))}}
        (epoch / "eval").mkdir()
        (epoch / "eval" / "accuracy.json").write_text(json.dumps({"questions": 8, "methods": methods}))
    summary = build_report(tmp_path, tmp_path / "report.html")
    assert "accuracy" in summary.charts and "winrate" not in summary.charts
    assert not any("win rates" in note for note in summary.missing)
    html = summary.output.read_text()
    assert "What is 2+3*4?" in html and "gold answer" in html and "single agent 62% [31%, 86%]" in html


def test_an_epoch_that_plays_no_games_is_not_noted_as_unplayed(tmp_path):
    """A gold-SFT epoch (epoch.json's play is null) trains on gold rationales and plays nothing; an epoch
    still running (no epoch.json) is noted."""
    methods = {"learner_prompt": {"correct": 5, "total": 8, "accuracy": 5 / 8, "ci": list(wilson_interval(5, 8))}}
    (tmp_path / "epoch_1" / "eval").mkdir(parents=True)
    (tmp_path / "epoch_1" / "epoch.json").write_text(json.dumps({
        "epoch": 1, "model": MODEL, "trained": True, "note": "", "next_model": MODEL, "play": None,
        "data": {"kind": "sft", "rows": 8}, "train": None, "eval": {"questions": 8, "methods": methods}}))
    (tmp_path / "epoch_2").mkdir()
    notes = "\n".join(build_report(tmp_path, tmp_path / "report.html").missing)
    assert "epoch 1: no games" not in notes and "epoch 2: no games/transcripts.jsonl (no games played yet)" in notes


@pytest.mark.slow
def test_report_command(selfplay_run, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["report", "--help"]).exit_code == 0
    run = tmp_path / "run"
    shutil.copytree(selfplay_run, run)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.html").is_file() and (run / "report_files" / "winrate.png").is_file()
    assert "report:" in result.output
    empty = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert empty.exit_code == 1 and "not a directory" in empty.output
    with pytest.raises(ReportError, match="neither epoch_K"):
        build_report(tmp_path / "run" / "epoch_1" / "adapter", tmp_path / "r.html")


def test_malformed_files_are_noted_not_fatal(tmp_path):
    files = {
        "selfplay.json": "[1]",
        "epoch_0/adapter/training_log.json": '[{"step": 1, "loss": 2.0}, {"step": 2, "loss": "nan"}, {"loss": 1.5}]',
        "epoch_1/epoch.json": json.dumps({"epoch": 1, "model": None, "trained": False, "play": None, "data": None,
                                          "note": "no decisive games: no training data", "train": None, "eval": None}),
        "epoch_1/eval/winrate.json": '{"win_rate": "high", "win_ci": null}',
        "epoch_2/epoch.json": "[1, 2]",
        "epoch_2/adapter/training_log.json": '{"loss": 1}',
        "epoch_2/eval/accuracy.json": '{"methods": {"single_agent": {"accuracy": null}}}',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    summary = build_report(tmp_path, tmp_path / "report.html")
    notes = "\n".join(summary.missing)
    for expected in ["selfplay.json is not a JSON object",
                     "epoch 1: no adapter/training_log.json (not trained (its note says why))",
                     "epoch_1/eval/winrate.json holds no usable figures", "epoch_2/epoch.json is not a JSON object",
                     "epoch_2/adapter/training_log.json is not a JSON list", "no transcripts to show"]:
        assert expected in notes, notes
    assert summary.charts == ["loss"] and summary.episodes == 0
    assert "no decisive games: no training data" in summary.output.read_text()


def test_unreadable_transcripts_are_an_error_and_a_directory_output_gets_report_html(tmp_path):
    runner = CliRunner()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "transcripts.jsonl").write_text("not json\n")
    result = runner.invoke(app, ["report", str(tmp_path / "garbage")])
    assert result.exit_code == 1 and "no readable episode" in result.output
    assert not (tmp_path / "garbage" / "report.html").exists()
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "transcripts.jsonl").write_text("")  # a play not yet started: an empty report
    (tmp_path / "reports").mkdir()
    result = runner.invoke(app, ["report", str(tmp_path / "started"), "-o", str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "report.html").is_file() and (tmp_path / "reports" / "report_files").is_dir()
    result = runner.invoke(app, ["report", str(tmp_path / "started"), "-o", str(tmp_path / "new" / "folder")])
    assert result.exit_code == 0, result.output  # a path that is not FILE.html is a folder, made when missing
    assert (tmp_path / "new" / "folder" / "report.html").is_file()


def test_playing_time_leaves_out_the_gap_of_a_stop_and_resume():
    """A run stopped and resumed an hour later: its speed is over the time games were in flight."""
    games = [_episode(f"g-{i}", {"target": "pear"}, [("attacker", "a"), ("defender", "b")], None, "tie") for i in range(4)]
    for game, (start, seconds) in zip(games, [(0.0, 10.0), (2.0, 3.0), (3600.0, 4.0), (3602.0, 6.0)]):
        game.timings = {"started": 1_700_000_000.0 + start, "seconds": seconds}
    stats = PlayStats.of(games)
    assert stats.seconds == pytest.approx(10.0 + 8.0)  # not the 3,608 s from the first start to the last end
    assert stats.episodes_per_minute == pytest.approx(60 * 4 / 18.0)
    assert playing_seconds([]) == 0.0

"""Build the HTML report of a run: read it, draw the charts, pick transcripts, render the template."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _charts
from ._conversations import pick
from ._data import Group, ReportError, Run, load_run
from ._listing import role_split, transcript_list

TEMPLATE = "report.html.j2"
CHARTS = [  # (name, function, title, caption, what is missing without it)
    ("winrate", _charts.winrate, "Win rate against the opponent",
     "Each epoch's model against the opponent, half the games in each role; bars are 95% Wilson intervals.",
     "no evaluation win rates (eval/winrate.json)"),
    ("accuracy", _charts.accuracy, "Accuracy on held-out questions",
     "Per epoch and method; bars are 95% Wilson intervals.", None),
    ("outcomes", _charts.outcomes, "How the games ended",
     "Share of each outcome reason among the episodes played.", "no played episodes"),
    ("turns_tokens", _charts.turns_tokens, "Turns and tokens",
     "Per episode: box = middle half, line = median, diamond = mean.", None),
    ("throughput", _charts.throughput, "Throughput",
     "Completion tokens per second and episodes per minute of play.", "no timings to measure throughput"),
    ("loss", _charts.loss, "Training loss",
     "The trainer's logged loss per step (adapter/training_log.json).", "no training logs"),
    ("training_metrics", _charts.training_metrics, "SPAG training metrics",
     "Per logged step: the mean KL term and ratio to the reference over game samples, the share of samples "
     "whose ratio was clipped, and the gradient norm.", None),
]


@dataclass
class ReportSummary:
    """What `build_report` wrote.

    Args:
        output (`Path`): the HTML file.
        png_dir (`Path`): the folder of the PNG charts (beside the HTML: ``report.html`` -> ``report_files/``).
        png_files (`list[Path]`): the charts as PNG, one per drawn chart.
        charts (`list[str]`): names of the drawn charts (``winrate``, ``outcomes``, ...).
        groups (`int`): epochs shown (1 for a plain run).
        episodes (`int`): played episodes read.
        transcripts (`int`): conversations shown.
        missing (`list[str]`): what the run lacked, in words (also shown on the page).
    """

    output: Path
    png_dir: Path
    png_files: list[Path] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    groups: int = 0
    episodes: int = 0
    transcripts: int = 0
    missing: list[str] = field(default_factory=list)
    verdict: str | None = None


def build_report(run_dir: Path, output: Path) -> ReportSummary:
    """Write a self-contained HTML report of a run, and its charts as PNG files beside it.

    The page holds everything inline (CSS, charts as SVG), runs no script and loads nothing,
    so it opens from disk anywhere. A self-play run (``epoch_K/`` folders) shows win rate per
    epoch with 95% intervals, outcome reasons, turns and tokens, throughput, training loss,
    accuracy (SAIE) and a few transcripts of the latest epoch; a plain ``sparring play`` (or
    ``sparring eval``) directory shows what its transcripts give. Missing pieces are listed,
    never fatal.

    Args:
        run_dir (`Path`): the run directory.
        output (`Path`): the HTML file to write; PNGs go to ``OUTPUT_STEM_files/`` beside it.

    Returns:
        `ReportSummary`: the files written and what was missing.

    Raises:
        `ReportError`: ``run_dir`` holds nothing to report, or the output cannot be written.

    Example:
        >>> summary = build_report(Path("runs/selfplay"), Path("runs/selfplay/report.html"))  # doctest: +SKIP
        >>> summary.png_files[0].name  # doctest: +SKIP
        'winrate.png'
    """
    run = load_run(Path(run_dir))
    output = Path(output)
    png_dir = output.with_name(f"{output.stem}_files")
    try:
        png_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create {png_dir} for the PNG charts: {error}") from error
    missing = list(run.missing)
    charts = []
    saie = any(g.accuracy for g in run.groups)
    for name, draw, title, caption, absent in CHARTS:
        figure = draw(run.groups)
        if figure is None:
            (png_dir / f"{name}.png").unlink(missing_ok=True)  # from an earlier report of this run
            # A plain run has no opponent and no training; a SAIE run is scored by accuracy.
            expected = name == "outcomes" or run.kind == "selfplay" and not (name == "winrate" and saie)
            if absent and expected:
                missing.append(f"chart '{title}' left out: {absent}")
            continue
        charts.append(_charts.export(figure, name, title, caption, png_dir))
    conversations = _pick(run, missing)
    html = _render(run, charts, conversations, missing)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(html, encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write the report to {output}: {error}") from error
    return ReportSummary(output=output, png_dir=png_dir, png_files=[c.png for c in charts],
                         charts=[c.name for c in charts], groups=len(run.groups), episodes=run.episodes,
                         transcripts=len(conversations), missing=missing, verdict=_verdict(run))


def _pick(run: Run, missing: list[str]):
    conversations = pick(run)
    if not conversations:
        missing.append("no transcripts to show")
    elif not any(c.winner is None and c.status == "ok" for c in conversations):
        missing.append("no tie among the latest epoch's games to show")
    return conversations


def _render(run: Run, charts, conversations, missing: list[str]) -> str:
    from jinja2 import PackageLoader, TemplateNotFound, select_autoescape
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(loader=PackageLoader("sparring.report", "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct
    try:
        template = env.get_template(TEMPLATE)
    except TemplateNotFound as error:  # a broken install: the template is package data
        raise ReportError(f"the report template {TEMPLATE} cannot be loaded ({error}); reinstall sparring") from error
    from markupsafe import Markup

    return template.render(
        run=run, title=_title(run), generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        cards=_cards(run), rows=[_row(g, run.short) for g in run.groups], settings=_settings(run),
        evidence=_evidence(run), verdict=_verdict(run), role_split=role_split(run), listing=transcript_list(run),
        charts=[{"name": c.name, "title": c.title, "caption": c.caption, "svg": Markup(c.svg),
                 "png": f"{c.png.parent.name}/{c.png.name}"} for c in charts],
        conversations=conversations, missing=missing, bench=_bench_table(run),
    )


def _title(run: Run) -> str:
    if run.kind == "bench":
        return f"Benchmark report: {run.path.name or run.path}"
    protocol = run.protocol or "unknown protocol"
    return f"{'Self-play' if run.kind == 'selfplay' else 'Run'} report: {protocol}"


def _pct(value: Any) -> str:
    try:
        return f"{float(value):.0%}"
    except (TypeError, ValueError):
        return "–"


def _ci(ci: Any) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def _with_ci(rate: Any, ci: Any) -> str:
    return "–" if rate is None else f"{_pct(rate)} {_ci(ci)}".strip()


def _cards(run: Run) -> list[tuple[str, str, str]]:
    """(label, value, detail) for the summary strip at the top."""
    games = sum(g.stats.games for g in run.groups)
    judged = sum(g.stats.judged for g in run.groups)
    decisive = sum(g.stats.decisive for g in run.groups)
    cards = [("episodes", str(games), f"{len(run.groups)} epoch(s)" if run.kind == "selfplay" else run.path.name),
             ("decisive", _pct(decisive / judged) if judged else "–", f"{decisive} of {judged} judged")]
    latest_win = next((g for g in reversed(run.groups) if g.winrate), None)
    if latest_win:
        w = latest_win.winrate
        cards.append(("win rate", _pct(w.get("win_rate")), f"{latest_win.label}, 95% CI {_ci(w.get('win_ci'))}"))
    latest_acc = next((g for g in reversed(run.groups) if g.accuracy), None)
    if latest_acc:
        methods = latest_acc.accuracy.get("methods") or {}
        for method, score in list(methods.items())[:1]:
            cards.append(("accuracy", _pct(score.get("accuracy")), f"{method.replace('_', ' ')}, {latest_acc.label}"))
    timed = [g for g in run.groups if g.stats.seconds]
    if timed:
        tokens = sum(g.stats.completion_tokens for g in timed)
        seconds = sum(g.stats.seconds for g in timed)
        per_minute = 60 * sum(g.stats.games for g in timed) / seconds
        cards.append(("throughput", f"{tokens / seconds:.1f} tok/s", f"{per_minute:.1f} episodes/min"))
    trained = [row for row in map(_row, run.groups) if row["loss"] != "–"]
    if trained:
        cards.append(("final loss", trained[-1]["loss"], f"training of {trained[-1]['label']}"))
    return cards


def _row(group: Group, short=str) -> dict[str, Any]:
    info = group.info or {}
    train = info.get("train") if isinstance(info.get("train"), dict) else {}
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    stats = group.stats
    evaluation = "–"
    if group.winrate:
        evaluation = "win " + _with_ci(group.winrate.get("win_rate"), group.winrate.get("win_ci"))
    elif group.accuracy and isinstance(group.accuracy.get("methods"), dict):
        evaluation = "; ".join(f"{k.replace('_', ' ')} {_with_ci(v.get('accuracy'), v.get('ci'))}"
                               for k, v in group.accuracy["methods"].items())
    trained = info.get("trained")
    final_loss = train.get("final_loss") if train else None
    if final_loss is None and group.losses:
        final_loss = group.losses[-1][1]
    return {
        "label": group.label,
        "model": short(info.get("model") or ", ".join(sorted({m for e in group.games for m in e.models.values()}))) or "–",
        "trained": "–" if trained is None else ("yes" if trained else "no"),
        "games": stats.games, "errors": stats.errors,
        "decisive": f"{stats.decisive}/{stats.judged}" if stats.judged else "–",
        "wins": ", ".join(f"{role} {n}" for role, n in stats.wins.most_common()) or "–",
        "rows": data.get("rows", "–") if data else "–",
        "steps": train.get("steps", "–") if train else "–",
        "loss": f"{final_loss:.3g}" if isinstance(final_loss, (int, float)) else "–",
        "eval": evaluation,
        "note": str(info.get("note") or ""),
    }


def _verdict(run: Run) -> str | None:
    """The latest evaluated epoch's verdict against the start model, as one line."""
    group = next((g for g in reversed(run.groups) if g.evidence), None)
    return f"verdict ({group.label}): {group.evidence['verdict']}" if group else None


def _p(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, (int, float)) else "–"


def _evidence(run: Run) -> list[dict[str, Any]]:
    """Per epoch and role: the share of decided games and of broken rules in play, the trained model's win
    rate against the start model beside the start model's own in that role, and the p-values."""
    rows = []
    for group in run.groups:
        evidence, play = group.evidence, (group.info or {}).get("play")
        play = play if isinstance(play, dict) else {}
        if not evidence:
            continue
        if "only_trained" in evidence:  # accuracy on held-out questions, paired (SAIE)
            n = evidence.get("questions") or 0
            rows.append({"label": group.label, "role": "learner, alone", "decisive": "", "rule_breaks": "",
                         "trained": f"{_pct(evidence['trained_correct'] / n if n else None)} of {n}",
                         "baseline": f"{_pct(evidence['baseline_correct'] / n if n else None)} of {n}",
                         "p": _p(evidence.get("p_value")),
                         "overall": f"only trained right: {evidence['only_trained']}, only start right: "
                                    f"{evidence['only_baseline']} (McNemar)", "verdict": evidence["verdict"]})
            continue
        overall = evidence.get("overall") or {}
        first = True
        for role, entry in (evidence.get("roles") or {}).items():
            rows.append({
                "label": group.label if first else "", "role": role,
                "decisive": _pct(play.get("decisive_share", group.stats.decisive_share)) if first else "",
                "rule_breaks": _pct(play.get("rule_break_share")) if first else "",
                "trained": f"{_with_ci(entry.get('win_rate'), entry.get('win_ci'))} of {entry.get('games', '–')}",
                "baseline": (f"{_with_ci(entry.get('baseline_rate'), entry.get('baseline_ci'))} of "
                             f"{entry.get('baseline_games', '–')}") if "baseline_rate" in entry else "–",
                "p": _p(entry.get("p_value")),
                "overall": (f"{overall.get('wins', '–')} wins, {overall.get('losses', '–')} losses, "
                            f"p = {_p(overall.get('p_value'))}") if first else "",
                "verdict": evidence["verdict"] if first else "",
            })
            first = False
    return rows


def _bench_table(run: Run) -> dict[str, Any] | None:
    """The benchmark table: a row per ``bench.json`` (the start model, then each epoch), a column per task and
    metric (the tasks asked for: a group's aggregate, not its subtasks), cells ``value ± stderr`` with the change
    from the first row. None without any ``bench.json``."""
    from ..evaluation._bench import bench_rows

    if not run.benches:
        return None
    columns: list[tuple[str, str]] = []
    tables = []
    for entry in run.benches:
        asked = set(entry.data.get("tasks") or [])
        rows = bench_rows(entry.data)
        shown = [row for row in rows if row.task in asked] or rows  # a task given as a YAML path: all rows
        tables.append({(row.task, row.metric): row for row in shown})
        columns += [key for key in tables[-1] if key not in columns]
    first = tables[0]
    body = []
    for entry, cells in zip(run.benches, tables):
        shown = []
        for key in columns:
            row, before = cells.get(key), first.get(key)
            change = ""
            if row is not None and row.value is not None and before is not None and before.value is not None \
                    and cells is not first:
                change = f"{row.value - before.value:+.3f}"
            shown.append({"text": row.text() if row else "–", "change": change})
        limit = entry.data.get("limit")
        body.append({"label": entry.label, "model": run.short(str(entry.data.get("model") or "–")),
                     "limit": "all" if limit is None else str(limit), "cells": shown})
    return {"columns": [{"task": task, "metric": metric} for task, metric in columns], "rows": body,
            "first": run.benches[0].label,
            "version": ", ".join(sorted({str(e.data.get("lm_eval_version", "?")) for e in run.benches}))}


def _settings(run: Run) -> list[tuple[str, str]]:
    if not run.settings:
        return []
    shown = []
    for key, value in run.settings.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "–"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "–"
        shown.append((str(key), str(value)))
    return shown


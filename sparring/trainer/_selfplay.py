"""The self-play loop: play, judge, build data, train, evaluate; one directory per epoch.

Each epoch K of ``sparring selfplay`` writes ``OUT/epoch_K/``:

- ``games/transcripts.jsonl``: N episodes with the current model in every role (SAIE: the
  learner; the partner stays the starting model, frozen);
- ``data/``: the epoch's training set (SPAG rows, or SAIE learner turns);
- ``adapter/``: the model trained on it, continuing the previous epoch's adapter, so every
  epoch is one base plus one adapter; the next epoch plays ``BASE+OUT/epoch_K/adapter``;
- ``eval/``: the new model against the starting model on held-out variables (games), or its
  accuracy on held-out questions (SAIE);
- ``bench.json``: with ``--bench-tasks``, the trained model's lm-eval benchmark scores
  (`sparring.evaluation._bench`); the starting model's are in ``OUT/baseline/bench.json``;
- ``epoch.json``: what happened, written last: an epoch with it is done.

Every stage checks what an earlier, interrupted run left (transcripts resume, a finished data
set or adapter is kept), so running the same command again goes on where it stopped.
An optional imitation stage (``epoch_0``) first fine-tunes on given transcripts, e.g. games of
an API model.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Collection

from ..errors import TrainingError
from ..evaluation._bench import read_bench, require_lm_eval, same_settings
from ..evaluation._learner import LEARNER_PROMPT, correct_by_question, eval_learner
from ..evaluation._significance import compare_accuracy, compare_to_baseline
from ..protocols import Protocol, check_variable_names, load_protocol, play
from ..runs import (ACCURACY_FILE, ADAPTER_DIR, BASELINE_DIR, BENCH_FILE, DATA_DIR, DATA_SUMMARY_FILE, EPOCH_FILE,
                    EVAL_DIR, GAMES_DIR, SELFPLAY_FILE, TRAINING_LOG_FILE, TRANSCRIPTS_FILE, WINRATE_FILE, AccuracyFile,
                    EpochFile, RunFileError, SelfPlayFile, WinRateFile, epoch_dir, read_json, read_record,
                    write_record)
from ..tracking import TENSORBOARD_DIR, TRAIN_RUN, epoch_metrics, open_tracker, tensorboard_logging_dir, trackers
from ..transcripts import first_error, latest_by_id, read_transcripts
from ._config import SelfPlayConfig, TrainConfig, TrainResult, trained_spec
from ._model import require_local_weights
from ._presets import imitation_preset, preset_settings

SETTINGS_FILE = SELFPLAY_FILE  # the names of a run's files: `sparring.runs`
NO_DATA = "no training data from this epoch's games ({why}): the model is unchanged and the run goes on"
# Settings that must match when a run directory is continued. (Not the bench_* ones: benchmarks change
# nothing that is trained; a bench.json measured with other tasks or limit is measured again.)
_IDENTITY = ("protocol", "model", "kind", "games", "seed", "overrides", "warmup")


EpochRecord = EpochFile
"""What one epoch did, as ``epoch_K/epoch.json`` holds it (the record of `sparring.runs`)."""


Report = Callable[[str], None]


class SelfPlay:
    """Runs (or resumes) a self-play run; see the module docstring for what lands where.

    Args:
        config (`SelfPlayConfig`): the run's settings.
        report (`Callable[[str], None]`): receives one line per stage (the CLI prints them).
        on_episode (`Callable[[str, int], None] | None`): called as ``(stage, total)`` when a
            play stage starts and ``(stage, 0)`` after each episode, for progress bars.

    Example:
        >>> SelfPlay(SelfPlayConfig("adversarial_taboo", "hf:smollm2-135m", Path("runs/sp"),
        ...          epochs=1, games=8, train={"max_steps": 2})).run()  # doctest: +SKIP
    """

    def __init__(self, config: SelfPlayConfig, report: Report = print,
                 on_episode: Callable[[str, int], None] | None = None):
        self.config = config
        self.report = report
        self.on_episode = on_episode
        self.protocol: Protocol = load_protocol(config.protocol)
        roles = self.protocol.spec.model_roles
        self.kind = config.kind or ("saie" if "learner" in roles else "spag")
        if self.kind in ("saie", "gold-sft") and "learner" not in roles:
            raise TrainingError(f"--kind {self.kind} needs a protocol with a 'learner' role; {self.protocol.name} "
                                f"has {roles}")
        if self.config.warmup and self.kind == "spag":
            raise TrainingError("--warmup trains on gold rationales (SAIE): for a game, use --imitation")
        if self.kind == "spag" and len(roles) < 2:
            raise TrainingError(f"SPAG self-play needs a game of two or more roles; {self.protocol.name} has {roles}")
        self.start = config.model
        require_local_weights(config.model)  # a bad or untrainable spec fails here, before anything is played
        if config.sft_data:
            from ..data._sft_data import read_sft_data

            read_sft_data(Path(config.sft_data))  # every row checked before anything is played
        for given in config.imitation:
            if not Path(given).is_file():
                raise TrainingError(f"--imitation {given}: no such file (a SPAG game file, or sparring transcripts)")
        check_variable_names(self.protocol, config.holdout or (), "--holdout")
        self._refuse_other_settings()
        if config.bench_tasks:
            require_lm_eval()
        self.trackers = trackers(config.report_to)

    def run(self) -> list[EpochRecord]:
        """Run every epoch not yet done; return the records of all epochs.

        With ``report_to``, every epoch's metrics (`sparring.tracking.epoch_metrics`, those of epochs an
        earlier run finished included) are logged at step = the epoch (the imitation or warm-up stage at 0).
        """
        self.config.out.mkdir(parents=True, exist_ok=True)
        settings = self.config.to_dict() | {"kind": self.kind}
        write_record(self.config.out / SETTINGS_FILE, SelfPlayFile, settings)
        with open_tracker(",".join(self.trackers) or "none", self.config.out, config=settings,
                          name=f"selfplay {self.config.out}", step_key="epoch") as tracker:
            self._bench(self.config.out / BASELINE_DIR, self.start, "baseline (the starting model)")
            model = self.start
            roles = list(self.protocol.spec.roles)
            if self.config.imitation or self.config.warmup:
                first = self._first_stage()
                tracker.log(epoch_metrics(first.as_dict(), roles), step=0)
                model = first.next_model
            records = []
            for epoch in range(1, self.config.epochs + 1):
                record = self._epoch(epoch, model)
                tracker.log(epoch_metrics(record.as_dict(), roles), step=epoch)
                records.append(record)
                model = record.next_model
        self.report(f"done: {self.config.epochs} epoch(s) in {self.config.out}; final model {model}")
        return records

    # -- stages ------------------------------------------------------------------------------

    def _epoch(self, epoch: int, model: str) -> EpochRecord:
        folder = epoch_dir(self.config.out, epoch)
        done = folder / EPOCH_FILE
        if done.is_file():
            record = _read_epoch(done)
            self.report(f"epoch {epoch}: already done ({record.note or 'trained'})")
            if record.trained:
                self._bench(folder, record.next_model, f"epoch {epoch}")
            return record
        record = EpochRecord(epoch=epoch, model=model, next_model=model)
        if self.kind == "gold-sft":
            data = self._gold(folder / DATA_DIR, self.config.games, self._seed(epoch))
        else:
            record.play = self._play(folder / GAMES_DIR, model, epoch)
            data = self._build(folder / DATA_DIR, [folder / GAMES_DIR / TRANSCRIPTS_FILE], self.kind)
        if self._learn(record, folder, data, "sft" if self.kind == "gold-sft" else self.kind):
            record.eval = self._evaluate(folder / EVAL_DIR, record.next_model, epoch)
            self._bench(folder, record.next_model, f"epoch {epoch}")
        else:
            self.report(f"epoch {epoch}: {record.note}")
        write_record(done, EpochFile, record.as_dict())
        return record

    def _first_stage(self) -> EpochRecord:
        """``epoch_0``: the imitation stage on ``--imitation`` transcripts, or SAIE's warm-up (plain SFT on
        the gold rationales of the first ``--warmup`` questions); its ``next_model`` is the model epoch 1 plays."""
        folder = epoch_dir(self.config.out, 0)
        done = folder / EPOCH_FILE
        if done.is_file():
            record = _read_epoch(done)
            if record.trained:
                self._bench(folder, record.next_model, "epoch 0")
            return record
        record = EpochRecord(epoch=0, model=self.start, next_model=self.start)
        if self.config.imitation:
            # SPAG's imitation stage: KL 0.1 to the base
            settings = {"kl_coeff": 0.1, **preset_settings(imitation_preset(self.config.preset)), **self.config.train}
            data = self._build(folder / DATA_DIR, self._imitation_transcripts(folder), "imitation")
            stage, source, note = "imitation", "the imitation transcripts", "imitation stage"
        else:
            settings = None
            data = self._gold(folder / DATA_DIR, self.config.warmup, self._seed(1))  # a subset of epoch 1's questions
            stage, source, note = ("warm-up", "the warm-up questions",
                                   f"warm-up on the gold rationales of {data.rows} questions")
        if self._learn(record, folder, data, "sft", settings):
            record.note = note
            self._bench(folder, record.next_model, "epoch 0")
        else:
            record.note = record.note.replace("this epoch's games", source)
            self.report(f"{stage}: {record.note}")
        write_record(done, EpochFile, record.as_dict())
        return record

    def _imitation_transcripts(self, folder: Path) -> list[Path]:
        """The ``--imitation`` files as transcripts: SPAG's released game files are imported first
        (into ``epoch_0/imported/``, judged by the official rules), sparring transcripts used as they are."""
        from ..importers import import_spag, is_spag_file

        paths = []
        for given in map(Path, self.config.imitation):
            if not is_spag_file(given):
                paths.append(given)
                continue
            imported = folder / "imported" / f"{given.stem}.jsonl"
            if not imported.is_file():
                summary = import_spag(given, imported)
                self.report(f"imitation: imported {summary.games} SPAG games from {given} "
                            f"(outcomes {dict(summary.reasons)})")
            paths.append(imported)
        return paths

    def _learn(self, record: EpochRecord, folder: Path, data, train_kind: str, settings: dict | None = None) -> bool:
        """Train ``folder/adapter`` on the built ``data`` (a `DataSummary` of ``folder/data``), filling ``record``.

        Returns whether it trained: without training data ``record.note`` says why instead.
        """
        record.data = data.to_dict()
        if data.game_rows == 0:
            record.note = NO_DATA.format(why=_why_no_data(data))
            return False
        from ..agents.engine import release_engines

        # every engine goes before training: each holds a KV cache grown to its budget (`kv_cache_gb`)
        # that training needs; the start model loads again in seconds to evaluate
        release_engines()
        record.train = self._train(folder / DATA_DIR, record.model, folder / ADAPTER_DIR, train_kind, settings)
        record.trained = True
        record.next_model = trained_spec(record.model, (folder / ADAPTER_DIR).resolve(), bool(record.train["full"]))
        return True

    def _play(self, folder: Path, model: str, epoch: int) -> dict[str, Any]:
        roles = self.protocol.spec.model_roles
        models = {role: model for role in roles}
        if self.kind == "saie":
            models = {role: (model if role == "learner" else self.config.partner or self.start) for role in roles}
        stage = f"epoch {epoch}: playing"
        self._progress(stage, self.config.games)
        summary = play_step(self.protocol, self.config.games, folder, models, self._seed(epoch),
                            concurrency=self.config.concurrency, overrides=self.config.overrides,
                            on_episode=lambda _: self._progress(stage, 0))
        stats = play_stats(folder / TRANSCRIPTS_FILE, self.protocol.spec.training.drop_reasons)
        self.report(f"epoch {epoch}: {stats['games']} games, {stats['errors']} errors, "
                    f"{stats['decisive_share']:.0%} decided, {stats['rule_break_share']:.0%} by a broken rule, "
                    f"outcomes {dict(stats['reasons'])} ({summary.skipped} already played)")
        if stats["games"] and stats["errors"] == stats["games"]:  # nothing to train on, nor will later epochs have
            raise TrainingError(f"epoch {epoch}: all {stats['games']} games failed; first error: "
                                f"{first_error(folder / TRANSCRIPTS_FILE)}. Fix that, then run the same command "
                                "again: it replays the failed games")
        return stats

    def _gold(self, folder: Path, questions: int, seed: int):
        """``folder``: plain SFT rows on the gold rationales of the first ``questions`` questions of ``seed``."""
        from ..data._data import build_gold_dataset

        def build():
            summary = build_gold_dataset(self.protocol, questions, folder, seed=seed, overrides=self.config.overrides)
            self.report(f"data: {summary.rows} gold-rationale rows from {questions} questions")
            return summary

        return build_step(folder, build)

    def _build(self, folder: Path, transcripts: list[Path], kind: str):
        from ..data import build_dataset

        def build():
            sft = Path(self.config.sft_data) if self.config.sft_data and kind == "spag" else None
            summary = build_dataset(kind, transcripts, folder, sft_data=sft, protocol=self.config.protocol,
                                    seed=self.config.seed)
            self.report(f"data: {summary.rows} rows from {summary.games_used} of {summary.episodes} episodes "
                        f"(dropped: {dict(summary.dropped) or 'none'})")
            for warning in summary.warnings:
                self.report(f"data: warning: {warning}")
            return summary

        return build_step(folder, build)

    def _train(self, data: Path, model: str, output: Path, kind: str, settings: dict | None = None) -> dict[str, Any]:
        if trained_already(output):
            self.report(f"training: {output} is already trained")
            return _train_stats(output)
        settings = dict({**preset_settings(self.config.preset), **self.config.train} if settings is None else settings)
        if self.trackers:  # TRL's training metrics go to the same trackers (W&B: the same run)
            settings.setdefault("report_to", ",".join(self.trackers))
        self.report(f"training {kind} on {data} from {model}")
        config = TrainConfig(data=data, model=model, output=output, kind=kind, **settings)
        logs = self.config.out / TENSORBOARD_DIR / TRAIN_RUN / output.parent.name  # beside the game metrics
        result = train_step(config, tensorboard=logs)
        self.report(f"trained {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss}")
        return {"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1),
                "full": config.full, "settings": config.to_dict()}

    def _evaluate(self, folder: Path, model: str, epoch: int) -> dict[str, Any] | None:
        if self.config.eval_games == 0:
            return None
        from ..evaluation import eval_winrate

        seed = self._seed(epoch) + 500
        if self.kind != "spag":
            result = self._accuracy(folder, model, seed)
            score = result["methods"][LEARNER_PROMPT]
            self.report(f"epoch {epoch}: accuracy {score['accuracy']:.1%} on {score['total']} held-out questions "
                        "(the learner alone, with its own prompt)")
            baseline = self._accuracy(self.config.out / BASELINE_DIR, self.start, self.config.seed * 1000 + 999)
            result["evidence"] = compare_accuracy(correct_by_question(folder), correct_by_question(
                self.config.out / BASELINE_DIR))
            result["baseline"] = baseline["methods"][LEARNER_PROMPT]
            self.report(f"epoch {epoch}: verdict: {result['evidence']['verdict']}")
            return result
        stage = f"epoch {epoch}: evaluating"
        self._progress(stage, self.config.eval_games)
        result = asyncio.run(eval_winrate(
            self.protocol, model, self.start, self.config.eval_games, folder, seed=seed,
            exclude=self._heldout(epoch), concurrency=self.config.concurrency, resume=True,
            on_episode=lambda _: self._progress(stage, 0))).to_dict()
        self.report(f"epoch {epoch}: against the starting model: win {result['win_rate']:.0%} "
                    f"[{result['win_ci'][0]:.0%}, {result['win_ci'][1]:.0%}], loss {result['loss_rate']:.0%}, "
                    f"tie {result['tie_rate']:.0%} over {result['games'] - result['errors']} games")
        result["evidence"] = compare_to_baseline(result, self._baseline())
        self.report(f"epoch {epoch}: verdict: {result['evidence']['verdict']}")
        return result

    def _bench(self, folder: Path, model: str, stage: str) -> None:
        """``folder/bench.json``: ``model``'s lm-eval scores on ``--bench-tasks`` (kept when one with the same
        tasks and limit is there already); nothing without ``--bench-tasks``."""
        from ..evaluation._bench import BenchmarkError, bench_rows, run_bench

        tasks, limit = self.config.bench_tasks, self.config.bench_limit
        if not tasks:
            return
        path = folder / BENCH_FILE
        if path.is_file():
            try:
                if same_settings(read_bench(path), tasks, limit):
                    return
            except BenchmarkError:
                pass  # unreadable: measured again
        self.report(f"{stage}: benchmarking {model} on {', '.join(tasks)}" + (f" (--bench-limit {limit})" if limit else ""))
        result = run_bench(model, tasks, folder, limit=limit, include_path=self.config.bench_include_path,
                           on_status=lambda line: self.report(f"{stage}: {line}"))
        scores = ", ".join(f"{row.task} {row.metric} {row.text()}" for row in bench_rows(result.to_dict())[:8])
        self.report(f"{stage}: {scores} ({result.path})")

    def _accuracy(self, folder: Path, model: str, seed: int) -> dict[str, Any]:
        """``model`` as the learner alone, with its own prompt, on the held-out questions (``accuracy.json``)."""
        if (folder / ACCURACY_FILE).is_file():
            return _read_result(folder / ACCURACY_FILE, AccuracyFile)
        questions = self.config.eval_questions or _heldout_questions(self.protocol, self.config.eval_games)
        return asyncio.run(eval_learner(self.protocol, model, questions, folder, limit=self.config.eval_games,
                                        seed=seed, concurrency=self.config.concurrency, resume=True)).to_dict()

    def _baseline(self) -> dict[str, Any]:
        """The starting model against itself (``OUT/baseline/``, played once per run): each role's
        win share when nothing was trained, the reference of the per-role tests."""
        from ..evaluation import eval_winrate

        folder = self.config.out / BASELINE_DIR
        if (folder / WINRATE_FILE).is_file():
            return _read_result(folder / WINRATE_FILE, WinRateFile)
        stage = "baseline: the starting model against itself"
        self._progress(stage, self.config.eval_games)
        result = asyncio.run(eval_winrate(
            self.protocol, self.start, self.start, self.config.eval_games, folder, seed=self.config.seed * 1000 + 999,
            concurrency=self.config.concurrency, resume=True, on_episode=lambda _: self._progress(stage, 0)))
        self.report("baseline: the starting model against itself, by role: "
                    + ", ".join(f"{role} wins {t.wins}/{t.judged}" for role, t in result.by_role.items()))
        return result.to_dict()

    # -- helpers -----------------------------------------------------------------------------

    def _seed(self, epoch: int) -> int:
        return self.config.seed * 1000 + epoch

    def _heldout(self, epoch: int) -> dict[str, set]:
        """The values of held-out variables seen in the training games of epochs 1..``epoch``."""
        names = self.config.holdout
        if names is None:
            names = [n for n, v in self.protocol.spec.variables.items() if v.source in ("file", "questions", "builtin")]
        seen: dict[str, set] = {name: set() for name in names}
        for k in range(1, epoch + 1):
            path = epoch_dir(self.config.out, k) / GAMES_DIR / TRANSCRIPTS_FILE
            for episode in latest_by_id(read_transcripts(path, strict=False)).values():
                for name in names:
                    value = episode.variables.get(name)
                    if isinstance(value, (str, int, float)):
                        seen[name].add(value)
        return {name: values for name, values in seen.items() if values}

    def _progress(self, stage: str, total: int) -> None:
        if self.on_episode is not None:
            self.on_episode(stage, total)

    def _refuse_other_settings(self) -> None:
        """A `TrainingError` if OUT holds a run with other settings (checked before anything is written)."""
        path = self.config.out / SETTINGS_FILE
        settings = self.config.to_dict() | {"kind": self.kind}
        if path.is_file():
            before = _read_result(path, SelfPlayFile)
            changed = [k for k in _IDENTITY if before.get(k) != settings.get(k)]
            if changed:
                raise TrainingError(
                    f"{self.config.out} holds a self-play run with other settings "
                    f"({', '.join(f'{k}: {before.get(k)!r} there, {settings.get(k)!r} now' for k in changed)}): "
                    "run the same command to resume it, or pass another --out")


def final_verdict(records: list[EpochRecord]) -> str:
    """The verdict of the last evaluated epoch, as one line (what `sparring selfplay` ends with)."""
    for record in reversed(records):
        evidence = (record.eval or {}).get("evidence")
        if evidence:
            return f"verdict (epoch {record.epoch}): {evidence['verdict']}"
    return "verdict: no epoch trained and evaluated a model, so there is nothing to compare (the notes above say why)"


def play_stats(path: Path, rule_breaks: Collection[str] = ()) -> dict[str, Any]:
    """Counts of a transcripts file for epoch.json: games, errors, outcomes, wins, tokens, speed, and
    the shares of decided games and of games decided by a broken rule (an outcome reason in
    ``rule_breaks``, the protocol's ``training.drop_reasons``), over the games without an error."""
    from ..report._data import PlayStats

    stats = PlayStats.of(list(latest_by_id(read_transcripts(path, strict=False)).values()))
    return {
        "games": stats.games, "errors": stats.errors, "reasons": dict(stats.reasons), "wins": dict(stats.wins),
        "decisive_share": round(stats.decisive_share, 4), "rule_break_share": round(stats.share(rule_breaks), 4),
        "completion_tokens": stats.completion_tokens, "seconds": round(stats.seconds, 1),
        "tokens_per_second": round(stats.tokens_per_second, 2),
        "episodes_per_minute": round(stats.episodes_per_minute, 2), "mean_turns": round(stats.mean_turns, 2),
    }


# -- the steps: self-play's, and train-time regeneration's (`train_saie_regenerated`) -----------

def play_step(protocol: Protocol, games: int, folder: Path, models: dict[str, str], seed: int, *,
              concurrency: int = 32, overrides: dict[str, Any] | None = None,
              on_episode: Callable[[Any], None] | None = None):
    """Play ``games`` episodes of ``protocol`` into ``folder/transcripts.jsonl``, resuming what an earlier run
    left there; the `play` summary."""
    return asyncio.run(play(protocol, games, folder, models, concurrency=concurrency, seed=seed, resume=True,
                            overrides=overrides or None, on_episode=on_episode))


def build_step(folder: Path, build: Callable[[], Any]):
    """The dataset of ``folder``: the summary of one an earlier run finished there, else ``build()``'s."""
    from ..data import DataSummary

    summary_file = folder / DATA_SUMMARY_FILE
    if summary_file.is_file():
        return DataSummary(**read_json(summary_file, dict))
    return build()


def trained_already(output: Path) -> bool:
    """Whether ``output`` holds a finished training run (`train` publishes it whole, or not at all)."""
    return (output / TRAINING_LOG_FILE).is_file()


def train_step(config: TrainConfig, tensorboard: Path | None = None) -> TrainResult:
    """`train` ``config``; with ``tensorboard``, TensorBoard-bound training logs go to that directory.
    The memory training freed goes back to the system afterwards (`return_freed_memory`)."""
    from ._train import train

    logged = tensorboard is not None and {"tensorboard", "all"} & set(config.report_destinations())
    try:
        with tensorboard_logging_dir(tensorboard) if logged else nullcontext():
            return train(config)
    finally:
        return_freed_memory()


def return_freed_memory() -> None:
    """Collect garbage, then hand the heap memory freed back to the system (glibc's ``malloc_trim``).

    glibc keeps freed memory for the process's later mallocs, and OpenVINO, which plays the next
    games, allocates its own way: without this, the ~9.5 GB a SmolLM2-135M training step leaves
    freed stays in the run's memory through the evaluation beside two engines (measured: 9.48 GB
    resident after training and gc, 0.53 GB after the trim). A no-op where the C library is no glibc.
    """
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # macOS, musl, Windows: nothing to trim
        return
    trim(0)


def _why_no_data(data) -> str:
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(data.dropped.items(), key=lambda kv: -kv[1]))
    return f"{data.episodes} episodes, none usable" + (f": {dropped}" if dropped else "")


def _train_stats(output: Path) -> dict[str, Any]:
    log_file = output / TRAINING_LOG_FILE
    log = read_json(log_file, list) if log_file.is_file() else []
    losses = [entry["loss"] for entry in log if "loss" in entry]
    steps = max((entry.get("step", 0) for entry in log), default=0)
    return {"steps": steps, "final_loss": losses[-1] if losses else None, "seconds": None,
            "full": not (output / "adapter_config.json").is_file()}


def _heldout_questions(protocol: Protocol, count: int) -> str:
    """Held-out questions for SAIE evaluation: the protocol's arithmetic problems drawn with another seed."""
    for spec in protocol.spec.variables.values():
        if spec.questions is not None and spec.questions.split(":")[0] == "arithmetic":
            parts = spec.questions.split(":")
            trained_seed = int(parts[2]) if len(parts) > 2 else 0
            return f"arithmetic:{count}:{trained_seed + 1}"
    raise TrainingError(f"{protocol.name}: pass --eval-questions (held-out questions for evaluation, "
                        "e.g. a GSM8K test .jsonl): only arithmetic questions can be drawn afresh")


def _read_epoch(path: Path) -> EpochRecord:
    """The `EpochRecord` of a finished epoch's ``epoch.json`` (keys this version does not know left out)."""
    data = _read_result(path, EpochFile)
    known = set(EpochFile.model_fields) - {"schema_id"}
    return EpochFile(**{key: value for key, value in data.items() if key in known})


def _read_result(path: Path, record) -> dict[str, Any]:
    """A run file that an earlier run of this loop wrote, checked against its ``record`` (`sparring.runs`), as
    the dict it holds.

    Raises:
        `TrainingError`: the file is malformed (it names the file and the field): remove it to redo the stage.
    """
    try:
        return read_record(path, record).as_dict()
    except RunFileError as error:
        raise TrainingError(f"{error}: remove it and run the same command again to redo that step") from error


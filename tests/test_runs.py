"""`sparring.runs`: the atomic JSON writer, the versioned records of a run's files, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparring import runs
from sparring.errors import SparringError
from sparring.runs import (AccuracyFile, BenchFile, EpochFile, RunFileError, SelfPlayFile, WinRateFile, epoch_dir,
                           epoch_dirs, read_json, read_record, write_json, write_record)

RECORDS = {
    SelfPlayFile: {"protocol": "adversarial_taboo", "model": "hf:smollm2-135m", "out": "runs/sp", "epochs": 2,
                   "games": 8, "seed": 0, "overrides": {}, "warmup": 0, "train": {"max_steps": 2}, "kind": "spag"},
    EpochFile: {"epoch": 1, "model": "hf:smollm2-135m", "trained": True, "note": "", "next_model": "hf:x+a",
                "play": {"games": 8, "errors": 0}, "data": {"rows": 3}, "train": {"steps": 2, "final_loss": 1.5},
                "eval": {"win_rate": 0.5, "evidence": {"verdict": "no evidence"}}},
    WinRateFile: {"model": "a", "opponent": "b", "protocol": "duel", "games": 4, "wins": 2, "losses": 1, "ties": 1,
                  "errors": 0, "win_rate": 0.5, "win_ci": [0.15, 0.85], "loss_rate": 0.25, "loss_ci": [0.05, 0.7],
                  "tie_rate": 0.25, "tie_ci": [0.05, 0.7],
                  "by_role": {"first": {"games": 2, "wins": 1, "losses": 1, "ties": 0, "errors": 0}}},
    AccuracyFile: {"questions": 4, "methods": {"single_agent": {"correct": 2, "total": 4, "accuracy": 0.5,
                                                                "ci": [0.15, 0.85]}},
                   "model": "a", "source": "arithmetic:4", "errors": 0, "agents": 1, "rounds": 1},
    BenchFile: {"model": "a", "backend": "hf", "tasks": ["arc_easy"], "limit": 2, "num_fewshot": None,
                "lm_eval_version": "0.4", "created": "2025-01-01T00:00:00+00:00", "seconds": 1.5,
                "results": {"arc_easy": {"metrics": {"acc": {"value": 0.5, "stderr": None}}}}},
}
FILES = {SelfPlayFile: runs.SELFPLAY_FILE, EpochFile: runs.EPOCH_FILE, WinRateFile: runs.WINRATE_FILE,
         AccuracyFile: runs.ACCURACY_FILE, BenchFile: runs.BENCH_FILE}


def test_the_writer_replaces_a_file_whole_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "epoch.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and path.read_text().endswith("\n")
    write_json(path, {"a": 2, "where": Path("x")})  # paths as text
    assert json.loads(path.read_text()) == {"a": 2, "where": "x"}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "fsync", crash)  # a failure while writing the new content
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"a": 3})
    assert json.loads(path.read_text()) == {"a": 2, "where": "x"}  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["epoch.json"]  # no temporary file left


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "winrate.json"
    write_json(path, {"old": True})
    monkeypatch.setattr(runs.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        write_json(path, {"old": False})
    assert json.loads(path.read_text()) == {"old": True} and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("model", list(RECORDS), ids=lambda m: m.__name__)
def test_each_record_round_trips_with_its_schema_first(model, tmp_path):
    data = RECORDS[model]
    path = write_record(tmp_path / FILES[model], model, data)
    written = json.loads(path.read_text())
    assert list(written)[0] == "schema" and written["schema"] == model.SCHEMA
    assert {k: v for k, v in written.items() if k != "schema"} == data  # the writer's values, as given
    record = read_record(path, model)
    assert record.schema_id == model.SCHEMA and record.as_dict() == data
    again = read_record(write_json(tmp_path / "again.json", record), model)  # a record written as it dumps
    assert again.to_json() == record.to_json() and list(record.to_json())[0] == "schema"
    assert runs.RECORDS[FILES[model]] is model


@pytest.mark.parametrize("model", [SelfPlayFile, EpochFile, WinRateFile, AccuracyFile], ids=lambda m: m.__name__)
def test_a_file_written_before_records_were_versioned_still_reads(model, tmp_path):
    path = tmp_path / FILES[model]
    path.write_text(json.dumps({**RECORDS[model], "added_later": [1]}))  # no schema; a key this version lacks
    record = read_record(path, model)
    assert record.schema_id is None and record.as_dict()["added_later"] == [1]
    assert record.to_json()["schema"] == model.SCHEMA


def test_a_malformed_file_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "epoch_1" / "epoch.json"
    write_json(path, {**RECORDS[EpochFile], "epoch": "first"})
    with pytest.raises(RunFileError, match=r"epoch_1/epoch\.json: field 'epoch'") as caught:
        read_record(path, EpochFile)
    assert isinstance(caught.value, SparringError)
    write_json(path, {"schema": "sparring.winrate/1", **RECORDS[WinRateFile]})
    with pytest.raises(RunFileError, match="field 'schema'.*sparring.epoch/1"):
        read_record(path, EpochFile)  # another file's record
    write_json(tmp_path / "w.json", {**RECORDS[WinRateFile], "by_role": {"first": {"wins": "many"}}})
    with pytest.raises(RunFileError, match=r"field 'by_role\.first\.wins'"):
        read_record(tmp_path / "w.json", WinRateFile)
    path.write_text('{"epoch": 1, "mod')  # torn
    with pytest.raises(RunFileError, match=r"epoch\.json: cannot read it"):
        read_record(path, EpochFile)
    path.write_text("[1]")
    with pytest.raises(RunFileError, match="not a JSON object"):
        read_record(path, EpochFile)
    with pytest.raises(RunFileError, match="cannot read it"):
        read_json(tmp_path / "absent.json")
    with pytest.raises(RunFileError, match="field 'win_rate'"):
        write_record(tmp_path / "bad.json", WinRateFile, {"win_rate": "high"})  # a writer's bug, caught
    assert not (tmp_path / "bad.json").exists()


def test_epoch_folders(tmp_path):
    for name in ("epoch_2", "epoch_10", "epoch_x", "baseline"):
        (tmp_path / name).mkdir()
    (tmp_path / "epoch_3").write_text("")  # a file, not a folder
    assert epoch_dir(tmp_path, 2) == tmp_path / "epoch_2"
    assert epoch_dirs(tmp_path) == [(2, tmp_path / "epoch_2"), (10, tmp_path / "epoch_10")]


def test_the_modules_use_the_layouts_names():
    from sparring.config_files import EFFECTIVE_CONFIG
    from sparring.evaluation import ACCURACY_FILE, WINRATE_FILE
    from sparring.evaluation._bench import BENCH_FILE, BENCH_SCHEMA
    from sparring.protocols._play import TRANSCRIPTS
    from sparring.report._data import TRANSCRIPTS as REPORTED
    from sparring.tracking import TENSORBOARD_DIR
    from sparring.trainer._selfplay import BASELINE_DIR, EPOCH_FILE, SETTINGS_FILE

    assert (WINRATE_FILE, ACCURACY_FILE, BENCH_FILE, BENCH_SCHEMA) == (
        runs.WINRATE_FILE, runs.ACCURACY_FILE, runs.BENCH_FILE, BenchFile.SCHEMA)
    assert TRANSCRIPTS == REPORTED == runs.TRANSCRIPTS_FILE and EFFECTIVE_CONFIG == runs.RUN_CONFIG_FILE
    assert (SETTINGS_FILE, EPOCH_FILE, BASELINE_DIR, TENSORBOARD_DIR) == (
        runs.SELFPLAY_FILE, runs.EPOCH_FILE, runs.BASELINE_DIR, runs.TENSORBOARD_DIR)

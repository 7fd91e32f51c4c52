"""Two-process data-parallel training on CPU (gloo) through `accelerate launch`, as docs/training.md shows.

(`accelerate launch --cpu` starts a single process unless MPI is set up; `--multi_gpu` on a machine
without GPUs starts torch's elastic launcher, and each process joins a gloo group on CPU.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_train import taboo_rows, write_dataset

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)


def test_two_processes_train_and_the_main_process_writes_one_adapter(tmp_path):
    data = write_dataset(tmp_path / "data", taboo_rows())
    out = tmp_path / "adapter"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "sparring.cli", "train", "spag", "--data", str(data), "--output", str(out), "--max-steps", "2",
               "--lora-r", "4", "--max-length", "128", "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]  # the launcher fails if either rank fails
    assert done.stdout.count("play it with:") == 1  # only the main process reports
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging directory left
    log = json.loads((out / "training_log.json").read_text())
    # 8 rows, 2 per process per step, 2 processes: half an epoch a step, so each process saw its own half
    assert [(e["step"], e["epoch"]) for e in log if "loss" in e] == [(1, 0.5), (2, 1.0)]

"""The dataset rows on disk: what `sparring data build` writes and `sparring train` reads.

A dataset directory holds the Hugging Face dataset (``save_to_disk``), ``data.jsonl`` (the same
rows, one JSON object a line) and ``summary.json``. Every row: ``messages`` (chat dicts, the
trained assistant turn last), ``role``, ``reward``, ``weight``, ``type`` (``game`` or ``sft``)
and ``episode_id`` (``""`` for sft rows).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from ..runs import DATA_ROWS_FILE, DATA_SUMMARY_FILE

ROW_FIELDS = ("messages", "role", "reward", "weight", "type", "episode_id")


def make_row(messages: list[dict], role: str, reward: float, weight: float, episode_id: str,
             type_: str = "game") -> dict:
    """One row; ``type_`` is ``game`` or ``sft``."""
    return {"messages": messages, "role": role, "reward": float(reward), "weight": float(weight), "type": type_,
            "episode_id": episode_id}


def check_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"output {out_dir} is a file: give a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise TrainingError(f"output directory {out_dir} is not empty: pass --overwrite to replace it, or another -o")


def _features():
    from datasets import Features, List, Value

    return Features({"messages": List({"role": Value("string"), "content": Value("string")}), "role": Value("string"),
                     "reward": Value("float64"), "weight": Value("float64"), "type": Value("string"),
                     "episode_id": Value("string")})


def write_rows(rows: list[dict], summary: dict[str, Any], out_dir: Path) -> None:
    """Write the dataset, ``data.jsonl`` and ``summary.json`` into a temporary sibling, then rename it into place."""
    import datasets

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        columns = {name: [row[name] for row in rows] for name in ROW_FIELDS}  # keeps the columns of zero rows
        # zero rows would write zero shards, which datasets cannot load back: keep one (empty) shard
        dataset = datasets.Dataset.from_dict(columns, features=_features())
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # a bar per save would clutter the CLI's summary
        try:
            dataset.save_to_disk(str(staging), num_shards=1 if not rows else None)
        finally:
            if bars:
                datasets.enable_progress_bars()
        with (staging / DATA_ROWS_FILE).open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (staging / DATA_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")  # the folder is renamed whole
        if out_dir.exists():
            old = out_dir.with_name(f"{staging.name}.old")
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_rows(data_dir: Path):
    """Load the rows `build_dataset` wrote to ``data_dir``.

    Args:
        data_dir (`Path`): a dataset directory from `build_dataset` / ``sparring data build``.

    Returns:
        `datasets.Dataset`: columns ``messages``, ``role``, ``reward``, ``weight``, ``type``, ``episode_id``.

    Raises:
        `TrainingError`: the directory is missing or holds no such dataset.

    Example:
        >>> rows = load_rows(Path("runs/data"))  # doctest: +SKIP
        >>> rows[0]["messages"][-1]["role"]  # doctest: +SKIP
        'assistant'
    """
    from datasets import load_from_disk

    data_dir = Path(data_dir)
    if not (data_dir / "dataset_info.json").is_file():
        raise TrainingError(f"no dataset in {data_dir}: build one with "
                            f"`sparring data build KIND TRANSCRIPTS -o {data_dir}`")
    try:
        rows = load_from_disk(str(data_dir))
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the dataset in {data_dir}: {e}; rebuild it with `sparring data build`") from e
    missing = [f for f in ROW_FIELDS if f not in rows.column_names]
    if missing:
        raise TrainingError(f"the dataset in {data_dir} lacks the columns {missing}: "
                            "rebuild it with `sparring data build`")
    return rows


__all__ = ["ROW_FIELDS", "check_output", "load_rows", "make_row", "write_rows"]

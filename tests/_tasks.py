"""A local lm-evaluation-harness task written by a test: one multiple-choice YAML and its JSONL (offline)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path


def write_choice_task(directory: Path, name: str, questions: list[tuple[str, list[str], int]]) -> Path:
    """Write ``NAME.yaml`` and ``questions.jsonl`` (question, choices, answer index) into ``directory``."""
    data = directory / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in questions))
    (directory / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_choice: choices
        doc_to_target: answer
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
    """))
    return directory

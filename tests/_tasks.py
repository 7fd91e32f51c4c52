"""A local lm-evaluation-harness task written by a test: one multiple-choice YAML and its JSONL (offline)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

QUESTIONS = [  # (question, choices, index of the answer): easy enough that a 135M model gets some right
    ("What colour is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a cat have?", ["two", "four", "six", "eight"], 1),
    ("Which animal says moo?", ["dog", "duck", "cow", "cat"], 2),
    ("What is frozen water called?", ["steam", "sand", "glass", "ice"], 3),
    ("Which is a fruit?", ["apple", "chair", "stone", "shoe"], 0),
    ("What do bees make?", ["milk", "honey", "silk", "wool"], 1),
]


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

"""General SFT data mixed into SPAG's training set (``--sft-data FILE``): chat rows from a JSONL file.

Each line is one example, in one of three shapes:

- ``{"messages": [{"role": ..., "content": ...}, ...]}``: a chat whose last message is the
  assistant turn to train on;
- ``{"prompt": ..., "completion": ...}``: strings, or lists of chat messages (TRL's
  conversational prompt-completion);
- ``{"question": ..., "answer": ...}``: GSM8K-style; the answer's final ``#### N`` becomes
  ``The answer is N.``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import TrainingError

_ROLES = ("system", "user", "assistant")
_GSM8K_FINAL = re.compile(r"\n?\s*####\s*(.+?)\s*$", re.DOTALL)


def gsm8k_solution(answer: str) -> str:
    """A GSM8K answer with its ``#### N`` line turned into ``The answer is N.``.

    Example:
        >>> gsm8k_solution("3 + 4 = 7.\\n#### 7")
        '3 + 4 = 7.\\nThe answer is 7.'
    """
    found = _GSM8K_FINAL.search(answer)
    if found is None:
        return answer.strip()
    head = answer[: found.start()].rstrip()
    return f"{head}\nThe answer is {found.group(1).strip()}." if head else f"The answer is {found.group(1).strip()}."


def _chat(value: Any, where: str, field: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise TrainingError(f"{where}: `{field}` must be a non-empty list of {{role, content}} messages")
    chat = []
    for i, message in enumerate(value):
        if (not isinstance(message, dict) or message.get("role") not in _ROLES
                or not isinstance(message.get("content"), str)):
            raise TrainingError(f"{where}: {field}[{i}] must be {{\"role\": one of {list(_ROLES)}, \"content\": str}}, "
                                f"got {str(message)[:60]!r}")
        chat.append({"role": message["role"], "content": message["content"]})
    return chat


def sft_messages(record: dict[str, Any], where: str = "<record>") -> list[dict]:
    """The chat of one SFT record (any of the three shapes), its assistant turn last.

    Raises:
        `TrainingError`: the record has none of the shapes, or its last message is not the assistant's.
    """
    if "messages" in record:
        chat = _chat(record["messages"], where, "messages")
    elif "prompt" in record and "completion" in record:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        else:
            prompt = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                      else _chat(prompt, where, "prompt"))
            completion = ([{"role": "assistant", "content": completion}] if isinstance(completion, str)
                          else _chat(completion, where, "completion"))
            chat = prompt + completion
    elif isinstance(record.get("question"), str) and isinstance(record.get("answer"), str):
        chat = [{"role": "user", "content": record["question"]},
                {"role": "assistant", "content": gsm8k_solution(record["answer"])}]
    else:
        raise TrainingError(f"{where}: an SFT row needs `messages`, or `prompt` and `completion`, or `question` and "
                            f"`answer` (strings); got the keys {sorted(record)}")
    if chat[-1]["role"] != "assistant":
        raise TrainingError(f"{where}: the last message must be the assistant turn to train on, got role "
                            f"{chat[-1]['role']!r}")
    return chat


def read_sft_data(path: Path) -> list[list[dict]]:
    """Every example of an SFT JSONL file, as chats. Blank lines are ignored.

    Args:
        path (`Path`): the ``.jsonl`` file.

    Returns:
        `list[list[dict]]`: one chat per line, the trained assistant turn last.

    Raises:
        `TrainingError`: the file is missing or empty, or a line is not a valid example (names file:line).

    Example:
        >>> read_sft_data(Path("gsm8k/train.jsonl"))[0][-1]["content"][-18:]  # doctest: +SKIP
        'The answer is 72.'
    """
    path = Path(path)
    if not path.exists() or path.is_dir():
        raise TrainingError(f"--sft-data {path}: no such file; give a JSONL file of SFT examples")
    chats = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise TrainingError(f"{where}: not valid JSON ({e}); fix or delete that line") from e
            if not isinstance(record, dict):
                raise TrainingError(f"{where}: expected a JSON object, got {type(record).__name__}")
            chats.append(sft_messages(record, where))
    if not chats:
        raise TrainingError(f"--sft-data {path}: the file holds no examples")
    return chats


__all__ = ["gsm8k_solution", "read_sft_data", "sft_messages"]

"""Run settings from YAML files: ``sparring selfplay --config run.yaml`` and the effective config.

A config file is a YAML mapping whose keys are a command's option names (``eval_games`` or
``eval-games``, as ``--eval-games`` is spelled); flags given on the command line win over it.
The command's own options are the one list of names, defaults and help:
``sparring COMMAND --help`` documents every key, and the effective config a command writes to its
run directory (``run_config.yaml``) can be passed back with ``--config`` to run the same again.

>>> normalize({"eval-games": 8, "set": {"stance": "supportive"}}, {"eval_games": False, "set_": True}, "run.yaml")
{'eval_games': 8, 'set_': ['stance=supportive']}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigFileError, did_you_mean
from .runs import RUN_CONFIG_FILE, write_text

EFFECTIVE_CONFIG = RUN_CONFIG_FILE  # `sparring.runs`


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file is an empty mapping)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigFileError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: a config file is a mapping of option names to values, "
                              f"not a {type(data).__name__}")
    return data


def normalize(data: Mapping[str, Any], options: Mapping[str, bool], path: Path | str) -> dict[str, Any]:
    """Map a config file's keys onto a command's option names.

    ``options`` maps each option's Python name (``set_`` for ``--set``) to whether it takes a list.
    A key may be written with dashes or underscores, without a trailing underscore; a mapping given
    to a list option (``set: {stance: supportive}``) becomes its ``NAME=VALUE`` items.
    """
    by_key = {name.rstrip("_"): name for name in options}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = by_key.get(str(key).replace("-", "_"))
        if name is None:
            hint = did_you_mean(str(key).replace("-", "_"), by_key)
            raise ConfigFileError(f"{path}: {key!r} is not an option of this command{hint}; the keys are the "
                                  f"command's options: {', '.join(sorted(by_key))}")
        if options[name]:
            value = _as_list(value, key, path)
        elif isinstance(value, (dict, list)):
            raise ConfigFileError(f"{path}: {key!r} takes one value, not a {type(value).__name__}")
        values[name] = value
    return values


def _as_list(value: Any, key: str, path: Path | str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={_scalar_text(v)}" for k, v in value.items()]
    if isinstance(value, list):
        if any(isinstance(item, (dict, list)) for item in value):
            raise ConfigFileError(f"{path}: {key!r} takes a list of values or a mapping, not nested collections")
        return value
    return [value]


def _scalar_text(value: Any) -> str:
    """A value as the text a ``NAME=VALUE`` option reads back as YAML."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def write_effective_config(folder: Path, values: Mapping[str, Any], command: str) -> Path:
    """Write ``FOLDER/run_config.yaml`` (atomically): every option's value the command ran with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {name.rstrip("_"): _plain(value) for name, value in values.items()}
    text = (f"# The effective settings of `sparring {command}`: defaults, --config file and flags.\n"
            f"# Run the same again with: sparring {command} --config {(folder / EFFECTIVE_CONFIG).resolve()}\n"
            + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return write_text(folder / EFFECTIVE_CONFIG, text)


def _plain(value: Any) -> Any:
    """A setting as YAML, with the paths it names made absolute: the file runs again from any folder."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, str):
        return _absolute(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _absolute(text: str) -> str:
    """``text`` with a path it names here made absolute: a file (a protocol, questions), a path with a
    folder in it, or the adapter of an ``hf:MODEL+ADAPTER`` spec; any other text as it is."""
    head, plus, adapter = text.partition("+")
    if text.startswith("hf:") and plus and Path(adapter).exists():
        return f"{head}+{Path(adapter).resolve()}"
    path = Path(text)
    if path.is_file() or ("/" in text and ":" not in text and path.exists()):
        return str(path.resolve())
    return text

"""Package exports that load on first use, so importing a package does not import what its names need."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name -> the attribute of the (relative) module ``where`` names.

    Example:
        >>> __getattr__ = lazy_exports("sparring.agents", {"ModelSpec": "._spec"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name], package), name)

    return __getattr__

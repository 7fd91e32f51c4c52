"""Convert a transformers model directory to OpenVINO IR once, with optimum-intel, into the cache.

optimum-intel pins transformers below the version sparring needs (``apply_chat_template``'s
``sanitize_control_tokens``), so the export runs in a small environment of its own,
``$SPARRING_HOME/openvino-exporter``: optimum-intel with the transformers it supports, created
on first use. It borrows torch and OpenVINO from sparring's own environment (a ``.pth`` line
after its own packages), so it adds about 100 MB, not another PyTorch.

The IR goes to ``$SPARRING_HOME/openvino/NAME-HASH`` (HASH over the source's config and weight
files), written to a staging directory and renamed, so a crash never leaves half a model and
an edited model is exported again. Weights stay float32: the engine chooses the inference
precision when it compiles the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import venv
from pathlib import Path

from ...errors import BackendError
from .._spec import sparring_home

EXPORTER_PACKAGES = ("transformers>=5.5,<5.6", "huggingface-hub>=0.23.2,<1.22", "requests>=2.33,<3", "setuptools")
"""What the exporter environment installs with their dependencies; torch and OpenVINO come from sparring's."""
EXPORTER_NO_DEPS = ("optimum==2.3.0", "optimum-intel==2.2.0")
"""Installed without their dependencies (they would pull another torch, torchvision and nncf, none needed)."""
IR_FILES = ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml")
_JOB = Path(__file__).with_name("_openvino_export_job.py")
_log = logging.getLogger(__name__)


def openvino_model_dir(source: str) -> Path:
    """The OpenVINO IR directory of the transformers model directory ``source``, exported on first use.

    Raises:
        `BackendError`: ``source`` is not a local model directory, or the export failed (the
            message ends with the exporter's last lines).
    """
    path = Path(source)
    if not (path / "config.json").is_file():
        raise BackendError(f"{source}: the OpenVINO engine exports local model directories only (no config.json "
                           "there); download the model first, or set SPARRING_ENGINE=transformers")
    target = sparring_home() / "openvino" / f"{path.name}-{_source_hash(path)}"
    if all((target / name).is_file() for name in IR_FILES):
        return target
    python = _exporter_python()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        print(f"sparring: converting {path.name} to OpenVINO IR once (optimum-intel) -> {target}", file=sys.stderr)
        done = subprocess.run([str(python), str(_JOB), str(path), str(staging)], capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BackendError(f"exporting {source} to OpenVINO IR failed:\n{tail}")
        try:
            os.replace(staging, target)  # atomic: a concurrent exporter either wins or finds it done
        except OSError:
            if not all((target / name).is_file() for name in IR_FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _source_hash(path: Path) -> str:
    """A hash of the model's config and of its weight files' names, sizes and modification times."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _exporter_python() -> Path:
    """The exporter environment's Python, creating the environment on first use."""
    root = sparring_home() / "openvino-exporter"
    python = root / "bin" / "python"
    ready = root / ".ready"
    wanted = "\n".join((*EXPORTER_PACKAGES, *EXPORTER_NO_DEPS))
    if ready.is_file() and ready.read_text() == wanted and python.is_file():
        return python
    print(f"sparring: creating the OpenVINO export environment once in {root} (optimum-intel, about a minute)",
          file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    venv.create(root, with_pip=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in ([*pip, *EXPORTER_PACKAGES], [*pip, "--no-deps", *EXPORTER_NO_DEPS]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BackendError(f"creating the OpenVINO export environment in {root} failed:\n{tail}")
    # torch, openvino and openvino-tokenizers from sparring's own environment, after the exporter's own packages
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "sparring-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    ready.write_text(wanted)
    return python


__all__ = ["openvino_model_dir"]

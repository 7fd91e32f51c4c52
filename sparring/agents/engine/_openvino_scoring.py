"""The OpenVINO engine's scoring model: its IR compiled directly with the OpenVINO runtime.

OpenVINO GenAI's pipeline hands back only the chosen token's log-probability (a
``GenerationConfig.logprobs`` above 1 counts as 1), so scoring runs the exported IR itself: a
stateful model (inputs ``input_ids``, ``attention_mask``, ``position_ids``, ``beam_idx``; its keys
and values kept in the infer request's state) whose ``logits`` output has a row per position. It
is compiled at the pipeline's precision, so its logprobs agree with generation's (measured: within
2e-4 in float32). A LoRA adapter, which the pipeline applies at run time, is merged into the
weights here: ``W + scale * B A`` for each adapted linear layer.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BackendError

ADAPTER_PREFIX = "base_model.model."
"""Where PEFT's safetensors keys start; the rest names the module, as in the IR's weight constants."""


def scoring_model(model_dir: Path, properties: dict, lora: tuple[Path, float] | None = None):
    """The IR at ``model_dir`` compiled for the CPU with ``properties``, with a LoRA adapter merged in.

    Args:
        model_dir (`Path`): the IR directory (`openvino_model_dir`).
        properties (`dict`): the CPU plugin's settings (`compile_properties`).
        lora (`tuple[Path, float] | None`): the adapter's safetensors file and scale (`lora_weights`).

    Raises:
        `BackendError`: the adapter holds weights other than LoRA's, or ones this model does not have.
    """
    import openvino

    core = openvino.Core()
    model = core.read_model(model_dir / "openvino_model.xml")
    if lora is not None:
        _merge(model, *lora)
    return core.compile_model(model, "CPU", properties)


def _merge(model, path: Path, scale: float) -> None:
    """Replace each weight the LoRA adapter at ``path`` adapts by ``W + scale * B A``."""
    import numpy as np
    import openvino
    from safetensors.numpy import load_file

    tensors = load_file(path)
    others = [key for key in tensors if ".lora_A." not in key and ".lora_B." not in key]
    if others:
        raise BackendError(f"adapter {path.parent}: only LoRA weights can be scored on OpenVINO, not {others[0]}")
    constants = {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        module = key.removeprefix(ADAPTER_PREFIX).removesuffix(".lora_A.weight")
        weight = constants.get(f"self.{module}.weight")
        down, up = tensors[key].astype(np.float32), tensors.get(key.replace(".lora_A.", ".lora_B."))
        if weight is None or up is None or tuple(weight.get_output_shape(0)) != (up.shape[0], down.shape[1]):
            raise BackendError(f"adapter {path.parent}: {module} matches no weight of this model")
        merged = weight.get_data() + scale * (up.astype(np.float32) @ down)
        weight.output(0).replace(openvino.op.Constant(merged.astype(np.float32)).output(0))


__all__ = ["scoring_model"]

"""A PEFT LoRA adapter on top of the embedded model, selected with `hf:BASE+ADAPTER_DIR`."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from sparring.agents import SamplingParams, get_engine, load_model

pytestmark = pytest.mark.slow  # the whole module runs the real model (see pyproject's markers)


async def test_adapter_spec_loads_and_changes_the_model(tmp_path, engine):
    base, _ = load_model("hf:smollm2-135m", dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    adapted = get_engine(f"hf:smollm2-135m+{tmp_path / 'adapter'}")
    assert adapted is not engine and adapted.name.endswith("adapter")
    prompt = adapted.encode_chat([{"role": "user", "content": "Write a sentence about the sea."}])
    greedy = SamplingParams(temperature=0, max_tokens=12)
    with_adapter, without = await adapted.generate(prompt, greedy), await engine.generate(prompt, greedy)
    assert with_adapter.token_ids and with_adapter.token_ids != without.token_ids

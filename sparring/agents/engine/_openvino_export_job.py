"""Export a transformers model directory to OpenVINO IR (run by the exporter environment's Python).

Usage: python _openvino_export_job.py SOURCE_DIR OUTPUT_DIR

Run as a script by `sparring.agents.engine._openvino_export`, in an environment with optimum-intel; it
imports nothing of sparring. Writes the model (float32 weights, with its KV cache as state, as
OpenVINO GenAI's pipelines load it), its tokenizer and detokenizer, and the tokenizer files.
"""

import sys
import warnings


def main(source: str, output: str) -> None:
    warnings.filterwarnings("ignore")  # the tracer's warnings about constants are expected for causal LMs
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from optimum.exporters.openvino import main_export
    from transformers import AutoTokenizer

    main_export(source, output=output, task="text-generation-with-past", weight_format="fp32")
    tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(source), with_detokenizer=True)
    ov.save_model(tokenizer, f"{output}/openvino_tokenizer.xml")
    ov.save_model(detokenizer, f"{output}/openvino_detokenizer.xml")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Run by tests/test_weight_pairs.py on AVX2 kernels (tests/avx2.py): for each hand-made int8 layer,
whether onnxruntime's fused kernel clips at input 255 (its output differs from exact arithmetic), and
whether edgekit.quantize.weight_pairs predicts that it can. Prints one JSON line."""

from __future__ import annotations

import json

import numpy as np

from tests.qdq import saturation_cases


def main() -> None:
    """One entry per case: [clips on these kernels, predicted to be able to clip]."""
    import onnxruntime as ort

    facts = {}
    for name, model, feed, predicted in saturation_cases():
        outputs = []
        for exact in (False, True):
            options = ort.SessionOptions()
            if exact:
                options.add_session_config_entry("session.disable_quant_qdq", "1")
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            outputs.append(session.run(None, {"x": feed})[0])
        facts[name] = [bool(not np.array_equal(*outputs)), predicted]
    print(json.dumps(facts))


if __name__ == "__main__":
    main()

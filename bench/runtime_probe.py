"""Would another runtime score faster? A kept run's model, read exactly as core reads it (same windows,
same stop-at-p), through PyTorch, ONNX Runtime fp32 and ONNX Runtime dynamic int8; one JSON line each
with seconds, accuracy and the share of labels that differ from PyTorch's.

    python bench/runtime_probe.py --run PIPELINE.target --rows 20000:21000

Rows are IMDB *train* rows no offline-quick stage trains on, so the probe never reads the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class OrtModel:
    """Enough of a transformers model for Predictor.score_ids: called with ids and mask, returns .logits."""

    def __init__(self, path: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids, attention_mask):
        import torch
        from types import SimpleNamespace

        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(None, feed)[0]))


def export(model, folder: Path) -> dict[str, str]:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ids = torch.randint(1000, 2000, (2, 16))
    fp32 = folder / "model.onnx"
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(fp32), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}})
    int8 = folder / "model-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    return {"onnxruntime-fp32": str(fp32), "onnxruntime-int8": str(int8)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run id (its model is read the way it was evaluated)")
    ap.add_argument("--data", default="../shared/data/imdb")
    ap.add_argument("--split", default="train")
    ap.add_argument("--rows", default="20000:21000", help="a:b, rows of the split")
    args = ap.parse_args()

    from core.data import load_eval_examples
    from core.predictor import Predictor

    a, b = (int(x) for x in args.rows.split(":"))
    examples = load_eval_examples(args.data, args.split, rows=(a, b))
    predictor = Predictor.from_run(args.run, batch_size=64)
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        backends = {"pytorch": predictor.model, **export(predictor.model, Path(tmp))}
        for name, model in backends.items():
            reader = predictor.reading_as()  # a copy: the loaded PyTorch model stays as it was
            reader.model = model if name == "pytorch" else OrtModel(model)
            t0 = time.perf_counter()
            probs, reads = reader.read(examples.texts)
            seconds = time.perf_counter() - t0
            labels = probs.argmax(axis=1)
            reference = labels if reference is None else reference
            print(json.dumps({"runtime": name, "seconds": round(seconds, 1), "rows": f"{args.split}[{a}:{b}]",
                              "accuracy": round(float((labels == examples.labels).mean()), 4),
                              "labels_changed": round(float((labels != reference).mean()), 4),
                              "windows_read": round(float(np.mean(reads)), 2), "scoring": predictor.scoring}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

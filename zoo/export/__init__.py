"""Ship a trained student: ONNX export with parity checks, a deploy-side runtime, and a speed bench.

    zoo export run=RUN_DIR [profile=default] [out=DIR]   -> DIR/model.onnx, preprocess.json, card.yaml, export.json
    zoo infer model=DIR inputs=FILE.npy                  -> top-1 per row, with numpy + onnxruntime only
    zoo bench run=RUN_DIR | model=DIR                    -> PyTorch eager vs onnxruntime, side by side

Modules: ``profiles`` (export/<name>.yaml, strict), ``onnx_export`` (torch -> ONNX -> checked folder),
``parity`` (logits and metric checks), ``preprocess`` (what the model expects as input),
``runtime`` (OnnxClassifier; imports no torch), ``bench``.

This file imports nothing on purpose: ``zoo.export.runtime`` must load on a machine without torch.
"""

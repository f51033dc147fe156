"""Ship a trained student: ONNX export with parity checks, a deploy-side runtime, and a speed bench.

    zoo export run=RUN_DIR [profile=...] [out=DIR]   -> a checked folder, by the run's kind (``dispatch``)
    zoo infer model=DIR inputs=FILE.npy              -> top-1 per row, with numpy + onnxruntime only
    zoo bench run=RUN_DIR | model=DIR                -> PyTorch eager vs onnxruntime, side by side

Modules: ``dispatch`` (a run folder -> its kind's exporter), the exporters ``classifier`` (logits graph, also model
cards), ``detector`` (boxes and scores), ``retrieval`` (query encoders: ``splade_onnx``, ``dense_onnx`` on the shared
``text_encoders`` steps); ``profiles`` (export/<name>.yaml, strict), ``parity`` (logits and metric checks),
``preprocess`` (what a classifier expects as input), ``report`` (export.json, ExportResult), ``sources`` (export
folders read back), ``runtime`` (OnnxClassifier; imports no torch), ``bench``.

This file imports nothing on purpose: ``zoo.export.runtime`` must load on a machine without torch.
"""

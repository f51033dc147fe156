"""Metrics, one leaf module per kind of output: they import no other zoo module, so any layer may use them.

- ``classification``: top-1 accuracy and cross-entropy of a model or an ensemble over a loader;
- ``detection``: DETR outputs -> detections, COCO-style mAP with ignore regions as crowd boxes;
- ``retrieval``: MRR@10, MRR, nDCG@3, Recall@10/100 of TREC-run dicts (ir_measures).

Which metrics a run reports is decided by its data's kind (``zoo.kinds``), not here.
"""

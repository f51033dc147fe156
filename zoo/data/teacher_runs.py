"""The teacher's own TREC run on the train rewrites: DiSCo's offline teacher scoring (spec step 1).

``data.teacher_runs: [teacher]`` asks for it (``ConvRetrievalDataModule.attach_teachers``): the first teacher, which
is also the document encoder, searches the corpus index with every train rewrite, ``negatives.window[1]`` deep. The
run is stored once under ``<ZOO_HOME>/teacher_runs/``, keyed by the teacher's weights, the data and the depth, and
read back by later runs, arms and seeds.
"""

import hashlib
import json
import os
from pathlib import Path

import torch

from zoo.atomic import atomic_write_text
from zoo.data.trec import write_run
from zoo.errors import DataError
from zoo.paths import zoo_home
from zoo.retrieval.engines import search
from zoo.retrieval.evaluation import corpus_index, weights_digest


@torch.no_grad()
def teacher_train_run(datamodule, teacher, say=print) -> Path:
    """The path of the stored run (computed first if missing)."""
    cfg = datamodule.cfg
    depth = int(cfg.negatives.window[1])
    key = {"teacher": weights_digest(teacher), "data": datamodule.fingerprint, "depth": depth,
           "max_length_query": cfg.get("eval_max_length_query"), "max_length_doc": cfg.get("eval_max_length_doc"),
           "title_sep": str(cfg.get("title_sep", ". "))}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = zoo_home() / "teacher_runs" / f"{teacher.name}-{digest}.trec"
    if path.is_file():
        return path
    queries = datamodule.queries("train", "rewrite")
    if not queries:
        raise DataError("data.teacher_runs names 'teacher' but the train split has no rewrites for it to read")
    say(f"teacher run: {len(queries)} train rewrites searched {depth} deep -> {path}")
    teacher.eval()
    run = search(corpus_index(datamodule, teacher), teacher, queries, k=depth,
                 max_length=cfg.get("eval_max_length_query"), isolate=True)
    tmp = write_run(run, path.with_name(f".{path.name}.tmp"), tag="teacher")
    os.replace(tmp, path)  # atomic: a half-written run is never read back
    atomic_write_text(path.with_suffix(".json"), json.dumps(key, indent=2, sort_keys=True))
    return path

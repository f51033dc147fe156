"""``zoo index`` and ``zoo search``: a retrieval run folder's encoders on a corpus and on queries.

    zoo index run=RUN_DIR [out=DIR] [quant_scale=100]
        encode the run's collection (``data.corpus``; the mini set's corpus.jsonl) with the run's frozen DOCUMENT
        encoder and build a Lucene impact index (integer weights round(w * quant_scale)), or for a dense run
        (``dense_ce``) an exact faiss index; default out=RUN_DIR/index
    zoo search index=DIR run=RUN_DIR queries=FILE.tsv [k=100] [out=run.trec]
        encode ``qid<TAB>text`` queries with the run's trained QUERY encoder (the student) and search the index;
        writes a TREC run file (default: RUN_DIR/search.trec)

The document encoder of a DiSCo-style run is its first teacher (frozen; the student is the query encoder): it is
rebuilt from the record (stored recipe weights, a weight file, or the arch's published weights). With
``method.doc_encoder=student_copy`` it is the student as it started (rebuilt from ``student.*``). A run whose
method has no teacher (a shared bi-encoder) uses the student on both sides.
"""

from pathlib import Path

from zoo.errors import ConfigError


def document_encoder(loaded):
    """The frozen document encoder of a loaded run (``zoo.export.sources.load_run``)."""
    from zoo.archs import create
    from zoo.weights import load_weights

    teachers = loaded.record.teachers
    which = str(loaded.cfg.method.get("doc_encoder", "teacher"))
    if which == "student_copy":  # a frozen copy of the student as it started, before training
        return starting_student(loaded)
    if not teachers or which != "teacher":
        return loaded.student
    info = teachers[0]
    source = str(info.weights or "")
    pretrained = source.startswith("pretrained:")
    model = create(info.name, loaded.datamodule.num_classes, loaded.datamodule.input_shape, pretrained=pretrained)
    if not pretrained:
        if not Path(source).is_file():
            raise ConfigError(f"the run's document encoder weights '{source}' are gone",
                              "retrain the teacher (zoo train with the same task) or restore that file")
        load_weights(model, Path(source))
    return model.eval().requires_grad_(False)


def starting_student(loaded):
    """The run's student rebuilt as training found it (``zoo.teachers.create_student``), frozen."""
    from zoo.teachers import create_student, student_start_weights

    weights = student_start_weights(loaded.cfg, loaded.datamodule)
    return create_student(loaded.cfg, loaded.datamodule, weights).eval().requires_grad_(False)


def _retrieval_run(run: str):
    from zoo.export.sources import load_run

    loaded = load_run(Path(run))
    if not hasattr(loaded.student, "encode") or not hasattr(loaded.datamodule, "sources"):
        raise ConfigError(f"run '{run}' is not a retrieval run (its student is not a SPLADE or dense encoder)",
                          "zoo index / zoo search take runs of disco_* tasks")
    return loaded


def index_command(run: str, out: str | None, quant_scale: float = 100.0, say=print) -> int:
    import time

    from zoo.retrieval.index import build_index

    loaded = _retrieval_run(run)
    encoder = document_encoder(loaded)
    target = Path(out) if out else loaded.run_dir / "index"
    started = time.perf_counter()
    # build_index sends a dense encoder (dense_ce) to an exact faiss index
    path = build_index(encoder, loaded.datamodule.collection(), target, quant_scale=quant_scale,
                       max_length=loaded.cfg.data.get("eval_max_length_doc"))
    say(f"indexed {loaded.datamodule.sources.corpus} with {getattr(encoder, 'name', 'the document encoder')} "
        f"in {time.perf_counter() - started:.1f}s -> {path}")
    return 0


def search_command(index: str, run: str, queries: str, k: int = 100, out: str | None = None, say=print) -> int:
    from zoo.data.trec import read_queries
    from zoo.retrieval.evaluate import write_trec_run
    from zoo.retrieval.search import search

    loaded = _retrieval_run(run)
    texts = read_queries(Path(queries))
    result = search(Path(index), loaded.student.eval(), texts, k=k,  # a faiss index: dense_search
                    max_length=loaded.cfg.data.get("eval_max_length_query"))
    path = write_trec_run(result, Path(out) if out else loaded.run_dir / "search.trec", tag=loaded.cfg.method.name)
    say(f"searched {len(texts)} queries (k={k}) -> {path}")
    return 0

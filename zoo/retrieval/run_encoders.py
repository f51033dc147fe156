"""A finished retrieval run's encoders at work on a corpus and on queries (``zoo index``, ``zoo search``, ``zoo eval``).

The query encoder is the run's student. The document encoder is the one its method indexed the corpus with
(``method.doc_encoder``): the first teacher (frozen; DiSCo's SPLADE++ teacher is both), rebuilt from the record
(stored recipe weights, a weight file, or the arch's published weights); with ``student_copy`` the student as it
started (``zoo.students.create_student``); a run whose method has no teacher (a shared bi-encoder) uses the
student on both sides.
"""

import time
from pathlib import Path

from zoo.errors import ConfigError


def document_encoder(loaded):
    """The frozen document encoder of a loaded run (``zoo.runs.load_run``)."""
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
    """The run's student rebuilt as training found it, frozen."""
    from zoo.students import create_student, student_start_weights

    weights = student_start_weights(loaded.cfg, loaded.datamodule)
    return create_student(loaded.cfg, loaded.datamodule, weights).eval().requires_grad_(False)


def retrieval_run(run: str | Path):
    """A finished run folder of the retrieval kind, loaded; any other kind is a one-line error."""
    from zoo.runs import load_run

    loaded = load_run(Path(run))
    if loaded.datamodule.kind != "retrieval":
        raise ConfigError(f"run '{run}' is a {loaded.datamodule.kind} run, not a retrieval run",
                          "zoo index / zoo search take runs of retrieval tasks (disco_*)")
    return loaded


def index_run(run: str | Path, out: str | Path | None = None, **options) -> tuple[Path, float]:
    """The run's collection (``data.corpus``) indexed with its document encoder at ``out`` (default
    ``<run>/index``); ``options`` go to ``zoo.retrieval.engines.build_index`` (e.g. ``quant_scale``). Returns the
    index folder and the seconds it took."""
    from zoo.retrieval.engines import build_index

    loaded = retrieval_run(run)
    started = time.perf_counter()
    path = build_index(document_encoder(loaded), loaded.datamodule.collection(),
                       Path(out) if out else loaded.run_dir / "index",
                       max_length=loaded.cfg.data.get("eval_max_length_doc"), **options)
    return path, time.perf_counter() - started


def search_run(index: str | Path, run: str | Path, queries: str | Path, k: int = 100,
               out: str | Path | None = None, engine: str = "auto") -> tuple[Path, int, str]:
    """``qid<TAB>text`` queries encoded with the run's student and searched in ``index``; the TREC run file
    (default ``<run>/search.trec``), the number of queries and the engine that searched. ``engine`` (a sparse
    index's: lucene, brute_force, or auto, the one estimated faster, ``zoo.retrieval.engine_choice``); a dense
    index has one engine (faiss)."""
    from zoo.data.trec import read_queries, write_run
    from zoo.retrieval import impact
    from zoo.retrieval.common import read_meta
    from zoo.retrieval.engine_choice import choose_engine
    from zoo.retrieval.engines import search

    loaded = retrieval_run(run)
    texts = read_queries(Path(queries))
    options = {}
    if read_meta(Path(index)).get("kind") == impact.KIND:
        options["engine"] = engine = choose_engine(Path(index), len(texts), engine)
    elif engine != "auto":
        raise ConfigError(f"engine={engine} is for SPLADE impact indexes", "a dense index is searched by faiss")
    else:
        engine = "faiss"
    result = search(Path(index), loaded.student.eval(), texts, k=k,
                    max_length=loaded.cfg.data.get("eval_max_length_query"), **options)
    path = write_run(result, Path(out) if out else loaded.run_dir / "search.trec", tag=loaded.cfg.method.name)
    return path, len(texts), engine

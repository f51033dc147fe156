"""``zoo index`` and ``zoo search``: a retrieval run folder's encoders on a corpus and on queries.

    zoo index run=RUN_DIR [out=DIR] [quant_scale=100]
        encode the run's collection (``data.corpus``; the mini set's corpus.jsonl) with the run's frozen DOCUMENT
        encoder: a Lucene impact index (integer weights round(w * quant_scale)) for SPLADE, an exact faiss index for
        a dense run; default out=RUN_DIR/index
    zoo search index=DIR run=RUN_DIR queries=FILE.tsv [k=100] [out=run.trec] [engine=auto]
        encode ``qid<TAB>text`` queries with the run's QUERY encoder (the student) and search the index; writes a
        TREC run file (default: RUN_DIR/search.trec). A SPLADE index is searched by Lucene or by brute force over
        its kept vectors: ``auto`` takes the one estimated faster for its size and the number of queries
        (``zoo.retrieval.engine_choice``), ``lucene`` or ``brute_force`` forces one
"""

from zoo.commands.base import Arguments, Command


def index(arguments: Arguments, reporter) -> int:
    from zoo.retrieval.run_encoders import index_run

    options = {"quant_scale": arguments.number("quant_scale", 100.0)} if arguments.get("quant_scale") else {}
    path, seconds = index_run(arguments.get("run"), arguments.get("out"), **options)
    reporter.say(f"indexed the run's collection in {seconds:.1f}s -> {path}")
    return 0


def search(arguments: Arguments, reporter) -> int:
    from zoo.retrieval.run_encoders import search_run

    k = arguments.integer("k", 100, minimum=1)
    path, count, engine = search_run(arguments.get("index"), arguments.get("run"), arguments.get("queries"), k,
                                     arguments.get("out"), arguments.get("engine") or "auto")
    reporter.say(f"searched {count} queries (k={k}, {engine.replace('_', ' ')}) -> {path}")
    return 0


COMMANDS = [
    Command("index", "index a retrieval run's corpus with its frozen document encoder", index,
            keys={"run": "RUN_DIR", "out": "DIR", "quant_scale": "100"}, required=("run",)),
    Command("search", "search an index with a retrieval run's query encoder", search,
            keys={"index": "DIR", "run": "RUN_DIR", "queries": "FILE.tsv", "k": "100", "out": "run.trec",
                  "engine": "auto|lucene|brute_force"},
            required=("index", "run", "queries")),
]

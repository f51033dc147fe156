"""Retrieval metrics of TREC-run dicts with ir_measures (pytrec_eval underneath).

    evaluate(run, qrels)  ->  {"mrr@10": ..., "mrr": ..., "ndcg@3": ..., "recall@10": ..., "recall@100": ...}

run {qid: {docid: score}}, qrels {qid: {docid: rel}} (graded allowed). The DiSCo evaluation (spec §8):
- mrr@10 = RR@10 (reciprocal rank in the top-10-truncated run), mrr = uncut RR (MRR@1000 for a depth-1000 run):
  which cut the paper's "MRR" is, is unconfirmed, so both are reported;
- recall@10, recall@100 and both MRRs count a document relevant when rel >= ``rel`` (1 by default): the binary
  qrels the official evaluator asks for on TREC CAsT/iKAT (which threshold the authors binarised at is unconfirmed;
  pass rel=2 to count only rel >= 2);
- ndcg@3 uses the graded judgements as they are.
Every query of ``qrels`` counts: a query missing from the run scores 0 (pytrec_eval's behaviour through
ir_measures), so a retriever cannot look better by skipping hard queries. Queries of the run without judgements
are ignored.
"""

from collections.abc import Mapping

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def measures(rel: int = 1) -> dict:
    from ir_measures import RR, R, nDCG

    binary = {} if rel == 1 else {"rel": int(rel)}
    return {"mrr@10": RR(**binary) @ 10, "mrr": RR(**binary), "ndcg@3": nDCG @ 3,
            "recall@10": R(**binary) @ 10, "recall@100": R(**binary) @ 100}


def evaluate(run: Run, qrels: Qrels, rel: int = 1, per_query: bool = False) -> dict:
    """Mean metrics over the judged queries; with ``per_query`` also {"per_query": {qid: {metric: value}}}."""
    import ir_measures

    named = measures(rel)
    qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run = {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in run.items() if str(q) in qrels}
    by_measure = {m: name for name, m in named.items()}
    result: dict = {name: 0.0 for name in named}
    if not qrels:
        return result
    table: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(list(named.values()), qrels, run):
        table.setdefault(metric.query_id, {})[by_measure[metric.measure]] = float(metric.value)
    for qid in qrels:
        for name in named:
            result[name] += table.get(qid, {}).get(name, 0.0) / len(qrels)
    if per_query:
        result["per_query"] = {qid: {name: table.get(qid, {}).get(name, 0.0) for name in named} for qid in qrels}
    return result

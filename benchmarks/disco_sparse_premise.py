"""The teacher side of disco_mini_sparse's premise: where the teacher ranks the relevant passages that the sparse
training judgements left unjudged, i.e. the ones CE trains down as negatives (issue 20).

    python benchmarks/disco_sparse_premise.py $ZOO_HOME/teacher_runs/<teacher run>.trec [task overrides ...]

The task (disco_mini_sparse, with any overrides) gives the data module: its ``unjudged`` passages per train turn
and the judged train qrels. The TREC file is the teacher's stored run on the train rewrites (a run prints its path
when it makes it). The CE side, how many candidate pools hold such a passage, is in every run's record
(``data.unjudged_relevant``).
"""

import statistics
import sys
from pathlib import Path


def main() -> None:
    from zoo.config import compose
    from zoo.data.trec import read_run
    from zoo.registry import DATASETS

    cfg = compose("disco_mini_sparse", sys.argv[2:])
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    teacher_run = read_run(Path(sys.argv[1]))
    judged = datamodule.qrels("train")
    hidden_ranks, negative_ranks, share_below = [], [], []
    for qid, hidden in datamodule.unjudged.items():
        ranked = sorted(teacher_run.get(qid, {}).items(), key=lambda item: -item[1])
        rank_of = {doc: rank for rank, (doc, _) in enumerate(ranked)}
        negatives = [rank for doc, rank in rank_of.items() if doc not in hidden and doc not in judged.get(qid, {})]
        negative_ranks.extend(negatives)
        for doc in hidden & rank_of.keys():
            hidden_ranks.append(rank_of[doc])
            share_below.append(sum(rank > rank_of[doc] for rank in negatives) / max(1, len(negatives)))
    total = sum(len(docs) for docs in datamodule.unjudged.values())
    print(f"unjudged relevant passages in the teacher's run: {len(hidden_ranks)} of {total}")
    print(f"median teacher rank: unjudged relevant {statistics.median(hidden_ranks)}, "
          f"other candidates {statistics.median(negative_ranks)}")
    print(f"share of a turn's other candidates ranked below an unjudged relevant passage: "
          f"{statistics.fmean(share_below):.3f}")
    print(f"unjudged relevant passages in the teacher's top 10: {sum(rank < 10 for rank in hidden_ranks)}")


if __name__ == "__main__":
    main()

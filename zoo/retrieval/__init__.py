"""Retrieval side of the zoo: index a corpus with a frozen encoder, search it, score the run.

- ``lucene``: the one place that starts Java for pyserini (``ensure_jvm``);
- ``sparse``: quantised SPLADE term weights and an exact brute-force scorer (torch sparse CSR);
- ``index``: ``build_index(encoder, corpus, out_dir)``: JsonVectorCollection files + a Lucene impact index;
- ``search``: ``search(index_dir, encoder, queries, k)`` -> TREC-run dict {qid: {docid: score}};
- ``dense``: the dense baseline (all-MiniLM-L6-v2 + faiss IndexFlatIP) with the same interface;
- ``evaluate``: MRR@10, MRR, nDCG@3, Recall@10, Recall@100 with ir_measures.

Nothing here starts the JVM at import; only the Lucene calls do, through ``lucene.ensure_jvm``.
"""

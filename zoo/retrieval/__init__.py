"""Retrieval side of the zoo: index a corpus with a frozen encoder, search it, score the run.

- ``engines``: the one door: ``build_index(encoder, corpus, out_dir)`` picks the engine by the encoder's declared
  ``representation``, ``search(index_dir, encoder, queries, k)`` by the kind the index folder records;
- ``impact`` (sparse: SPLADE term weights in a Lucene impact index) and ``dense`` (sentence embeddings in an exact
  faiss index): sibling engines with the same ``build`` / ``search``;
- ``common``: corpus and query inputs, the index folder's ``zoo_index.json``;
- ``sparse``: quantised SPLADE term weights and an exact brute-force scorer (torch sparse CSR);
- ``lucene``: the one place that starts Java for pyserini (``ensure_jvm``, ``in_child``);
- ``evaluation``: full-corpus evaluation of a conversational data module (the retrieval kind's ``evaluate``);
- ``run_encoders``: a finished run's query and document encoders, indexing and searching with them.

Metrics (MRR@10, nDCG@3, Recall@10/100) are ``zoo.metrics.retrieval``. Nothing here starts the JVM at import; only
the Lucene calls do, through ``lucene.ensure_jvm``.
"""

"""Conversational readers on tiny hand-written samples of each real format, and the conv_retrieval data module."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.data.conversations import Utterance, conversation_text, read_cast, read_qrecc, read_topiocqa
from zoo.data.trec import Doc, write_corpus_tsv, write_qrels
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS


def dpr_row(conv, turn, question, passage, answer="an answer"):
    return {"dataset": "topiocqa", "conv_id": conv, "turn_id": turn, "question": question, "answers": [answer],
            "positive_ctxs": [{"title": "T", "text": "x", "passage_id": passage}], "negative_ctxs": [],
            "hard_negative_ctxs": []}


TOPIOCQA_TRAIN = [dpr_row(1, 1, "who wrote dune", "11"),
                  dpr_row(1, 2, "who wrote dune [SEP] Frank Herbert [SEP] when was it published", "12"),
                  dpr_row(2, 1, "what is a lighthouse", "13")]
TOPIOCQA_DEV = [dpr_row(7, 1, "what is sushi", "21"),
                dpr_row(7, 2, "what is sushi [SEP] a Japanese dish [SEP] where did it originate", "22")]


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_topiocqa_history_row_ids_and_reversed_input(tmp_path):
    cset = read_topiocqa(write_json(tmp_path / "train.json", TOPIOCQA_TRAIN), "train")
    assert [c.conv_id for c in cset.conversations] == ["1", "2"]
    turn = cset.conversations[0].turns[1]
    assert (turn.qid, turn.turn_id, turn.utterance) == ("1", "2", "when was it published")
    assert turn.history == (Utterance("user", "who wrote dune"), Utterance("system", "Frank Herbert"))
    assert conversation_text(turn) == "when was it published [SEP] Frank Herbert [SEP] who wrote dune"
    assert conversation_text(turn, answers=False) == "when was it published [SEP] who wrote dune"
    assert cset.qrels == {"0": {"11": 1}, "1": {"12": 1}, "2": {"13": 1}}
    assert read_topiocqa(tmp_path / "train.json", "train", qid_scheme="conv_turn").qids() == ["1_1", "1_2", "2_1"]


def test_official_leaky_dev_qrels_are_cut_to_dev_rows(tmp_path):
    """DiSCo's parse_topiocqa.py never resets qrels: its dev file holds train rows 0..N too (overwritten or not)."""
    leaky = {"0": {"21": 1}, "1": {"22": 1}, "2": {"13": 1}}  # row 2 exists only in train
    write_json(tmp_path / "qrel_rowid_dev.json", leaky)
    dev = read_topiocqa(write_json(tmp_path / "dev.json", TOPIOCQA_DEV), "val", tmp_path / "qrel_rowid_dev.json")
    assert dev.qrels == {"0": {"21": 1}, "1": {"22": 1}} and dev.dropped_qrels == 1


def test_max_words_drops_whole_oldest_items_first(tmp_path):
    turn = read_cast(write_json(tmp_path / "t.json", CAST_2020)).turns()[1]  # 5 words + 12 words of history
    assert conversation_text(turn, max_words=17).endswith("going bad?")
    assert conversation_text(turn, max_words=16) == "Now it stopped working. Why?"
    assert conversation_text(turn, max_words=3) == "Now it stopped"


QRECC = [{"Context": [], "Question": "What is Jupiter?", "Rewrite": "What is Jupiter?", "Answer": "A planet.",
          "Answer_URL": "u", "Conversation_no": 5, "Turn_no": 1, "Conversation_source": "trec"},
         {"Context": ["What is Jupiter?", "A planet."], "Question": "How big is it?",
          "Rewrite": "How big is Jupiter?", "Answer": "Very big.", "Answer_URL": "u", "Conversation_no": 5,
          "Turn_no": 2, "Conversation_source": "trec"}]


def test_qrecc_original_and_scai_fields(tmp_path):
    cset = read_qrecc(write_json(tmp_path / "qrecc_train.json", QRECC), "train")
    turn = cset.conversations[0].turns[1]
    assert (turn.qid, turn.rewrite, turn.answer) == ("5_2", "How big is Jupiter?", "Very big.")
    assert [u.role for u in turn.history] == ["user", "system"] and cset.qrels == {}
    scai = [{"Conversation_no": 9, "Turn_no": 1, "Question": "q", "Context": [], "Truth_rewrite": "rw",
             "Truth_answer": "a", "Truth_passages": ["p1", "p2"]}]
    cset = read_qrecc(write_json(tmp_path / "scai.json", scai), "train", qid_scheme="row", row_offset=100)
    assert cset.turns()[0].rewrite == "rw" and cset.qrels == {"100": {"p1": 1, "p2": 1}}


def test_qrecc_qrels_file_overrides_and_is_cut_to_own_turns(tmp_path):
    write_qrels({"5_2": {"d1": 1}, "6_1": {"d9": 1}}, tmp_path / "qrels.txt")
    cset = read_qrecc(write_json(tmp_path / "t.json", QRECC), "val", tmp_path / "qrels.txt")
    assert cset.qrels == {"5_2": {"d1": 1}} and cset.dropped_qrels == 1


CAST_2020 = [{"number": 81, "turn": [
    {"number": 1, "raw_utterance": "How do you know when your garage door opener is going bad?",
     "manual_rewritten_utterance": "How do you know when your garage door opener is going bad?",
     "automatic_rewritten_utterance": "garage door opener going bad", "manual_canonical_result_id": "MARCO_1"},
    {"number": 2, "raw_utterance": "Now it stopped working. Why?",
     "manual_rewritten_utterance": "Now my garage door opener stopped working. Why?",
     "automatic_rewritten_utterance": "Why did garage door opener stop working?"}]}]


def test_cast_2020_turns_rewrites_and_graded_qrels(tmp_path):
    write_qrels({"81_2": {"MARCO_7": 2, "CAR_x": 0}, "99_1": {"d": 1}}, tmp_path / "2020qrels.txt")
    cset = read_cast(write_json(tmp_path / "topics.json", CAST_2020), "test", tmp_path / "2020qrels.txt")
    turn = cset.turns()[1]
    assert cset.format == "cast" and turn.qid == "81_2"
    assert turn.rewrite == "Now my garage door opener stopped working. Why?"
    assert turn.history == (Utterance("user", "How do you know when your garage door opener is going bad?"),)
    assert cset.qrels == {"81_2": {"MARCO_7": 2, "CAR_x": 0}}
    auto = read_cast(tmp_path / "topics.json", rewrite="automatic")
    assert auto.turns()[1].rewrite == "Why did garage door opener stop working?"


def test_cast_2022_flattened_paths_keep_shared_turns_once(tmp_path):
    shared = {"number": "1-1", "utterance": "What was COP26 about?", "manual_rewritten_utterance": "What was COP26?",
              "response": "A UN climate summit.", "provenance": ["MARCO_26_1-1"]}
    path_a = [shared, {"number": "1-3", "utterance": "Effects of these changes?", "response": "Floods."}]
    path_b = [shared, {"number": "2-1", "utterance": "Tell me more.", "response": "More."}]
    topics = [{"number": 132, "turn": path_a}, {"number": 132, "turn": path_b}]
    cset = read_cast(write_json(tmp_path / "2022.json", topics))
    assert cset.qids() == ["132_1-1", "132_1-3", "132_2-1"]
    assert [c.conv_id for c in cset.conversations] == ["132", "132#2"]
    last = cset.turns()[2]
    assert [u.text for u in last.history] == ["What was COP26 about?", "A UN climate summit."]


def test_ikat_2023_ptkb_and_resolved_utterance(tmp_path):
    topics = [{"number": "9-1", "title": "Finding a university", "ptkb": {"2": "I live in the Netherlands.",
                                                                         "1": "I studied computer science."},
               "turns": [{"turn_id": 1, "utterance": "Can you help me find a university?",
                          "resolved_utterance": "Can you help me find a university for a master's?",
                          "response": "Sure.", "ptkb_provenance": [1], "response_provenance": []}]}]
    cset = read_cast(write_json(tmp_path / "2023_test_topics.json", topics))
    assert cset.format == "ikat" and cset.qids() == ["9-1_1"]
    assert cset.conversations[0].ptkb == ("I studied computer science.", "I live in the Netherlands.")
    assert cset.turns()[0].rewrite == "Can you help me find a university for a master's?"


def test_malformed_topics_name_the_entry(tmp_path):
    with pytest.raises(DataError, match=r"train\.json: row 1: missing 'question'"):
        read_topiocqa(write_json(tmp_path / "train.json", [TOPIOCQA_TRAIN[0], {"conv_id": 1, "turn_id": 2}]), "t")
    (tmp_path / "broken.json").write_text('[{"Conversation_no": 1,\n "Turn_no": }]')
    with pytest.raises(DataError, match=r"broken\.json:2: not valid JSON"):
        read_qrecc(tmp_path / "broken.json", "train")
    with pytest.raises(DataError, match="query id '5_1' appears twice"):
        read_qrecc(write_json(tmp_path / "dup.json", [QRECC[0], QRECC[0]]), "train")
    with pytest.raises(DataError, match="'Context' must be a list of strings"):
        read_qrecc(write_json(tmp_path / "ctx.json", [dict(QRECC[1], Context=[1, 2])]), "train")


# ---------------------------------------------------------------- the conv_retrieval data module


@pytest.fixture
def topiocqa_files(tmp_path):
    write_json(tmp_path / "train.json", TOPIOCQA_TRAIN)
    write_json(tmp_path / "dev.json", TOPIOCQA_DEV)
    docs = [Doc(str(i), f"passage number {i}", f"Title {i}") for i in range(10, 60)]
    write_corpus_tsv(docs, tmp_path / "full_wiki_segments.tsv")
    ranking = {str(row): {str(d): 100.0 - d for d in range(10, 60)} for row in range(3)}  # doc 10 ranked first
    write_json(tmp_path / "run.json", ranking)
    return tmp_path


def topiocqa_module(root, seed=0, **extra):
    cfg = compose("kd_digits", ["data=topiocqa"]).data
    files = {"train": {"topics": str(root / "train.json")}, "val": {"topics": str(root / "dev.json")},
             "corpus": str(root / "full_wiki_segments.tsv"), "batch_size": 2}
    cfg = OmegaConf.merge(cfg, files, extra)
    return DATASETS.get("conv_retrieval")(cfg, shuffle_seed=seed)


def test_teacher_window_negatives_and_scores(topiocqa_files):
    dm = topiocqa_module(topiocqa_files, teacher_runs=[str(topiocqa_files / "run.json")],
                         negatives={"count": 4, "window": [2, 8]})
    example = dm.splits["train"][(0, 1)]  # row 1: positive 12, teacher ranks 10, 11, [12..17], 18, ...
    assert example["positive_id"] == "12" and example["positive"] == "Title 12. passage number 12"
    assert set(example["negative_ids"]) <= {"13", "14", "15", "16", "17"} and len(set(example["negative_ids"])) == 4
    assert example["teacher_scores"][0] == 88.0  # the positive's own score: it is inside the window
    assert example["teacher_scores"][1:] == [100.0 - int(d) for d in example["negative_ids"]]
    outside = dm.splits["train"][(0, 0)]  # row 0: positive 11 is ranked 2nd, outside the window
    assert outside["teacher_scores"][0] == 88.0  # falls back to the window's maximum
    assert example["conversation"] == "when was it published [SEP] Frank Herbert [SEP] who wrote dune"


def test_positive_score_top_never_ranks_the_positive_below_a_candidate(topiocqa_files):
    run = [str(topiocqa_files / "run.json")]
    spec = topiocqa_module(topiocqa_files, teacher_runs=run, negatives={"count": 4, "window": [0, 8]})
    top = topiocqa_module(topiocqa_files, teacher_runs=run,
                          negatives={"count": 4, "window": [0, 8], "positive_score": "top"})
    # row 1: positive 12 is the teacher's 3rd (score 88) behind docs 10 (90) and 11 (89), both in the window
    assert spec.splits["train"][(0, 1)]["teacher_scores"][0] == 88.0
    assert top.splits["train"][(0, 1)]["teacher_scores"][0] == 90.0
    assert top.splits["train"][(0, 1)]["negative_ids"] == spec.splits["train"][(0, 1)]["negative_ids"]
    with pytest.raises(ConfigError, match="positive_score must be one of window, top, got 'best'"):
        topiocqa_module(topiocqa_files, teacher_runs=run, negatives={"positive_score": "best"})


def test_two_teacher_runs_are_fused_with_the_floor_rule_by_default(topiocqa_files):
    """Run a scores on a large scale and lists every doc; run b is small-scale and lists docs 10 and 13 only, so
    b's floor (its lowest listed score) is 1.0. Row 1's positive is doc 12, inside the window [0, 8)."""
    small = {str(row): {"10": 2.0, "13": 1.0} for row in range(3)}
    write_json(topiocqa_files / "small.json", small)
    runs = [str(topiocqa_files / "run.json"), str(topiocqa_files / "small.json")]
    window = {"count": 7, "window": [0, 8]}
    default = topiocqa_module(topiocqa_files, teacher_runs=runs, negatives=window).splits["train"][(0, 1)]
    by_doc = dict(zip(default["negative_ids"], default["teacher_scores"][1:], strict=True))
    # mean over both teachers, b contributing its floor 1.0 where it did not list the doc: (a + b) / 2
    assert default["teacher_scores"][0] == (88.0 + 1.0) / 2
    assert by_doc["10"] == (90.0 + 2.0) / 2 and by_doc["11"] == (89.0 + 1.0) / 2 and by_doc["13"] == (87.0 + 1.0) / 2
    skip = topiocqa_module(topiocqa_files, teacher_runs=runs, negatives=window,
                           teacher_missing="skip").splits["train"][(0, 1)]
    by_doc = dict(zip(skip["negative_ids"], skip["teacher_scores"][1:], strict=True))
    assert skip["teacher_scores"][0] == 88.0 and by_doc["11"] == 89.0  # a's scale alone
    assert "10" not in by_doc  # the doc both teachers ranked first (46.0) falls below a's stragglers, out of the window


def test_sampling_is_seeded_by_epoch_and_index(topiocqa_files):
    kwargs = {"teacher_runs": [str(topiocqa_files / "run.json")], "negatives": {"count": 3, "window": [0, 40]}}
    a, b = topiocqa_module(topiocqa_files, **kwargs), topiocqa_module(topiocqa_files, **kwargs)
    assert a.splits["train"][(0, 2)] == b.splits["train"][(0, 2)]
    assert a.splits["train"][(0, 2)]["negative_ids"] != a.splits["train"][(1, 2)]["negative_ids"]
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)
    batch = next(iter(loader))
    assert set(batch) == {"index", "qid", "conversation", "utterance", "rewrite", "positive", "positive_id",
                          "negatives", "negative_ids", "teacher_scores", "docs", "rewrites"}
    assert batch["docs"][0] == [batch["positive"][0], *batch["negatives"][0]]  # the method's view: positive first
    assert batch["teacher_scores"].shape == (2, 4) and batch["index"].dtype == torch.long
    i = int(batch["index"][0])
    assert batch["negative_ids"][0] == a.splits["train"][(1, i)]["negative_ids"]


def test_dev_examples_never_carry_train_positives(topiocqa_files):
    write_json(topiocqa_files / "qrel_rowid_dev.json", {"0": {"21": 1}, "1": {"22": 1}, "2": {"13": 1}})
    dm = topiocqa_module(topiocqa_files, val={"qrels": str(topiocqa_files / "qrel_rowid_dev.json")},
                         teacher_runs=[str(topiocqa_files / "run.json")])
    train_docs = {d for docs in dm.qrels("train").values() for d in docs}
    for split in ("val", "test"):
        examples = [dm.splits[split][i] for i in range(len(dm.splits[split]))]
        assert [e["positive_id"] for e in examples] == ["21", "22"]
        assert not {e["positive_id"] for e in examples} & train_docs
        assert all(e["teacher_scores"] is None for e in examples)  # the train teacher run is never used here
    assert dm.split_info()["dropped_qrels"]["val"] == 1


def test_run_keyed_by_other_ids_and_missing_paths_are_errors(topiocqa_files):
    write_json(topiocqa_files / "dev_run.json", {"7_1": {"21": 1.0}})
    with pytest.raises(DataError, match="no query id of the teacher run"):
        topiocqa_module(topiocqa_files, teacher_runs=[str(topiocqa_files / "dev_run.json")])
    with pytest.raises(DataError, match="data.corpus is not set") as err:
        topiocqa_module(topiocqa_files, corpus=None)
    assert "data.corpus=<path>" in err.value.hint


def test_random_negative_pool_is_a_uniform_seeded_reservoir(tmp_path):
    from zoo.data.conv_retrieval import ConvRetrievalDataModule

    write_corpus_tsv([Doc(str(i), f"text {i}") for i in range(100)], tmp_path / "c.tsv")
    kept = [0] * 100
    for seed in range(200):
        docs, pool = ConvRetrievalDataModule._read_corpus(tmp_path / "c.tsv", {"5"}, 10, seed)
        assert len(set(pool)) == 10 and "5" in docs and set(pool) <= set(docs)
        for doc in pool:
            kept[int(doc)] += 1
    assert ConvRetrievalDataModule._read_corpus(tmp_path / "c.tsv", set(), 10, 3)[1] == (
        ConvRetrievalDataModule._read_corpus(tmp_path / "c.tsv", set(), 10, 3)[1])
    for quarter in range(4):  # each document is kept with probability 10/100
        assert 0.07 < sum(kept[25 * quarter: 25 * quarter + 25]) / (25 * 200) < 0.13


def test_teacher_run_mined_from_the_teacher_once_and_used_for_candidates(topiocqa_files):
    pytest.importorskip("pyserini")
    from zoo.archs.splade import build_tiny_lexical
    from zoo.data.trec import read_run

    (topiocqa_files / "rewrites.tsv").write_text("0\tthe passage number 11\n1\tpassage number 12 in 1965\n"
                                                 "2\tpassage 13 about a lighthouse\n")
    kwargs = {"train": {"rewrites": str(topiocqa_files / "rewrites.tsv")}, "teacher_runs": ["teacher"],
              "negatives": {"count": 3, "window": [0, 40]}}
    dm = topiocqa_module(topiocqa_files, **kwargs)
    assert dm.splits["train"][(0, 1)]["teacher_scores"] is None  # no run until the teachers are there
    with pytest.raises(DataError, match="has no teacher"):
        dm.attach_teachers([])
    teacher, said = build_tiny_lexical(), []
    dm.attach_teachers([teacher], say=said.append)
    run = read_run(dm.teacher_run_file)
    assert set(run) == {"0", "1", "2"} and len(said) == 1
    assert dm.split_info()["teacher_runs"] == [str(dm.teacher_run_file)]
    example = dm.splits["train"][(0, 1)]
    assert example["teacher_scores"][1:] == pytest.approx([run["1"][d] for d in example["negative_ids"]])
    # the run's scores are the teacher's dot products (up to the index's quantisation)
    query = teacher.encode(["passage number 12 in 1965"]).detach()
    negative = teacher.encode([example["negatives"][0]]).detach()
    assert example["teacher_scores"][1] == pytest.approx(float((query * negative).sum()), rel=0.02)
    again, said = topiocqa_module(topiocqa_files, **kwargs), []
    again.attach_teachers([teacher], say=said.append)
    assert again.teacher_run_file == dm.teacher_run_file and said == []  # stored: not searched again


def test_with_a_teacher_run_the_corpus_is_read_once_when_the_teachers_come_first(topiocqa_files, monkeypatch):
    """As training runs it: the data module, then the teachers' run, then the splits. The examples' pass over the
    corpus (25.7M passages for TopiOCQA) happens once, with the teacher's candidates in it."""
    pytest.importorskip("pyserini")
    from zoo.archs.splade import build_tiny_lexical
    from zoo.data.conv_retrieval import ConvRetrievalDataModule

    (topiocqa_files / "rewrites.tsv").write_text("0\tthe passage number 11\n1\tpassage number 12 in 1965\n"
                                                 "2\tpassage 13 about a lighthouse\n")
    reads, read_corpus = [], ConvRetrievalDataModule._read_corpus
    monkeypatch.setattr(ConvRetrievalDataModule, "_read_corpus",
                        staticmethod(lambda *args: reads.append(args[1]) or read_corpus(*args)))
    dm = topiocqa_module(topiocqa_files, train={"rewrites": str(topiocqa_files / "rewrites.tsv")},
                         teacher_runs=["teacher"], negatives={"count": 3, "window": [0, 40]})
    dm.attach_teachers([build_tiny_lexical()], say=lambda _: None)
    assert dm.splits["train"][(0, 1)]["teacher_scores"] is not None and len(dm.splits["val"]) > 0
    assert len(reads) == 1
    with pytest.raises(ConfigError, match="teacher_missing must be one of skip, floor, got 'zero'"):
        topiocqa_module(topiocqa_files, teacher_missing="zero")  # settings are checked up front, not at first use

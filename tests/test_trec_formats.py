"""TREC qrels/runs, query TSVs and JSONL/TSV corpora: round trips, and every malformed line named by file:line."""

import gzip
import json

import pytest

from zoo.data.trec import (
    Doc,
    fuse_runs,
    iter_corpus,
    load_corpus,
    passage_text,
    read_qrels,
    read_queries,
    read_run,
    write_corpus_jsonl,
    write_corpus_tsv,
    write_qrels,
    write_queries,
    write_run,
)
from zoo.errors import DataError


def test_qrels_round_trip_keeps_grades_and_order(tmp_path):
    qrels = {"81_1": {"MARCO_5498474": 2, "CAR_ab": 0}, "81_2": {"MARCO_1": 1, "MARCO_2": -1}}
    write_qrels(qrels, tmp_path / "q.txt")
    assert (tmp_path / "q.txt").read_text().splitlines()[0] == "81_1 0 MARCO_5498474 2"
    assert read_qrels(tmp_path / "q.txt") == qrels


def test_qrels_accept_tabs_blank_lines_and_json(tmp_path):
    (tmp_path / "q.txt").write_text("1\tQ0\td1\t1\n\n1 0 d2 0\n")
    assert read_qrels(tmp_path / "q.txt") == {"1": {"d1": 1, "d2": 0}}
    (tmp_path / "q.json").write_text(json.dumps({"0": {"17": 1}, "1": {"4": 1.0}}))
    assert read_qrels(tmp_path / "q.json") == {"0": {"17": 1}, "1": {"4": 1}}


def test_run_round_trip_ranks_by_score_then_docid(tmp_path):
    run = {"q1": {"d1": 1.5, "d2": 3.25, "d3": 1.5}, "q2": {"d9": -0.5}}
    write_run(run, tmp_path / "r.trec", tag="splade")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert lines[:3] == ["q1 Q0 d2 1 3.250000 splade", "q1 Q0 d1 2 1.500000 splade", "q1 Q0 d3 3 1.500000 splade"]
    assert read_run(tmp_path / "r.trec") == run
    write_run(run, tmp_path / "top1.trec", depth=1)
    assert read_run(tmp_path / "top1.trec") == {"q1": {"d2": 3.25}, "q2": {"d9": -0.5}}


def test_json_run_is_disco_teacher_layout(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"0": {"12": 31.5, "40": 20}}))
    assert read_run(tmp_path / "run.json") == {"0": {"12": 31.5, "40": 20.0}}


def test_fuse_runs_mean_sum_max_over_the_teachers_that_listed_a_doc():
    a, b = {"q": {"x": 10.0, "y": 4.0}}, {"q": {"x": 20.0, "z": 6.0}}
    assert fuse_runs([a, b], "mean", missing="skip") == {"q": {"x": 15.0, "y": 4.0, "z": 6.0}}
    assert fuse_runs([a, b], "sum")["q"]["x"] == 30.0 and fuse_runs([a, b], "max")["q"]["x"] == 20.0
    with pytest.raises(DataError, match="unknown run fusion"):
        fuse_runs([a, b], "median")


def test_fuse_runs_floor_gives_an_unlisted_doc_the_teachers_lowest_listed_score():
    # teacher a scores on a larger scale than b; y is a's alone, x both list, z is b's alone
    a, b = {"q": {"x": 30.0, "y": 28.0, "w": 20.0}}, {"q": {"x": 12.0, "z": 11.0, "v": 5.0}, "r": {"x": 1.0}}
    skip = fuse_runs([a, b], "mean", missing="skip")
    assert max(skip["q"], key=skip["q"].get) == "y"  # the scale of a alone puts y above the doc both teachers list
    floor = fuse_runs([a, b], "mean")  # floor is the default
    assert floor["q"] == {"x": 21.0, "y": (28.0 + 5.0) / 2, "w": (20.0 + 5.0) / 2, "z": (20.0 + 11.0) / 2,
                          "v": (20.0 + 5.0) / 2}
    assert floor["r"] == {"x": 1.0}  # a has no list for r: it contributes nothing
    with pytest.raises(DataError, match="did not list"):
        fuse_runs([a, b], "mean", missing="zero")


def test_queries_round_trip(tmp_path):
    write_queries({"0": "where is it?\tnow", "1": "and then"}, tmp_path / "q.tsv")
    assert read_queries(tmp_path / "q.tsv") == {"0": "where is it? now", "1": "and then"}


def test_jsonl_corpus_accepts_pyserini_and_beir_keys(tmp_path):
    rows = [{"id": "a", "contents": "alpha"}, {"_id": "b", "text": "beta", "title": "B"}, {"docid": 7, "text": "g"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert list(iter_corpus(tmp_path / "c.jsonl")) == [Doc("a", "alpha"), Doc("b", "beta", "B"), Doc("7", "g")]


def test_jsonl_corpus_round_trip_gzipped(tmp_path):
    docs = [Doc("py:gzip", "Functions that read and write gzipped files.", "gzip module"), Doc("d2", "plain")]
    write_corpus_jsonl(docs, tmp_path / "c.jsonl.gz")
    with gzip.open(tmp_path / "c.jsonl.gz", "rt") as handle:
        assert json.loads(handle.readline())["contents"].startswith("Functions")
    assert list(iter_corpus(tmp_path / "c.jsonl.gz")) == docs


def test_tsv_corpus_skips_topiocqa_header_and_builds_title_text(tmp_path):
    docs = [Doc("1", "Jamie Lannister is a character.", "Jaime Lannister"), Doc("2", "No title here")]
    write_corpus_tsv(docs, tmp_path / "full_wiki_segments.tsv")
    assert (tmp_path / "full_wiki_segments.tsv").read_text().startswith("id\ttext\ttitle\n")
    read = list(iter_corpus(tmp_path / "full_wiki_segments.tsv"))
    assert read == docs
    assert passage_text(read[0]) == "Jaime Lannister. Jamie Lannister is a character." and passage_text(read[1]) == (
        "No title here")


def test_load_corpus_keeps_only_wanted_ids_and_rejects_duplicates(tmp_path):
    (tmp_path / "c.tsv").write_text("1\tone\n2\ttwo\n3\tthree\n2\tagain\n")
    assert list(load_corpus(tmp_path / "c.tsv", ids={"1", "3"})) == ["1", "3"]
    with pytest.raises(DataError, match="'2' appears twice"):
        load_corpus(tmp_path / "c.tsv")


MALFORMED = [  # (file name, third line, reader, message fragment)
    ("q.txt", "q1 0 d3", read_qrels, "expected 4 fields"),
    ("q.txt", "q1 0 d3 yes", read_qrels, "relevance 'yes' is not an integer"),
    ("q.txt", "q1 0 d3 1.5", read_qrels, "relevance '1.5' is not an integer"),
    ("q.txt", "q1 0 d1 0", read_qrels, "duplicate judgement for query 'q1' and document 'd1'"),
    ("r.trec", "q1 Q0 d3 3 0.5", read_run, "expected 6 fields"),
    ("r.trec", "q1 Q0 d3 3 high tag", read_run, "score 'high' is not a finite number"),
    ("r.trec", "q1 Q0 d3 3 nan tag", read_run, "score 'nan' is not a finite number"),
    ("r.trec", "q1 Q0 d3 third 0.5 tag", read_run, "rank 'third' is not an integer"),
    ("r.trec", "q1 Q0 d1 3 0.5 tag", read_run, "document 'd1' listed twice for query 'q1'"),
    ("c.jsonl", '{"id": "d3", "contents": "x"', lambda p: list(iter_corpus(p)), "not valid JSON"),
    ("c.jsonl", '{"id": " ", "contents": "x"}', lambda p: list(iter_corpus(p)), "empty or non-scalar document id"),
    ("c.jsonl", '{"contents": "x"}', lambda p: list(iter_corpus(p)), "no document id"),
    ("c.jsonl", '{"id": "d3", "body": "x"}', lambda p: list(iter_corpus(p)), "no document text"),
    ("c.jsonl", '["d3", "x"]', lambda p: list(iter_corpus(p)), "expected a JSON object"),
    ("c.tsv", "d3 only one field", lambda p: list(iter_corpus(p)), "got 1 fields"),
    ("c.tsv", "d3\ta\tb\tc", lambda p: list(iter_corpus(p)), "got 4 fields"),
    ("c.tsv", "\tempty id", lambda p: list(iter_corpus(p)), "empty document id"),
    ("queries.tsv", "q3 no tab", read_queries, "expected 'qid<TAB>text'"),
]
GOOD_LINES = {"q.txt": ["q1 0 d1 1", "q1 0 d2 0"], "r.trec": ["q1 Q0 d1 1 2.0 t", "q1 Q0 d2 2 1.0 t"],
              "c.jsonl": ['{"id": "d1", "contents": "a"}', '{"id": "d2", "contents": "b"}'],
              "c.tsv": ["d1\ta", "d2\tb"], "queries.tsv": ["q1\ta", "q2\tb"]}


@pytest.mark.parametrize(("name", "line", "reader", "fragment"), MALFORMED,
                         ids=[f"{m[0]}:{m[3][:30]}" for m in MALFORMED])
def test_malformed_line_is_one_line_error_with_file_and_line(tmp_path, name, line, reader, fragment):
    path = tmp_path / name
    path.write_text("\n".join(GOOD_LINES[name] + [line, GOOD_LINES[name][0]]) + "\n")
    with pytest.raises(DataError) as err:
        reader(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ") and fragment in message and "\n" not in message


def test_bad_utf8_names_its_line(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_bytes(b"d1\tgood\n" * 3000 + b"d2\t\xff\xfe bad\n")
    with pytest.raises(DataError, match=r"c\.tsv:3001: not valid UTF-8"):
        list(iter_corpus(path))


def test_json_errors_name_the_file(tmp_path):
    (tmp_path / "bad.json").write_text('{"0": {"d": 1},\n "1": }')
    with pytest.raises(DataError, match=r"bad\.json:2: not valid JSON"):
        read_qrels(tmp_path / "bad.json")
    (tmp_path / "grade.json").write_text('{"0": {"d": 0.5}}')
    with pytest.raises(DataError, match="is not an integer relevance"):
        read_qrels(tmp_path / "grade.json")
    (tmp_path / "score.json").write_text('{"0": {"d": "high"}}')
    with pytest.raises(DataError, match="is not a finite score"):
        read_run(tmp_path / "score.json")


def test_missing_file_and_unknown_corpus_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_qrels(tmp_path / "absent.txt")
    (tmp_path / "c.parquet").write_text("x")
    with pytest.raises(DataError, match="unknown corpus format") as err:
        list(iter_corpus(tmp_path / "c.parquet"))
    assert "*.jsonl" in err.value.hint

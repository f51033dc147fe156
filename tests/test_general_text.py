"""Unlabelled general text for distillation stages: the WordNet, fortune and plain-lines readers on small files in
the real formats (errors naming file and line), packing into [CLS] chunk [SEP] sequences, the seeded per-epoch draw,
and the real Debian corpus where it is installed."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from zoo.archs.text import load_tokenizer
from zoo.config import compose
from zoo.data.general_text import read_fortunes, read_wordnet, source_files
from zoo.errors import DataError
from zoo.registry import DATASETS

WORDNET_HEADER = ["  1 This software and database is being provided to you, the LICENSEE, by  ",
                  "  2 Princeton University under the following license.  By obtaining, using  "]
WORDNET_LINES = [
    "00205598 30 v 02 turn_around 0 pick_up 0 001 @ 00205046 v 0000 02 + 01 00 + 02 00 | improve significantly; "
    'go from bad to good; "Her performance in school picked up"  ',
    "00205766 30 v 03 brisk 0 brisk_up 0 brisken 0 001 @ 00438178 v 0000 01 + 01 00 | become brisk  ",
    "00206797 30 v 01 turn_around c 001 @ 00205885 v 0000 03 + 08 00 | improve dramatically; "
    '"The new strategy turned around sales"; "The tutor turned around my son\'s performance in math"  ',
]
FORTUNES = ("A celebrity is a person who is known for his well-knownness.\n%\n"
            "A \"critic\" is a man who creates nothing and thereby feels qualified to\njudge the work of creative "
            "men.\n\t\t-- Robert Heinlein\n%\n")
LINES = [f"the {animal} sat on the {thing} and looked at the {colour} sky" for animal in ("cat", "dog", "owl")
         for thing in ("mat", "wall") for colour in ("grey", "blue")]


def write_wordnet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.verb").write_text("\n".join(WORDNET_HEADER + WORDNET_LINES) + "\n", encoding="utf-8")
    return folder


def write_fortunes(folder: Path) -> Path:
    """A fortune-mod folder as Debian installs it: a file, its .dat index and its .u8 twin (a link)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people").write_text(FORTUNES, encoding="utf-8")
    (folder / "people.dat").write_bytes(b"\x00\x00\x00\x02\x00\x00\x00\x02")
    (folder / "people.u8").symlink_to("people")
    (folder / "wisdom").write_text("Stay humble.\n%\n%\nKnow thyself.", encoding="utf-8")  # no closing %
    return folder


def write_lines(path: Path, lines=LINES) -> Path:
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def general(sources, **extra):
    cfg = compose("kd_digits", ["data=general_english"]).data
    for key, value in {"sources": sources, **extra}.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return DATASETS.get("general_text")(cfg)


def test_readers_take_glosses_examples_entries_and_lines(tmp_path):
    assert read_wordnet(write_wordnet(tmp_path / "wn") / "data.verb") == [
        "improve significantly; go from bad to good", "Her performance in school picked up", "become brisk",
        "improve dramatically", "The new strategy turned around sales",
        "The tutor turned around my son's performance in math"]
    folder = write_fortunes(tmp_path / "fortunes")
    assert [p.name for p in source_files("fortune", folder)] == ["people.u8", "wisdom"]  # no .dat, no twin
    assert read_fortunes(folder / "people.u8")[1].endswith("men.\n\t\t-- Robert Heinlein")
    assert read_fortunes(folder / "wisdom") == ["Stay humble.", "Know thyself."]  # the empty entry is dropped
    dm = general([{"format": "wordnet", "path": str(tmp_path / "wn")}, {"format": "fortune", "path": str(folder)},
                  {"format": "lines", "path": str(write_lines(tmp_path / "l.txt"))}], max_length=8, epoch_size=4)
    info = dm.split_info()
    assert [(s["format"], s["texts"]) for s in info["sources"]] == [("wordnet", 6), ("fortune", 4), ("lines", 12)]
    assert info["texts"] == 22 and sum(s["sequences"] for s in info["sources"]) == info["sequences"]
    assert info["sizes"] == {"train": 4} and dm.kind == "unlabelled_text" and dm.num_classes is None


def test_texts_are_packed_into_cls_chunk_sep_sequences_of_max_length(tmp_path):
    tokenizer = load_tokenizer("minilm")
    loads = load_tokenizer.cache_info().misses
    dm = general([{"format": "lines", "path": str(write_lines(tmp_path / "l.txt"))}], max_length=10, epoch_size=5)
    assert load_tokenizer.cache_info().misses == loads  # the tokenizer's files are read once per process
    stream = [t for line in LINES for t in [*tokenizer(line, add_special_tokens=False)["input_ids"],
                                             tokenizer.sep_token_id]][:-1]  # [SEP] between texts
    sequences = dm.splits["train"].sequences
    assert sequences.shape == (len(stream) // 8, 10) and dm.split_info()["tokens"] == len(stream)
    assert (sequences[:, 0] == tokenizer.cls_token_id).all() and (sequences[:, -1] == tokenizer.sep_token_id).all()
    assert sequences[:, 1:-1].flatten().tolist() == stream[:len(sequences) * 8]  # the short last chunk is dropped
    assert tokenizer.decode(sequences[0]).startswith("[CLS] the cat sat on the mat and")


def test_each_epoch_draws_its_own_seeded_subset_and_wraps_past_the_corpus(tmp_path):
    source = [{"format": "lines", "path": str(write_lines(tmp_path / "l.txt", LINES * 4))}]
    dm = general(source, max_length=8, epoch_size=7, batch_size=7)
    train, n = dm.splits["train"], len(dm.splits["train"].sequences)
    batch = train.__getitems__([(1, i) for i in range(7)])
    assert set(batch) == {"inputs", "index"} and batch["inputs"]["input_ids"].shape == (7, 8)
    assert batch["inputs"]["attention_mask"].eq(1).all() and batch["inputs"]["attention_mask"].dtype == torch.long
    perm = np.random.default_rng([0, 0, 1]).permutation(n)
    assert batch["index"].tolist() == perm[:7].tolist()
    assert torch.equal(batch["inputs"]["input_ids"], train.sequences[batch["index"]])
    assert train.__getitems__([0, 1])["index"].tolist() == train.__getitems__([(0, 0), (0, 1)])["index"].tolist()
    assert train.order(0).tolist() != train.order(1).tolist()
    loader = dm.train_dataloader()  # the (epoch, index) pairs come from EpochTaggedSampler
    loader.sampler.set_epoch(1)
    assert sorted(next(iter(loader))["index"].tolist()) == sorted(perm[:7].tolist())
    reseeded = DATASETS.get("general_text")(dm.cfg, shuffle_seed=1).splits["train"]
    assert reseeded.order(1).tolist() != train.order(1).tolist()
    wrapped = general(source, max_length=8, epoch_size=2 * n + 3).splits["train"]
    counts = np.bincount(wrapped.order(0), minlength=n)
    assert len(wrapped) == 2 * n + 3 and counts.min() == 2 and counts.max() == 3  # each once before any twice


def test_max_texts_reads_a_seeded_choice(tmp_path):
    source = [{"format": "lines", "path": str(write_lines(tmp_path / "l.txt"))}]
    few = general(source, max_length=8, max_texts=5)
    assert few.split_info()["texts"] == 5 and few.fingerprint == general(source, max_length=8, max_texts=5).fingerprint
    assert general(source, max_length=8, max_texts=5, split_seed=1).fingerprint != few.fingerprint


def test_bad_sources_are_one_line_errors_naming_file_and_line(tmp_path):
    lines = write_lines(tmp_path / "l.txt")
    (tmp_path / "latin1.txt").write_bytes("a first line\na second line\nun caf\u00e9\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "wn").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "wn" / "data.noun").write_text("00001740 03 n 01 entity 0 000 no gloss here\n", encoding="utf-8")
    for sources, message in [
        ([{"format": "lines", "path": str(tmp_path / "missing.txt")}], r"data.sources\[0\]: '.*missing.txt' not found"),
        ([{"format": "xml", "path": str(lines)}], r"data.sources\[0\]: unknown format 'xml'"),
        ([{"format": "lines", "path": str(tmp_path / "latin1.txt")}],
         r"latin1.txt:3: not UTF-8 \(byte 0xe9 at column 7\)"),
        ([{"format": "lines", "path": str(lines)}, {"format": "lines", "path": str(tmp_path / "blank.txt")}],
         r"data.sources\[1\]: no text in '.*blank.txt'"),
        ([{"format": "wordnet", "path": str(tmp_path / "wn")}], r"wn/data.noun:1: not a WordNet data line"),
        ([{"format": "fortune", "path": str(tmp_path / "empty")}], r"data.sources\[0\]: no text in '.*empty'"),
        ([], r"data.sources is empty"),
    ]:
        with pytest.raises(DataError, match=message) as error:
            general(sources)
        assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=r"give 38 tokens, fewer than one sequence of data.max_length - 2 = 62"):
        general([{"format": "lines", "path": str(write_lines(tmp_path / "short.txt", LINES[:3]))}])
    with pytest.raises(DataError, match=r"has only a train split"):
        general([{"format": "lines", "path": str(lines)}], max_length=8).test_dataloader()


DEBIAN = [Path("/usr/share/wordnet/data.noun"), Path("/usr/share/games/fortunes/fortunes")]


@pytest.mark.skipif(not all(p.is_file() for p in DEBIAN), reason="apt-get install wordnet-base fortunes")
def test_the_real_debian_corpus_packs_into_english_sequences():
    """The shipped config on the installed WordNet and fortunes (.ci/run installs both), 2000 texts of them."""
    dm = general(list(compose("kd_digits", ["data=general_english"]).data.sources), max_texts=2000)
    info = dm.split_info()
    assert info["texts"] == 2000 and all(s["texts"] > 0 for s in info["sources"])
    tokenizer = load_tokenizer("minilm")
    sequences = dm.splits["train"].sequences
    assert sequences.shape[1] == 64 and (sequences[:, 0] == tokenizer.cls_token_id).all()
    words = [set(tokenizer.decode(row[1:-1]).split()) for row in sequences]
    common = {"the", "a", "of", "to", "and", "in", "or", "is", "that", "for"}
    assert np.mean([len(w & common) >= 2 for w in words]) > 0.9  # English: nearly every sequence has its glue words

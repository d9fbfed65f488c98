import numpy as np
import pandas as pd
import pytest

from conftest import DATA, review_frame, tiny_config
from core.data import Encoder, Examples, join_fields, load_eval_examples, load_splits, map_labels, tokenize_cached


@pytest.mark.parametrize("raw, expected", [
    ([0, 1, 1], [0, 1, 1]), ([1, 2, 2], [0, 1, 1]), (["neg", "pos"], [0, 1]),
    (["Negative", "POSITIVE"], [0, 1]), (["0", "1"], [0, 1]), ([True, False], [1, 0]),
])
def test_label_mapping(raw, expected):
    assert map_labels(raw).tolist() == expected


def test_unmappable_and_missing_labels_are_named():
    with pytest.raises(ValueError, match=r"^label_field: cannot map labels \['meh'\]"):
        map_labels(["pos", "meh"])
    with pytest.raises(ValueError, match=r"^label_field: cannot map labels \[3, 5\]"):
        map_labels([3, 5])
    with pytest.raises(ValueError, match="^label_field: 1 row"):
        map_labels([0, None])


def test_fields_join_into_one_text():
    assert join_fields(["Great kettle", "Boils fast."]) == "Great kettle. Boils fast."
    assert join_fields(["Wow!", "Boils fast."]) == "Wow! Boils fast."


@pytest.fixture
def encoder_factory(minilm_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    return lambda L, mode: Encoder(tok, L, mode, 0.25)


def test_truncation_keeps_head_tail_or_both(encoder_factory):
    words = " ".join(f"w{i}" for i in range(400))
    for mode in ("head", "tail", "head_tail"):
        enc = encoder_factory(32, mode)
        ids = enc([words])[0]
        assert len(ids) == 32
        text = enc.tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "")
        assert text.startswith("w0") == (mode != "tail")
        assert text.endswith("w399") == (mode != "head")
    short = encoder_factory(32, "head_tail")(["fine"])[0]
    assert short[0] == encoder_factory(32, "head").tokenizer.cls_token_id and len(short) == 3


def test_a_one_megabyte_review_is_cut_before_tokenizing(encoder_factory):
    huge = "great " * 180_000  # ~1 MB
    enc = encoder_factory(64, "head_tail")
    assert len(enc._clip_chars(huge)) <= 2 * enc.max_chars + 1
    assert len(enc([huge])[0]) == 64


def test_windows_cover_a_long_review_from_start_to_end(encoder_factory):
    words = " ".join(f"w{i}" for i in range(300))
    enc = encoder_factory(32, "head_tail")
    ids, owner = enc.windows(["short one", words, "another"], 3)
    assert owner.tolist() == [0, 1, 1, 1, 2]  # short texts stay one window, the long one gets three
    assert all(len(x) <= 32 and x[0] == enc.tokenizer.cls_token_id for x in ids)
    texts = [enc.tokenizer.decode(x, skip_special_tokens=True).replace(" ", "") for x in ids[1:4]]
    assert texts[0].startswith("w0") and texts[-1].endswith("w299")
    assert "w160" in texts[1] and "w0" not in texts[1] and "w299" not in texts[1]  # the middle one reads the middle
    assert enc.windows([words], 1)[0] == enc([words])  # one window is the truncation rule
    few = " ".join(f"w{i}" for i in range(25))  # needs two windows even when four are allowed
    assert len(enc.windows([few], 4)[0]) == 2
    huge = "great " * 180_000  # a 1 MB review still costs at most n windows
    assert len(enc.windows([huge], 4)[0]) == 4


def test_tokenized_data_is_cached_by_content(encoder_factory, tmp_path):
    ex = Examples(["good film", "bad film"], np.array([1, 0]), np.array([0, 1]), "t")
    enc = encoder_factory(16, "head")
    ds, hit = tokenize_cached(ex, enc, tmp_path)
    assert not hit and ds["label"] == [1, 0]
    ds2, hit2 = tokenize_cached(ex, enc, tmp_path)
    assert hit2 and ds2["input_ids"] == ds["input_ids"]
    _, hit3 = tokenize_cached(ex, encoder_factory(8, "head"), tmp_path)  # another length: another entry
    assert not hit3


def test_splits_keep_first_n_and_validation_apart(reviews_dir, tiny_model):
    s = load_splits(tiny_config(tiny_model, reviews_dir, max_train_samples=20, validation_size=10))
    assert s.train.rows.tolist() == list(range(20))  # the first N rows, all of them
    assert len(s.validation) == 10 and not set(s.validation.rows) & set(s.train.rows)
    assert len(s.test) == 16 and s.test.source == "reviews:test"


def test_validation_never_holds_one_label_when_the_split_is_sorted_by_label(tmp_path, reviews_dir, tiny_model):
    """The first 30 rows of a split sorted by label (as the Hub's imdb is) take every negative review, so the rows
    training leaves out are all positive: validation is then carved from the training rows instead, both labels."""
    folder = tmp_path / "sorted"
    folder.mkdir()
    frame = review_frame(40).sort_values("label", kind="stable").reset_index(drop=True)  # 20 negative, then 20 positive
    frame.to_parquet(folder / "train.parquet")
    frame.to_parquet(folder / "test.parquet")
    s = load_splits(tiny_config(tiny_model, folder, max_train_samples=30, validation_size=8))
    assert s.validation.label_counts()["negative"] > 0 and s.validation.label_counts()["positive"] > 0
    assert len(s.train) == 22 and not set(s.validation.rows) & set(s.train.rows)
    assert set(s.train.rows) | set(s.validation.rows) == set(range(30))  # the first 30 rows, as asked
    shuffled = load_splits(tiny_config(tiny_model, reviews_dir, max_train_samples=20, validation_size=10))
    assert not set(shuffled.validation.rows) & set(range(20))  # a mixed split: from the rows training leaves out


def test_a_validation_split_that_leaves_nothing_to_train_on_is_named(reviews_dir, tiny_model):
    with pytest.raises(ValueError, match=r"^validation_size: 48 validation rows leave no training rows out of 48$"):
        load_splits(tiny_config(tiny_model, reviews_dir, max_train_samples=None, validation_size=48.0))


def test_a_single_file_gets_a_held_out_test_split(tmp_path, tiny_model):
    f = tmp_path / "mine.csv"
    review_frame(50).rename(columns={"content": "review"}).to_csv(f, index=False)
    s = load_splits(tiny_config(tiny_model, f, max_train_samples=None, validation_size=5, text_fields=["review"]))
    rows = [set(x.rows.tolist()) for x in (s.train, s.validation, s.test)]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    assert len(s.test) == 10 and sum(map(len, rows)) == 50


def test_empty_reviews_are_dropped_and_all_empty_is_an_error(tmp_path):
    f = tmp_path / "t.jsonl"
    pd.DataFrame({"text": ["good", "   ", "bad"], "label": ["pos", "neg", "neg"]}).to_json(f, orient="records", lines=True)
    ex = load_eval_examples(str(f))
    assert ex.texts == ["good", "bad"] and ex.labels.tolist() == [1, 0]
    # ... but not silently: the rows left out are kept, so a user can be told which.
    assert ex.rows.tolist() == [0, 2] and ex.skipped.tolist() == [1]
    assert ex.skipped_note() == "1 empty review skipped in t.jsonl:test (row 1)"
    assert ex.subset([0]).skipped.tolist() == [] and load_eval_examples(str(f), max_samples=1).skipped.tolist() == []
    pd.DataFrame({"text": ["", " "], "label": [0, 1]}).to_json(f, orient="records", lines=True)
    with pytest.raises(ValueError, match="^text_fields: every review"):
        load_eval_examples(str(f))


@pytest.mark.parametrize("content, message", [
    ("", "^dataset: .* is empty"),
    # the parser's own reason, not datasets' "An error occurred while generating the dataset"
    ("text,label\n\"fine\",1\n\"unclosed,1\nfoo", "^dataset: cannot read bad.csv as csv: .*EOF inside string"),
    ("comment,stars\nnice,5\n", "^text_fields: cannot guess"),
])
def test_bad_files_give_one_line_errors(tmp_path, capfd, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_eval_examples(str(f))
    assert "Failed to read file" not in capfd.readouterr().err  # the reader's own log line, said again


def test_hub_dataset_when_offline_says_so():
    with pytest.raises(ValueError, match="Hugging Face Hub cannot be reached"):
        load_eval_examples("imdb")


@pytest.mark.skipif(not (DATA / "imdb").exists(), reason="needs ../shared/data")
def test_offline_data_loads_with_hub_column_names():
    ex = load_eval_examples(str(DATA / "imdb"), "test", max_samples=5)
    assert len(ex) == 5 and "<br" not in " ".join(ex.texts)
    am = load_eval_examples(str(DATA / "amazon_reviews_multidomain"), "test", max_samples=5)
    assert ". " in am.texts[0]  # title + content


@pytest.mark.parametrize("name, data, message", [
    ("empty.csv", b"", "file: empty.csv is empty"),
    ("latin.csv", "text,label\ncaf\u00e9 cr\u00e8me,1\n".encode("latin-1"), "file: latin.csv is not UTF-8"),
    ("junk.parquet", b"\x00\x01 this is not parquet", "file: junk.parquet is not a readable parquet table"),
    ("numbers.csv", b"a,b\n1,2\n3,4\n", "file: numbers.csv has no text column"),
    ("notes.txt", b"hello", "file: notes.txt is not .csv, .parquet or .jsonl"),
])
def test_uploads_are_refused_with_the_reason(name, data, message):
    from core.data import read_table_bytes

    with pytest.raises(ValueError, match=f"^{message}"):
        read_table_bytes(name, data)


def test_a_good_upload_is_kept_by_content(lab_home):
    from core.data import save_upload

    data = b"review,label\nlovely,pos\nawful,neg\n"
    first, second = save_upload("mine.csv", data), save_upload("mine.csv", data)
    assert first == second and first.read_bytes() == data and first.parent == lab_home / "uploads"

"""Polar phrases: a bag-of-words teacher's strongest words, added to training as one-phrase examples.

A transformer fine-tuned on a few thousand short source reviews learns the words those reviews happen to use
in the contexts they use them; a TF-IDF + logistic-regression model fitted on the same reviews weighs every
word and bigram it saw, and the two err on different target reviews (on held-out IMDB rows the MiniLM source
model and such a model agree on 83.5% of them; bench/README.md). `RunConfig.lexicon_size = N` fits that
model on the run's training reviews (never validation or test), takes its N most positive and N most
negative phrases ("great", "waste", "the worst", "highly") and adds each as a training example of its own,
labelled by the sign of its weight. The model still reads only text and labels, so it stays a plain
sequence classifier, and nothing of the target is used: the source model's zero-shot row stays zero-shot.
Measured on offline-quick's source stage with N 3000 (bench/README.md, "Polar phrases"): on held-out IMDB
rows, +0.28 points zero-shot over three seeds (each seed at or above the preset's), +0.5 on Amazon test, for
a third more training time: a gain inside one seed's spread, so the preset leaves it off.
"""
from __future__ import annotations

import numpy as np

from .data import Examples

# The teacher reads at most this many training reviews (a seeded sample): enough for a vocabulary's
# weights, and bounded for a Hub dataset of millions.
TEACHER_MAX_REVIEWS = 100_000
GROUP = "polar phrase"  # their group, where the data has one (Amazon's domain): kept apart in any listing


def fit_teacher(texts: list[str], labels: np.ndarray):
    """TF-IDF word 1-2-grams (min_df 2, sublinear tf) + logistic regression (C 4), ../shared/data/README.md's
    recipe: the fitted vectorizer and classifier. bench/accuracy.py's baseline is the same model."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    features = vectorizer.fit_transform(texts)
    return vectorizer, LogisticRegression(C=4, max_iter=2000).fit(features, labels)


def polar_phrases(train: Examples, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The n most positive and n most negative phrases of a TF-IDF + logistic-regression model fitted on
    `train` (fewer where it has fewer with that sign), most polar first, with their labels (1 positive)."""
    rows = np.arange(len(train))
    if len(rows) > TEACHER_MAX_REVIEWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, TEACHER_MAX_REVIEWS, replace=False))
    texts, labels = [train.texts[i] for i in rows], train.labels[rows]
    if len(np.unique(labels)) < 2:
        raise ValueError(f"lexicon_size: the teacher needs both labels in {train.source}")
    try:
        vectorizer, teacher = fit_teacher(texts, labels)
    except ValueError:  # min_df 2 over a handful of reviews can leave no phrase at all
        return [], np.zeros(0, dtype=np.int64)
    weights = teacher.coef_[0]
    terms = vectorizer.get_feature_names_out()
    order = np.argsort(weights, kind="stable")
    negative = [i for i in order[:n] if weights[i] < 0]
    positive = [i for i in order[::-1][:n] if weights[i] > 0]
    phrases = [str(terms[i]) for i in positive + negative]
    return phrases, np.array([1] * len(positive) + [0] * len(negative), dtype=np.int64)


def with_polar_phrases(train: Examples, n: int, seed: int = 0) -> tuple[Examples, list[str]]:
    """`train` and, after its reviews, the teacher's phrases as examples of their own (row -1: no source row)."""
    phrases, labels = polar_phrases(train, n, seed)
    if not phrases:
        return train, []
    groups = None if train.groups is None else np.concatenate([train.groups, np.full(len(phrases), GROUP, dtype=object)])
    out = Examples(train.texts + phrases, np.concatenate([train.labels, labels]),
                   np.concatenate([train.rows, np.full(len(phrases), -1, dtype=train.rows.dtype)]),
                   f"{train.source} + {len(phrases)} polar phrases", train.group_field, groups)
    out.skipped = train.skipped
    return out, phrases

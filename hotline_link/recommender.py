"""The matter recommender's build and load: corpus, training, the exported model, segmentation.

The labelled corpus is ``config/corpus/<label>[.<batch>].tsv`` (``emergency<TAB>text``; the label
is a catalog code, ``consultation``: 12345's questions that belong to no category, or
``unclear``: words that say nothing to place yet). A fixed fifth of it, chosen by a hash of each
text, is held out: training never sees it and ``make bench`` measures the model on it
(``bench/recommender.py``). The shipped model is the one the benchmark measures.

Training (scikit-learn, at build time: ``hotline-link recommend --train``, run by the bootstrap)
writes ``var/recommender/model-<stamp>.json`` and its word list; the stamp hashes the corpus, the
catalog and the code, so a changed corpus is a new model. The service and the sidecar only read
it (in a thread at start; the catalog's rules answer meanwhile, and for good if it is missing or
stale, saying so); the CLI and the benchmark train one where it is missing.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from transfer import catalog as catalog_mod
from transfer import classifier
from transfer.catalog import Catalog

from . import embedding, reading
from .reading import normalise
from .settings import project_home

CONSULTATION = catalog_mod.CONSULTATION
UNCLEAR = catalog_mod.UNCLEAR
HELD_OUT_ONE_IN = 5


class CorpusError(catalog_mod.CatalogError):
    """Every problem of the corpus files, each with its file:line."""


@dataclass(frozen=True)
class Sample:
    label: str
    emergency: bool
    text: str
    where: str          # file:line, for errors and the benchmark's worst cases

    @property
    def batch(self) -> str:
        """The batch of ``<label>.<batch>.tsv``; "1" for ``<label>.tsv``."""
        parts = self.where.rsplit(":", 1)[0].split(".")
        return parts[1] if len(parts) == 3 else "1"

    @property
    def held_out(self) -> bool:
        return int(hashlib.sha1(self.text.encode()).hexdigest(), 16) % HELD_OUT_ONE_IN == 0


def corpus_dir() -> Path:
    return project_home() / "config" / "corpus"


def read_corpus(catalog: Catalog, directory: Path | None = None) -> list[Sample]:
    directory = directory or corpus_dir()
    labels = set(catalog.by_code) | {CONSULTATION, UNCLEAR}
    samples: list[Sample] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    files = sorted(directory.glob("*.tsv"))
    if not files:
        raise CorpusError([f"{directory}: no corpus files (<label>.tsv)"])
    for path in files:
        label = path.name.split(".")[0]       # <label>.tsv, or <label>.<batch>.tsv
        if label not in labels:
            problems.append(f"{path.name}: {label!r} is neither a catalog code "
                            f"nor {CONSULTATION!r} nor {UNCLEAR!r}")
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0].strip() != "emergency\ttext":
            problems.append(f"{path.name}:1: the header must be 'emergency<TAB>text'")
            continue
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            flag, sep, text = line.partition("\t")
            where = f"{path.name}:{n}"
            if not sep or flag not in ("0", "1") or not text.strip() or "\t" in text:
                problems.append(f"{where}: expected '0|1<TAB>text'")
                continue
            text = text.strip()
            if text in seen:
                problems.append(f"{where}: the same text as {seen[text]}")
                continue
            seen[text] = where
            samples.append(Sample(label, flag == "1", text, where))
    if problems:
        raise CorpusError(problems)
    return samples


# --- segmentation ---------------------------------------------------------------------------------

_jieba_lock = threading.Lock()
_tokenizers: dict[str, object] = {}
# jieba's own dictionary holds 349,000 words and costs a process about 60 MB; the model's build
# keeps the most frequent words and every dictionary word its corpus uses (about 10 MB). Words
# beyond it are still found by jieba's HMM, and the character n-grams do not depend on it.
DICTIONARY_WORDS = 60_000


def segment(text: str, dictionary: Path | None = None) -> list[str]:
    """jieba's words of a text (precise mode, HMM for words its dictionary lacks), with the
    model's dictionary (or jieba's whole one)."""
    key = str(dictionary or "")
    tok = _tokenizers.get(key)
    if tok is None:
        with _jieba_lock:
            tok = _tokenizers.get(key)
            if tok is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer(str(dictionary)) if dictionary else jieba.Tokenizer()
                if dictionary:
                    tok.tmp_dir = str(dictionary.parent)     # its cache beside the model's
                tok.initialize()
                _tokenizers[key] = tok
    return list(tok.cut(text))


def features(text: str, dictionary: Path | None = None) -> list[str]:
    return classifier.features(text, segment(text, dictionary))


# An English word's forms ("trapped", "traps", "trapping") are one matter, and the foreign callers
# are the corpus's fewest: the category model also reads each word of Latin letters as its
# Snowball stem and its four-letter pieces. Cross-validated on the training part (11,949
# descriptions, 2,126 in Latin letters): their category 1,691 -> 1,720 right, platform 88.24 ->
# 88.81 %, the Chinese ones unchanged. The emergency model reads without them: with them it
# caught 2 fewer of the foreign callers' emergencies for no fewer false alarms.
_LATIN_FEATURE_WORD = re.compile(r"w:([a-z]{3,})")
_stem_lock = threading.Lock()


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    with _stem_lock:            # a Snowball stemmer keeps the word it works on: one at a time
        return _stemmer().stemWord(word)


@functools.cache
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def category_features(feats: list[str]) -> list[str]:
    """The category model's features: ``features`` and, for each word in Latin letters, its
    stem (``s:``) and its four-letter pieces (``c4:``)."""
    extra = []
    for f in feats:
        m = _LATIN_FEATURE_WORD.fullmatch(f)
        if m:
            word = m.group(1)
            extra.append(f"s:{_stem(word)}")
            extra += [f"c4:{word[i:i + 4]}" for i in range(len(word) - 3)]
    return feats + extra if extra else feats


# What a caller says before the matter, and what a recogniser transcribes of the agent's greeting:
# "喂，那个，就是…", "嗯…", "您好110请讲". The words that say nothing (``unclear``) are mostly
# these, so the category model learnt them as "nothing to place": "喂那个就是我们这路上有个景盖
# 不见了" was unclear at 1.00.
_OPENING = re.compile(r"^(?:[\s,，.。、…~～!！?？—-]*(?:喂+|您好|你好|哈喽|"
                      r"那个(?![人男女孩小老东地家店车月时候天年周次])|就是(?:说)?|嗯+|啊+|呃+|哎+|唉|"
                      r"(?:110|12345)[\s,，]*(?:您)?请讲|(?i:\b(?:hello|hi|uh+m*|um+)(?![a-z]))))+"
                      r"[\s,，.。、…~～!！?？—-]*")
OPENING_LEAVES = 4


def without_opening(text: str) -> str:
    """The text from its matter on, if at least ``OPENING_LEAVES`` Chinese characters or three
    words follow what a caller says first; else the text as it is (it may be all there is)."""
    m = _OPENING.match(text)
    if not m or not m.end():
        return text
    rest = text[m.end():]
    enough = (len(_HAN.findall(rest)) >= OPENING_LEAVES
              or len(re.findall(r"[A-Za-z]+", rest)) >= 3)
    return rest if enough else text


def build_dictionary(texts: list[str], path: Path) -> Path:
    """The model's word list: jieba's most frequent words and every one of its words that occurs
    in the texts (substrings of up to 8 characters), in jieba's format."""
    import jieba

    entries = []
    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as f:
        for line in f:
            word, freq, *tag = line.split()
            entries.append((word, int(freq), tag[0] if tag else ""))
    used = {t[i:j] for t in texts for i in range(len(t))
            for j in range(i + 2, min(len(t), i + 8) + 1)}
    entries.sort(key=lambda e: -e[1])
    kept = entries[:DICTIONARY_WORDS] + [e for e in entries[DICTIONARY_WORDS:] if e[0] in used]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{w} {n} {t}".rstrip() + "\n" for w, n, t in kept), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- the model ------------------------------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")
_NOT_HAN_WORD = re.compile(r"[^\W\d_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


@dataclass(frozen=True, eq=False)
class Neighbours:
    """The training descriptions by their meaning: their sentence embeddings (unit rows, a file of
    the build's mapped read-only, so the processes of a machine share one copy) and which are
    emergencies, with those emergencies' texts to quote."""
    vectors: object                 # numpy float32, one row a training description
    emergency: object               # numpy bool, one a row
    texts: dict[int, str]           # row -> the emergency's text as the corpus has it

    def nearest(self, meaning) -> catalog_mod.Nearest:
        import numpy as np

        likeness = self.vectors @ np.asarray(meaning, dtype=np.float32)
        n = catalog_mod.NEAREST
        rows = (np.argpartition(-likeness, n)[:n] if len(likeness) > n
                else np.arange(len(likeness)))
        flagged = [int(r) for r in rows if self.emergency[r]]
        best = max(flagged, key=lambda r: likeness[r]) if flagged else None
        return catalog_mod.Nearest(len(flagged), self.texts[best] if best is not None else "")


@dataclass(frozen=True)
class Model:
    """What the recommender reads: the category model (a platform's probability is the sum of
    its categories'; a platform model of its own was measured and placed fewer descriptions
    right, 87.3 % against 90.8 % cross-validated) and the emergency model."""
    category: classifier.LinearModel
    emergency: classifier.LinearModel
    stamp: str
    dictionary: Path
    platform_of: dict[str, str]      # category label -> platform (UNCLEAR: none)
    emergency_foreign: classifier.LinearModel | None = None   # for text mostly in Latin letters
    pinyin: reading.PinyinTable | None = None     # words by their pinyin (reading.from_pinyin)
    neighbours: Neighbours | None = None

    def probabilities(self, text: str) -> catalog_mod.Classified:
        # Read again though ``Recommender.recommend`` read it (6 µs for text read already): the
        # benchmark and the cross-validation ask the model directly, and must read as it learnt.
        text = normalise(text)
        feats = features(text, self.dictionary)
        # Of text in Latin letters, known words, not known character n-grams: since the model read
        # English, the letters and letter pairs of any gibberish ("xyzzy plugh") are known, its
        # words are not. (A short Chinese text may be one word jieba's list lacks: its characters
        # are what is known of it.)
        foreign = classifier.foreign(text)
        distinct = ({f for f in feats if f.startswith("w:")} if foreign else set()) or set(feats)
        known = sum(f in self.category.index for f in distinct)
        # What the caller says first ("喂喂", "您好110请讲") says nothing of the matter: the
        # category model reads the embedding of what follows it. How it is said is the emergency
        # model's business ("喂喂 快来人" is how panic starts): that one reads every word's.
        matter = without_opening(text)
        meaning = embedding.vector(text)
        of_matter = meaning if matter == text else embedding.vector(matter)
        labels = self.category.probabilities(category_features(feats), of_matter)
        if max(labels, key=labels.get) == UNCLEAR:
            # Nothing to place, by the words a caller says first? Then the matter after them says
            # what it is, if it says anything (the emergency is judged on every word: "喂喂" is
            # how a panicked caller starts, and the emergency model learnt that).
            if matter != text:
                labels = self.category.probabilities(
                    category_features(features(matter, self.dictionary)), of_matter)
        platforms: dict[str, float] = {}
        for label, p in labels.items():
            platform = self.platform_of.get(label)
            if platform is not None:
                platforms[platform] = platforms.get(platform, 0.0) + p
        emergency = (self.emergency_foreign
                     if self.emergency_foreign is not None and foreign else self.emergency)
        return catalog_mod.Classified(labels, platforms,
                                      emergency.probabilities(feats, meaning)["1"],
                                      known / len(distinct) if distinct else 0.0,
                                      self.foreign_words_known(text),
                                      self.neighbours.nearest(meaning)
                                      if self.neighbours is not None else None)

    def foreign_words_known(self, text: str) -> float | None:
        """Of a text not mostly in Chinese characters, the share of its other words the model
        knows whole (None for Chinese text). Not ``coverage``: jieba parts a word at any letter
        outside A-Z ("días" is d, í, as) and the model knows such pieces, so Vietnamese read
        95 % known by it; and a Chinese address quoted in Korean or Spanish is no word of theirs."""
        if 2 * len(_HAN.findall(text)) >= len(_LETTER.findall(text)):
            return None
        words = _NOT_HAN_WORD.findall(text.lower())
        index = self.category.index
        return sum(f"w:{w}" in index for w in words) / len(words) if words else None


def stamp(catalog_path: Path | None = None, directory: Path | None = None) -> str:
    h = hashlib.sha256()
    for path in sorted((directory or corpus_dir()).glob("*.tsv")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update((catalog_path or project_home() / "config" / "matter-catalog.toml").read_bytes())
    h.update(inspect.getsource(classifier).encode())
    h.update(inspect.getsource(fit).encode())
    h.update(inspect.getsource(fit_category).encode())
    h.update(inspect.getsource(train).encode())
    h.update(inspect.getsource(build_dictionary).encode())
    h.update(inspect.getsource(pinyin_table).encode())
    h.update(inspect.getsource(english_words).encode())
    h.update(inspect.getsource(category_features).encode())
    h.update(inspect.getsource(reading).encode())
    h.update(f"{DICTIONARY_WORDS} {CATEGORY_C} {EMERGENCY_C} {TEMPERATURE_FOLDS} "
             f"{sorted(FOREIGN_BATCHES)} "
             f"{CORPUS_WORD_WEIGHT} {PINYIN_DICTIONARY_WORDS} {PINYIN_HOMOPHONES} "
             f"{EMBEDDING_WEIGHT} {embedding.engine()}".encode())
    h.update(inspect.getsource(embedding).encode())
    h.update(inspect.getsource(export).encode())
    return h.hexdigest()[:16]


def model_dir() -> Path:
    return Path(os.environ.get("HOTLINE_MODEL_DIR") or project_home() / "var" / "recommender")


def _paths(stamp_: str, directory: Path | None = None) -> tuple[Path, Path, Path]:
    directory = directory or model_dir()
    return (directory / f"model-{stamp_}.json", directory / f"words-{stamp_}.txt",
            directory / f"meanings-{stamp_}.npy")


# The category model is a linear SVM (squared hinge): under 5-fold cross-validation on the
# training part of the corpus of 14,407 (the held-out fifth and the probe sets not consulted) it
# placed more descriptions right than the logistic regression it replaced (C 1000, nearly
# unregularised): category 89.1 -> 90.8 %, platform with no "not sure" 95.2 -> 96.0 %, and
# 93.4 -> 94.5 % counting "not sure" as a miss (8,471 placeable non-emergency descriptions).
# Its strength: 1 against 0.3 and 3 (90.2 and 90.5 % category). Keeping words seen once (190,000
# features against 68,000) gained 0.2 points, within the folds' noise, for 40 MB more a process.
# The emergency models are logistic regressions at 30 since 2026-12-07 (100 before; 1000 and an
# SVM no better): see ``FOREIGN_BATCHES``.
CATEGORY_C = 1.0
EMERGENCY_C = 30.0
# Every model reads a description's sentence embedding (``embedding``) beside its TF-IDF vector,
# both of unit length, the embedding at this weight. Measured on the corpus of 24,438, held-out
# fifth, each model's own answer: the category model at weight 0.5, 1 and 2 placed 95.2, 95.4
# and 95.1 % of the platforms right, against 94.9 % without; the emergency model for Chinese text
# (its bar at 0.5) at weight 0.5 and 1 missed 33 and 32 of 926 emergencies against 42, with 78
# and 83 false alarms against 96. In the whole answer (bar 0.35), emergency models at 0.5
# missed 28 more of the other-languages sets' 370 emergencies than at 1, and 19 more of AQ's 74.
EMBEDDING_WEIGHT = 1.0
# An SVM's scores are margins, not probabilities; the thresholds (``transfer.catalog``) read
# probabilities, so the scores go through a softmax at one temperature, the one that makes the
# model's own out-of-fold scores most likely (about 6: a plain softmax of margins, all near 0,
# would call every answer unsure). A temperature scales weights and intercepts: the exported
# model stays a softmax of linear scores.
TEMPERATURE_FOLDS = 5
# Batches of foreign callers (12, 14, 16, 18, 19, 20, 22, 24, 26: English, pinyin, a learner's
# Chinese, other languages). The emergency model for Chinese text does not learn them: learning
# batch 12 moved its margin, and it let go of Chinese emergencies it alone had caught near 0.5 (one
# each of the held-out set's and of probe sets E and L, two of M); learning only its rows in Chinese
# script (a learner's Chinese, about a tenth) cost it the same four, so a learner's Chinese is
# judged by what native callers taught it. Text written mostly in Latin letters
# (``classifier.foreign``) is judged by a second model that learns every batch (without it, the
# unread foreign set N: 43 % of its emergencies caught; with it, 89 %). The category model is one:
# English moved Chinese categories no more than a retraining does.
# Every other batch's flags both models learn, since 2026-12-07. Until then the flags of batches
# 9 and 20 to 27 were learnt by neither (17's not by the one for Chinese text): batch 9's writers
# called a hazard with nobody in danger at that moment no emergency, the later batches draw the
# fine lines between an emergency and an ordinary call, and a model that read words only (C 100)
# let go of emergencies it alone had caught when it learnt them (6 of the probe sets' for batch
# 9, 37 for batch 23, 52 for batches 25 and 26). Reading the sentence embedding too and fitted
# less tightly (C 30) the models learn them and keep those emergencies, with the bar for a matter
# placed at 110 at 0.15 (``transfer.catalog``), against the models before (their bar 0.25): the
# probe sets' emergencies (all 44 and the three other-languages sets) missed 61 -> 58, false
# alarms 387 -> 356 (of the 18 never read, 41 -> 36 and 219 -> 202); out of fold (5 folds of the
# training part; the cues and the category model's answers as they were) 35 -> 25 missed and
# 1,141 -> 1,122 false alarms; the held-out counts, seen after, 19 -> 16 missed, 287 -> 262 false
# alarms, platform 94.7 -> 95.1 % (fewer ordinary 12345 matters sent to 110). Every flag learnt
# at C 100: 86 of the sets' emergencies missed; at C 10 and 15 (bar 0.15) 46 and 57, for 424 and
# 388 false alarms, and more 12345 matters sent to 110 (held-out platform 94.7, 94.9 %). Four
# emergencies of the tests' tables the old models had caught near their bars (0.47 to 0.92) the
# new ones did not; the cues now know them (``transfer.danger``: a person beating on the window of
# a door that will not open, lips "very swollen" after a meal, a leak that is old and a dizziness
# that is now, a parcel "posted" to the hotline with something in someone's hand).
FOREIGN_BATCHES = frozenset({"12", "14", "16", "18", "19", "20", "22", "24", "26"})


def _beside(x, dense):
    """The TF-IDF rows with the texts' embeddings beside them, at ``EMBEDDING_WEIGHT``."""
    from scipy.sparse import csr_matrix, hstack

    return hstack([x, csr_matrix(dense * EMBEDDING_WEIGHT)]).tocsr()


def fit(docs: list[list[str]], labels: list[str], c: float, dense=None):
    """scikit-learn's TF-IDF and logistic regression over feature lists, and the texts'
    embeddings beside them (a numpy row each, or None): (vectorizer, model)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, min_df=2)
    x = vec.fit_transform(docs)
    if dense is not None:
        x = _beside(x, dense)
    # Balanced: a category with fewer examples is no less likely on the phone.
    lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    lr.fit(x, labels)
    return vec, lr


def fit_category(docs: list[list[str]], labels: list[str], c: float, dense=None):
    """The category model (three classes or more): TF-IDF and a linear SVM over feature lists
    (and the texts' embeddings, as ``fit``), and the temperature that turns its scores into
    probabilities: (vectorizer, model, temperature)."""
    import numpy as np
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    vec = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, min_df=2)
    x = vec.fit_transform(docs)
    if dense is not None:
        x = _beside(x, dense)
    y = np.array(labels)

    def svm():
        # liblinear shuffles; a fixed seed makes the same corpus the same model on every build
        return LinearSVC(C=c, class_weight="balanced", random_state=0)

    classes = np.unique(y)
    scores = np.zeros((len(y), len(classes)))
    # Fewer folds where a class has fewer examples (a tiny corpus in the tests); a part that
    # lacks a class scores it 0.
    folds = min(TEMPERATURE_FOLDS, max(2, min(Counter(labels).values())))
    for fit_rows, score_rows in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        part = svm().fit(x[fit_rows], y[fit_rows])
        scores[np.ix_(score_rows, np.searchsorted(classes, part.classes_))] = \
            part.decision_function(x[score_rows])
    truth = np.searchsorted(classes, y)

    def loss(t: float) -> float:
        return -float(log_softmax(scores * t, axis=1)[np.arange(len(y)), truth].mean())

    temperature = float(minimize_scalar(loss, bounds=(0.1, 100.0), method="bounded").x)
    return vec, svm().fit(x, y), temperature


def export(vec, lr, scale: float = 1.0) -> classifier.LinearModel:
    """The fitted pair as plain numbers (``transfer.classifier.LinearModel``); ``scale`` is a
    temperature that multiplies every score. Weights past the vectorizer's features are the
    embedding's (``fit(dense=...)``), ``EMBEDDING_WEIGHT`` folded into them."""
    names = vec.get_feature_names_out()
    classes = tuple(str(c) for c in lr.classes_)
    if len(classes) == 2:
        # A binary model is one weight vector; as two classes (0 and the vector) the softmax of
        # the export is exactly scikit-learn's sigmoid.
        coef = [[0.0] * lr.coef_.shape[1], list(lr.coef_[0] * scale)]
        intercepts = (0.0, float(lr.intercept_[0] * scale))
    else:
        coef = [list(row * scale) for row in lr.coef_]
        intercepts = tuple(float(b * scale) for b in lr.intercept_)
    weights = {str(f): (round(float(vec.idf_[j]), 6),
                        tuple(round(float(coef[i][j]), 6) for i in range(len(classes))))
               for j, f in enumerate(names)}
    dense = [[float(w) * EMBEDDING_WEIGHT for w in row[len(names):]] for row in coef]
    return classifier.LinearModel.of(classes, weights, intercepts,
                                     dense if dense[0] else None)


def _platforms(catalog: Catalog, category: classifier.LinearModel) -> dict[str, str]:
    return {label: "12345" if label == CONSULTATION else catalog.by_code[label].platform
            for label in category.classes if label != UNCLEAR}


def train(catalog: Catalog, samples: list[Sample], stamp_: str,
          directory: Path | None = None, category_c: float = CATEGORY_C) -> Model:
    """Fit the models on the samples not held out (the emergency model for Chinese text not on
    ``FOREIGN_BATCHES``, the one for text in Latin letters on them too), the category model also
    on the catalog's own terms (short texts like "井盖缺失" are what an agent types).
    The word list is built from every sample's text, the held-out ones included: it holds
    dictionary words, not labels, and so does not leak them."""
    train_set = [s for s in samples if not s.held_out]
    texts = [s.text for s in train_set]
    labels = [s.label for s in train_set]
    for cat in catalog.categories:
        for term in cat.examples:
            texts.append(term)
            labels.append(cat.code)
    dictionary = build_dictionary([s.text for s in samples] + texts,
                                  _paths(stamp_, directory)[1])
    read = [normalise(t) for t in texts]
    docs = [features(t, dictionary) for t in read]
    # The category model reads the embedding of the matter, the emergency models that of every
    # word (``Model.probabilities``); for most texts the two are one.
    matter = embedding.matrix([without_opening(t) for t in read])
    meaning = embedding.matrix(read)
    vec, svm, temperature = fit_category([category_features(d) for d in docs], labels, category_c,
                                         matter)
    category = export(vec, svm, temperature)
    every = list(range(len(train_set)))
    chinese = [i for i in every if train_set[i].batch not in FOREIGN_BATCHES]

    def emergency_model(rows: list[int]) -> classifier.LinearModel:
        return export(*fit([docs[i] for i in rows],
                           ["1" if train_set[i].emergency else "0" for i in rows], EMERGENCY_C,
                           meaning[rows]))

    emergency = emergency_model(chinese)
    foreign = emergency_model(every) if len(chinese) < len(every) else emergency
    words, follows = pinyin_table(dictionary, texts)
    english = english_words(texts, reading.PinyinTable(words))
    import numpy as np

    flags = np.array([s.emergency for s in train_set], dtype=bool)
    neighbours = Neighbours(_unit_rows(meaning[:len(train_set)]), flags,
                            {i: train_set[i].text for i in np.flatnonzero(flags).tolist()})
    return Model(category, emergency, stamp_, dictionary, _platforms(catalog, category), foreign,
                 reading.PinyinTable(words, english, follows), neighbours)


def _unit_rows(x):
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def english_words(texts: list[str], pinyin: reading.PinyinTable) -> frozenset[str]:
    """The words of the corpus's English (and other Latin-script languages) that are syllables
    too ("a", "he", "one", "police", "danger"): a text mostly of them is English, not pinyin.
    A word is English when it is more frequent in the descriptions written mostly in words no
    syllables make than in those written in syllables only ("you" is; "ren", "lou" are not,
    though learners write them among English words)."""
    english: Counter = Counter()
    spelled: Counter = Counter()
    lines = [0, 0]
    for text in texts:
        words = re.findall(r"[a-z]+", text.lower())
        if not words:
            continue
        syllables = sum(map(pinyin.spells, words))
        if syllables == len(words):
            spelled.update(set(words))
            lines[1] += 1
        elif 2 * syllables < len(words):
            english.update(set(w for w in words if pinyin.spells(w)))
            lines[0] += 1
    return frozenset(w for w, n in english.items()
                     if n * max(lines[1], 1) > spelled[w] * max(lines[0], 1))


# Words of the corpus count this many times a word of jieba's dictionary (its frequencies are
# counts in a general corpus of some 60 million words): a caller typing "yan" means 烟 more often
# than 眼. On 1,000 training lines typed in pinyin and read back (their words not counted), the
# answer the same as the Chinese text's (platform / emergency): 96.7 / 95.3 % (50), 97.5 / 95.7
# (200), 97.4 / 95.7 (1,000), 97.9 / 96.2 (5,000, with a word's cost 1 in place of 3); as
# typed, 50.0 / 72.0 %.
CORPUS_WORD_WEIGHT = 5000
# Words kept of a key: its likeliest homophones and every word the corpus says, for the words
# around them to choose from (``reading.PinyinTable.read``). 1,000 training lines of a fold typed
# in pinyin by pypinyin and read back with a table built without that fold, characters as in the
# Chinese text: 89.6 -> 92.8 % (fold 0), 90.0 -> 93.2 % (fold 1); emergency answers the same as
# the Chinese text's 98.2 -> 98.6 %, 97.3 -> 98.2 %. Variants (fold 0): Witten-Bell smoothing
# 92.8 % (but 它再打他老婆 for "ta zai da ta lao po", from one 它再 of 13); a fixed weight of 100
# for a word's own probability 92.4; context from words followed fewer than 3 times too 92.9
# (but 一家人没其中堵了 for "yi jia ren mei qi zhong du le", from one 一家人没 of 2), 10 times
# 92.3; 2 words a key 92.0, 8 the same as 4.
PINYIN_HOMOPHONES = 4
# Of the dictionary's words, the most frequent ones (and every word of the corpus): the same
# answers as with all 66,000 (97.8 / 96.1 % against 97.9 / 96.2), in 22,000 keys, not 49,000
# (memory the recommender adds: 16 MB with all of them).
PINYIN_DICTIONARY_WORDS = 20_000


def pinyin_table(dictionary: Path, texts: list[str]) -> tuple[
        dict[str, tuple[tuple[str, float], ...]], dict[str, tuple[int, dict[str, int]]]]:
    """The model's words (its dictionary's most frequent and the training texts') by their
    pinyin without tones, each key's ``PINYIN_HOMOPHONES`` likeliest words and every word of
    the texts, with their log-probabilities; and for each word of the texts, how often a word
    followed it and which (``reading.PinyinTable``)."""
    from pypinyin import lazy_pinyin

    han = re.compile(r"[\u4e00-\u9fff]+")
    frequency: dict[str, int] = {}
    with open(dictionary, encoding="utf-8") as f:        # the most frequent first
        for line in f:
            word, freq, *_ = line.split()
            if han.fullmatch(word):
                frequency.setdefault(word, int(freq))
    weight = dict(list(frequency.items())[:PINYIN_DICTIONARY_WORDS])
    said: Counter = Counter()
    pairs: Counter = Counter()
    for text in texts:
        words = segment(normalise(text), dictionary)
        said.update(w for w in words if han.fullmatch(w))
        # Neighbours only where both are words in characters: punctuation parts what a caller
        # types in pinyin too (``reading.from_pinyin`` reads each run of syllables alone).
        pairs.update((a, b) for a, b in zip(words, words[1:])
                     if han.fullmatch(a) and han.fullmatch(b))
    for word, n in said.items():
        weight[word] = frequency.get(word, 0) + CORPUS_WORD_WEIGHT * n
    total = sum(weight.values())
    by_key: dict[str, list[tuple[int, str]]] = {}
    for word, n in weight.items():
        key = "".join(lazy_pinyin(word))
        if key.isascii() and key.isalpha():
            by_key.setdefault(key, []).append((n, word))
    words = {key: tuple((word, round(math.log(n / total), 3))
                        for i, (n, word) in enumerate(sorted(found, reverse=True))
                        if i < PINYIN_HOMOPHONES or word in said)
             for key, found in by_key.items()}
    follows: dict[str, tuple[int, dict[str, int]]] = {}
    for (a, b), n in pairs.items():
        count, after = follows.setdefault(a, (0, {}))
        after[b] = n
        follows[a] = (count + n, after)
    return words, follows


def save(model: Model, directory: Path | None = None) -> Path:
    import numpy as np

    path, words, meanings = _paths(model.stamp, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    foreign = model.emergency_foreign or model.emergency
    pinyin, follows = model.pinyin.to_text() if model.pinyin else ("", "")
    near = model.neighbours
    if near is not None:
        # Before the model's file: a model file on disk means its meanings are there too.
        tmp = meanings.with_suffix(".tmp")
        with tmp.open("wb") as f:
            np.save(f, near.vectors)
        os.replace(tmp, meanings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "stamp": model.stamp, "category": model.category.to_json(),
        "emergency": model.emergency.to_json(), "emergency_foreign": foreign.to_json(),
        "pinyin": pinyin, "follows": follows,
        "english": sorted(model.pinyin.english) if model.pinyin else [],
        "neighbours": None if near is None else {
            "emergency": "".join("1" if f else "0" for f in near.emergency.tolist()),
            "texts": [near.texts[i] for i in sorted(near.texts)]}}))
    os.replace(tmp, path)
    for old in [*path.parent.glob("model-*.json"), *path.parent.glob("words-*.txt"),
                *path.parent.glob("meanings-*.npy"), *path.parent.glob("jieba.*.cache")]:
        if old not in (path, words, meanings):
            old.unlink(missing_ok=True)
    return path


def _neighbours(data: dict | None, meanings: Path) -> Neighbours | None:
    if data is None:
        return None
    import numpy as np

    flags = np.array([c == "1" for c in data["emergency"]], dtype=bool)
    vectors = np.load(meanings, mmap_mode="r")
    rows = np.flatnonzero(flags).tolist()
    if vectors.shape[0] != len(flags) or len(rows) != len(data["texts"]):
        raise ValueError(f"{meanings}: {vectors.shape[0]} meanings for {len(flags)} descriptions")
    return Neighbours(vectors, flags, dict(zip(rows, data["texts"])))


def build(catalog: Catalog) -> tuple[Model, list[Sample]]:
    """Train the model of the current corpus and keep it; with the samples it was built from."""
    samples = read_corpus(catalog)
    model = train(catalog, samples, stamp())
    save(model)
    return model, samples


def built() -> bool:
    """Is the model of the current corpus, catalog and code on disk?"""
    return all(p.exists() for p in _paths(stamp()))


def load(catalog: Catalog, train_if_missing: bool = False) -> Model:
    """The model for the current corpus: read from the build's file, or trained (and kept)."""
    s = stamp()
    path, words, meanings = _paths(s)
    if path.exists() and words.exists():
        try:
            data = json.loads(path.read_text())
            category, emergency, foreign = (
                classifier.LinearModel.from_json(data[part])
                for part in ("category", "emergency", "emergency_foreign"))
            return Model(category, emergency, s, words, _platforms(catalog, category), foreign,
                         reading.PinyinTable.from_text(data["pinyin"], frozenset(data["english"]),
                                                       data["follows"]),
                         _neighbours(data["neighbours"], meanings))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            if not train_if_missing:
                raise
            # Unreadable (damaged, or of an older format): built again below.
    if not train_if_missing:
        raise FileNotFoundError(f"{path}: no model built for this corpus and catalog "
                                "(hotline-link recommend --train builds it)")
    model = train(catalog, read_corpus(catalog), s)
    try:
        save(model)
    except OSError:
        pass                      # a read-only tree still answers, it trains again next time
    return model


class Recommender:
    """What the service, the sidecar and the CLI call. Until the model is loaded (in a thread, so
    no event loop waits for jieba's dictionary or a training) it answers by the catalog's rules;
    if loading fails it keeps answering by the rules and says so in every reason."""

    def __init__(self, catalog: Catalog, log=None, train_if_missing: bool = False):
        # The service and the sidecar never train (seconds of CPU, scikit-learn's memory, and a
        # process that cannot stop meanwhile): without the build's model they answer by the
        # rules and say how to build it. The CLI and the benchmark may train.
        self.train_if_missing = train_if_missing
        self.catalog = catalog
        self.model: Model | None = None
        self.error: str | None = None
        self.log = log

    def load_now(self) -> "Recommender":
        started = time.monotonic()
        if not reading.opencc_ready() and self.log is not None:
            self.log.warning("OpenCC not loaded; traditional characters are read as written",
                             error=reading.opencc_error())
        try:
            model = load(self.catalog, self.train_if_missing)
            segment("预热", model.dictionary)   # jieba's dictionary now, not on a call
            if model.category.dense_dim:
                # The encoder now, not on a call; and an encoder that cannot load (its package
                # missing or damaged) leaves the rules answering, as any model that cannot.
                embedding.vector("预热")
            self.model = model
            if self.log is not None:
                self.log.info("recommender model loaded", stamp=self.model.stamp,
                              seconds=round(time.monotonic() - started, 2))
        except Exception as exc:          # noqa: BLE001 - any failure leaves the rules in charge
            self.error = f"{type(exc).__name__}: {exc}"
            if self.log is not None:
                self.log.error("recommender model not loaded; answering by the catalog's rules",
                               error=self.error)
        return self

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_now, name="recommender-load", daemon=True)
        thread.start()
        return thread

    def recommend(self, code: str | None = None,
                  text: str | None = None) -> catalog_mod.Recommendation:
        model = self.model
        read = normalise(reading.unspaced(text), load=False) if text else text
        spelled = (reading.from_pinyin(read, model.pinyin)
                   if read and model is not None and model.pinyin is not None else None)
        read = spelled or read
        rec = catalog_mod.recommend(
            self.catalog, code=code, text=read,
            classify=model.probabilities if model is not None else None,
            without_model=None if model is not None else (self.error or "model still loading"))
        if text and read.strip() != text.strip():
            rec = replace(rec, read_as=read.strip())
        return rec


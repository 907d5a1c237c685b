"""Retrieval for the search envs: BM25 cost on a large corpus, recall of BM25 / dense / hybrid, local vs server.

1. BM25 (``BM25Retriever``: bm25s + PyStemmer, snippets, bad-query handling) against raw bm25s in the same run
   (``bm25s.tokenize`` + ``BM25.index`` / ``BM25.retrieve``, no snippets, no disk cache): cold index build, warm load
   from the cache, query latency p50/p95 at k=10, index size on disk.
2. recall@10 of BM25 (the baseline), dense (MiniLM) and hybrid (RRF) on questions whose answer documents are known:
   ``--questions FILE.jsonl`` ({"text", "gold_docs"}), else two built-in sets over the default corpus: hand-written
   paraphrase questions about stdlib functions, and "first sentence" known-item queries (lexical, favours BM25).
   Dense embedding runs at ~60 docs/s on a CPU, so this part uses a sub-corpus of ``--dense-docs`` (<= 2000):
   every gold document plus a seeded sample of the others; all three retrievers search the same sub-corpus.
3. Search latency through the HTTP server (a ``agentenv search serve`` subprocess) against the same BM25 locally.

Default corpus: docstrings of the standard library and of this virtual environment's packages, read with ``ast``
(no import, no download), split into passages of <= 1000 characters; ``--max-docs`` caps it (every stdlib passage
kept, the rest sampled with a fixed seed). ``--corpus FILE.jsonl`` (``Corpus.save_jsonl``) replaces it.

Usage: python benchmarks/search_retrieval.py [--corpus FILE.jsonl] [--questions FILE.jsonl] [--max-docs 45000]
       [--dense-docs 2000] [--queries 300]      (writes benchmarks/results/search_retrieval.json)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AGENTENV_CACHE", tempfile.mkdtemp(prefix="agentenv-bench-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISABLE_TQDM", "1")

import bm25s
import numpy as np
import Stemmer

from agentenv.envs.search.corpus import Corpus, Document
from agentenv.envs.search.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    RemoteRetriever,
    clean_query,
)

RESULTS = Path(__file__).parent / "results" / "search_retrieval.json"
PASSAGE_CHARS = 1000
SKIP_PARTS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages", "dist-packages"}

# Hand-written questions about stdlib functions, worded unlike their docstrings where that is natural; gold = the
# first passage of the function's docstring in the default corpus.
PARAPHRASES = [
    ("remove a folder together with everything inside it", "shutil.rmtree"),
    ("duplicate the contents of one file into another path", "shutil.copyfile"),
    ("locate where a command line program is installed", "shutil.which"),
    ("how much free space is left on a drive", "shutil.disk_usage"),
    ("turn a Python dict into a JSON text string", "json.dumps"),
    ("parse JSON text into Python objects", "json.loads"),
    ("strip the indentation shared by all lines of a block of text", "textwrap.dedent"),
    ("break a long paragraph into lines of limited width", "textwrap.wrap"),
    ("does February have 29 days in a given year", "calendar.isleap"),
    ("create a random unique identifier", "uuid.uuid4"),
    ("put the items of a list in random order", "random.Random.shuffle"),
    ("pick one element at random from a list", "random.Random.choice"),
    ("create a directory and all missing parent directories", "os.makedirs"),
    ("visit every file below a folder, recursively", "os.walk"),
    ("list files matching a wildcard like *.txt", "glob.glob"),
    ("create a scratch directory with a unique name", "tempfile.mkdtemp"),
    ("suggest similar words for a misspelled word", "difflib.get_close_matches"),
    ("percent-encode special characters for use in a URL", "urllib.parse.quote"),
    ("middle value of a list of numbers", "statistics.median"),
    ("check whether a file name matches a shell-style pattern", "fnmatch.fnmatch"),
    ("encode binary data as base64 text", "base64.b64encode"),
    ("make a fully independent copy of a nested object", "copy.deepcopy"),
    ("capitalize the first letter of each word in a sentence", "string.capwords"),
    ("generate a random hexadecimal token for a password reset link", "secrets.token_hex"),
    ("read a compressed .gz file", "gzip.open"),
    ("replace every match of a regular expression in a string", "re.sub"),
    ("format a nested data structure nicely as a string", "pprint.pformat"),
    ("which operating system is the program running on", "platform.system"),
    ("get the n biggest items from a collection", "heapq.nlargest"),
    ("define a tuple subclass whose fields have names", "collections.namedtuple"),
    ("memoize the results of an expensive function", "functools.lru_cache"),
    ("unpack all members of a zip archive into a folder", "zipfile.ZipFile.extractall"),
    ("run an external command and wait for it to finish", "subprocess.run"),
    ("set up logging output quickly with a default handler", "logging.basicConfig"),
    ("convert a date to a YYYY-MM-DD string", "datetime.date.isoformat"),
]


# ---- the default corpus ---------------------------------------------------------------------------------------


def docstrings(root: Path) -> list[tuple[str, str]]:
    """``(qualified name, docstring)`` of every public module, class, function and method under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or any(p in SKIP_PARTS or p.startswith("_") or "-" in p or "." in p for p in parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        module = ".".join(parts)
        if doc := ast.get_docstring(tree):
            out.append((module, doc))
        stack = [(tree, module)]
        while stack:
            node, qual = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    if child.name.startswith("_"):
                        continue
                    name = f"{qual}.{child.name}"
                    if doc := ast.get_docstring(child):
                        out.append((name, doc))
                    if isinstance(child, ast.ClassDef):
                        stack.append((child, name))
    return out


def passages(name: str, doc: str) -> list[Document]:
    """The docstring cut at blank lines into passages of at most ~PASSAGE_CHARS, ids ``name#i``."""
    chunks, current = [], ""
    for para in doc.split("\n\n"):
        if current and len(current) + len(para) > PASSAGE_CHARS:
            chunks.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    return [Document(f"{name}#{i}", name, chunk) for i, chunk in enumerate(chunks)]


def default_corpus(max_docs: int, seed: int = 0) -> Corpus:
    paths = sysconfig.get_paths()
    seen: set[str] = set()

    def unique(items: list[tuple[str, str]]) -> list[Document]:
        docs = []
        for name, doc in items:
            for passage in passages(name, doc):
                if passage.id not in seen:
                    seen.add(passage.id)
                    docs.append(passage)
        return docs

    stdlib = unique(docstrings(Path(paths["stdlib"])))
    others = unique(docstrings(Path(paths["purelib"])))
    random.Random(seed).shuffle(others)
    return Corpus(stdlib + others[: max(0, max_docs - len(stdlib))], "stdlib+site-packages docstrings")


def builtin_questions(corpus: Corpus, n_known_item: int, seed: int = 0) -> dict[str, list[dict]]:
    """Paraphrase questions (those whose gold passage is in the corpus) and first-sentence known-item queries."""
    paraphrase = [{"text": q, "gold_docs": [f"{name}#0"]} for q, name in PARAPHRASES if f"{name}#0" in corpus]
    rng = random.Random(seed)
    known_item = []
    for doc in rng.sample(corpus.documents, len(corpus)):
        first = doc.text.split("\n\n")[0].split(". ")[0].strip()
        if 40 <= len(first) <= 200 and ">>>" not in first:
            known_item.append({"text": first, "gold_docs": [doc.id]})
        if len(known_item) >= n_known_item:
            break
    return {"paraphrase": paraphrase, "first_sentence": known_item}


def load_questions(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            raw = json.loads(line)
            if not isinstance(raw.get("text"), str) or not isinstance(raw.get("gold_docs"), list):
                raise SystemExit(f"{path}:{n}: a question needs 'text' (str) and 'gold_docs' (list of ids)")
            out.append({"text": raw["text"], "gold_docs": [str(g) for g in raw["gold_docs"]]})
    return out


# ---- 1. BM25 cost ---------------------------------------------------------------------------------------------


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def bm25_cost(corpus: Corpus, queries: list[str], cache: Path) -> dict:
    texts = [f"{d.title}\n{d.text}" for d in corpus]
    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    raw = bm25s.BM25()
    raw.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    raw_build = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = BM25Retriever(corpus, cache_dir=cache)
    ours_build = time.perf_counter() - t0
    assert ours.built
    t0 = time.perf_counter()
    loaded = BM25Retriever(corpus, cache_dir=cache)
    ours_load = time.perf_counter() - t0
    assert not loaded.built

    def raw_search(q: str) -> None:
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
        raw.retrieve(tokens, k=10, show_progress=False)

    raw_t, ours_t = [], []
    for q in queries[:5]:  # warm both
        raw_search(q)
        loaded.search(q, k=10)
    for q in queries:  # interleaved, so that machine noise hits both
        t0 = time.perf_counter()
        raw_search(q)
        t1 = time.perf_counter()
        loaded.search(q, k=10)
        t2 = time.perf_counter()
        raw_t.append(t1 - t0)
        ours_t.append(t2 - t1)
    raw_lat, ours_lat = percentiles(raw_t), percentiles(ours_t)
    return {
        "documents": len(corpus),
        "queries": len(queries),
        "raw_build_s": raw_build,
        "ours_build_s": ours_build,
        "build_ratio": ours_build / raw_build,
        "ours_warm_load_s": ours_load,
        "index_mb": dir_mb(loaded.index_dir),
        "raw_query": raw_lat,
        "ours_query": ours_lat,
        "query_p50_ratio": ours_lat["p50_ms"] / raw_lat["p50_ms"],
        "query_p95_ratio": ours_lat["p95_ms"] / raw_lat["p95_ms"],
    }


# ---- 2. recall@10 ---------------------------------------------------------------------------------------------


def sub_corpus(corpus: Corpus, question_sets: dict[str, list[dict]], size: int, seed: int = 0) -> Corpus:
    gold = {g for qs in question_sets.values() for q in qs for g in q["gold_docs"] if g in corpus}
    rest = [d.id for d in corpus if d.id not in gold]
    keep = gold | set(random.Random(seed).sample(rest, max(0, min(len(rest), size - len(gold)))))
    return Corpus([d for d in corpus if d.id in keep], f"{corpus.name} (recall subset)")


def recall_at(hits: list[list], questions: list[dict], k: int = 10) -> float:
    found = [
        len(set(q["gold_docs"]) & {h.doc_id for h in hs[:k]}) / len(q["gold_docs"])
        for q, hs in zip(questions, hits, strict=True)
    ]
    return float(np.mean(found)) if found else float("nan")


def recall(corpus: Corpus, full: Corpus, question_sets: dict[str, list[dict]], cache: Path) -> dict:
    """recall@10 of the three on the sub-corpus ``corpus``, and of BM25 alone on the ``full`` corpus too."""
    bm25_full = BM25Retriever(full, cache_dir=cache)
    bm25 = BM25Retriever(corpus, cache_dir=cache)
    t0 = time.perf_counter()
    dense = DenseRetriever(corpus, cache_dir=cache)
    embed_s = time.perf_counter() - t0
    hybrid = HybridRetriever(bm25, dense)
    out = {"documents": len(corpus), "embed_s": embed_s, "embed_docs_per_s": len(corpus) / embed_s, "sets": {}}
    for name, questions in question_sets.items():
        texts = [q["text"] for q in questions]
        row = {"questions": len(questions)}
        for label, retriever in (("bm25", bm25), ("dense", dense), ("hybrid", hybrid)):
            t0 = time.perf_counter()
            hits = retriever.search_batch(texts, k=10)
            row[f"{label}_batch_ms_per_query"] = 1e3 * (time.perf_counter() - t0) / max(1, len(texts))
            row[label] = recall_at(hits, questions)
        row["bm25_full_corpus"] = recall_at(bm25_full.search_batch(texts, k=10), questions)
        row["dense_over_bm25"] = row["dense"] / row["bm25"] if row["bm25"] else float("nan")
        row["hybrid_over_bm25"] = row["hybrid"] / row["bm25"] if row["bm25"] else float("nan")
        out["sets"][name] = row
    return out


# ---- 3. local vs server ---------------------------------------------------------------------------------------


def server_latency(corpus: Corpus, queries: list[str], cache: Path, rounds: int = 3) -> dict:
    local = BM25Retriever(corpus, cache_dir=cache)
    work = Path(tempfile.mkdtemp(prefix="agentenv-bench-serve-"))
    path = corpus.save_jsonl(work / "corpus.jsonl")
    port = free_port()
    code = ("from agentenv.envs.search.server import serve_command; import sys; "
            "serve_command(sys.argv[1], 'bm25', '127.0.0.1', int(sys.argv[2]), cache_dir=sys.argv[3])")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(port), str(cache)], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                remote = RemoteRetriever(url, corpus=corpus, retries=0)
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"the server did not start: {proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        for q in queries[:5]:
            remote.search(q, k=10)
        local_t, remote_t = [], []
        for _ in range(rounds):
            for q in queries:
                t0 = time.perf_counter()
                local.search(q, k=10)
                t1 = time.perf_counter()
                remote.search(q, k=10)
                t2 = time.perf_counter()
                local_t.append(t1 - t0)
                remote_t.append(t2 - t1)
        for q in queries[:50]:
            if remote.search(q, k=10) != local.search(q, k=10):
                raise SystemExit(f"server and local results differ for {q!r}")
        batch = queries[:64]
        t0 = time.perf_counter()
        local.search_batch(batch, k=10)
        t1 = time.perf_counter()
        remote.search_batch(batch, k=10)
        t2 = time.perf_counter()
        remote.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    lo, re_ = percentiles(local_t), percentiles(remote_t)
    return {
        "local": lo,
        "server": re_,
        "p50_ratio": re_["p50_ms"] / lo["p50_ms"],
        "p95_ratio": re_["p95_ms"] / lo["p95_ms"],
        "batch64_local_ms": 1e3 * (t1 - t0),
        "batch64_server_ms": 1e3 * (t2 - t1),
        "batch64_ratio": (t2 - t1) / (t1 - t0),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- main -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a corpus JSONL (Corpus.save_jsonl); default: docstrings")
    parser.add_argument("--questions", type=Path, help='a JSONL of {"text", "gold_docs"}; default: built-in sets')
    parser.add_argument("--max-docs", type=int, default=45_000, help="cap of the default corpus")
    parser.add_argument("--dense-docs", type=int, default=2000, help="size of the recall sub-corpus (dense is slow)")
    parser.add_argument("--queries", type=int, default=300, help="queries timed for latency")
    parser.add_argument("--known-items", type=int, default=200, help="first-sentence questions in the built-in set")
    args = parser.parse_args()

    t0 = time.perf_counter()
    corpus = Corpus.load_jsonl(args.corpus) if args.corpus else default_corpus(args.max_docs)
    corpus_s = time.perf_counter() - t0
    if args.questions:
        question_sets = {args.questions.stem: load_questions(args.questions)}
    else:
        question_sets = builtin_questions(corpus, args.known_items)
    all_questions = [q["text"] for qs in question_sets.values() for q in qs]
    queries = [clean_query(q) for q in (all_questions * (1 + args.queries // max(1, len(all_questions))))]
    queries = queries[: args.queries]
    print(f"corpus: {corpus.name}, {len(corpus)} docs ({corpus_s:.1f}s to read); "
          f"questions: { {k: len(v) for k, v in question_sets.items()} }")  # fmt: skip

    cache = Path(tempfile.mkdtemp(prefix="agentenv-bench-index-"))
    try:
        cost = bm25_cost(corpus, queries, cache)
        subset = sub_corpus(corpus, question_sets, min(args.dense_docs, len(corpus)))
        recalls = recall(subset, corpus, question_sets, cache)
        serving = server_latency(corpus, queries, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    print(
        f"\n1. BM25 on {cost['documents']} docs (baseline: raw bm25s, no snippets, no cache), {cost['queries']} queries"
    )
    print(f"{'measure':<26}{'raw bm25s':>12}{'BM25Retriever':>15}{'ratio':>8}")
    print(
        f"{'index build (s)':<26}{cost['raw_build_s']:>12.2f}{cost['ours_build_s']:>15.2f}{cost['build_ratio']:>8.2f}"
    )
    for p in ("p50", "p95"):
        r, o = cost["raw_query"][f"{p}_ms"], cost["ours_query"][f"{p}_ms"]
        print(f"{f'query k=10 {p} (ms)':<26}{r:>12.2f}{o:>15.2f}{o / r:>8.2f}")
    print(f"warm load from cache {cost['ours_warm_load_s'] * 1e3:.0f} ms; index on disk {cost['index_mb']:.1f} MB "
          f"(BM25Retriever's build includes saving it)")  # fmt: skip

    print(f"\n2. recall@10 on {recalls['documents']} docs (baseline: BM25); dense embedding "
          f"{recalls['embed_docs_per_s']:.0f} docs/s")  # fmt: skip
    print(f"{'questions':<16}{'n':>5}{'bm25':>8}{'dense':>8}{'hybrid':>8}{'dense/bm25':>12}{'hybrid/bm25':>12}"
          f"{'bm25, all docs':>16}")  # fmt: skip
    for name, row in recalls["sets"].items():
        print(f"{name:<16}{row['questions']:>5}{row['bm25']:>8.3f}{row['dense']:>8.3f}{row['hybrid']:>8.3f}"
              f"{row['dense_over_bm25']:>12.2f}{row['hybrid_over_bm25']:>12.2f}"
              f"{row['bm25_full_corpus']:>16.3f}")  # fmt: skip

    print("\n3. search latency, k=10 (baseline: the same BM25 in-process)")
    print(f"{'measure':<22}{'local':>10}{'server':>10}{'ratio':>8}")
    for p in ("p50", "p95"):
        lo, se = serving["local"][f"{p}_ms"], serving["server"][f"{p}_ms"]
        print(f"{f'{p} (ms)':<22}{lo:>10.2f}{se:>10.2f}{se / lo:>8.2f}")
    print(f"{'batch of 64 (ms)':<22}{serving['batch64_local_ms']:>10.1f}{serving['batch64_server_ms']:>10.1f}"
          f"{serving['batch64_ratio']:>8.2f}")  # fmt: skip

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "search_retrieval",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "bm25s": bm25s.__version__},
                "corpus": {"name": corpus.name, "documents": len(corpus), "source": str(args.corpus or "default")},
                "notes": "1: interleaved queries, k=10, raw = bm25s.tokenize + BM25.retrieve in memory, ours = "
                "BM25Retriever (memory-mapped index from the cache, snippets); 2: recall@10 = share of gold docs in "
                "the top 10, averaged over questions, on a sub-corpus of every gold doc + seeded others "
                "(bm25_full_corpus: BM25 on the whole corpus); 3: server = `agentenv search serve` in a subprocess, "
                "RemoteRetriever (httpx, keep-alive) on localhost",
                "bm25": cost,
                "recall": recalls,
                "server": serving,
            },
            indent=1,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

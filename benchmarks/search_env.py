"""The search envs: retrieval on the real corpus, recall of BM25 vs dense vs hybrid on generated questions, env step
latency with a local index vs the retrieval server, and oracle vs random reward separation on every registered id.

1. PyDocs (15.8k passages, Debian python3.11-doc): BM25 index build (fresh cache) and query latency p50/p95 over the
   corpus's own questions.
2. recall@10 of each question's first gold document, BM25 (baseline) vs dense (MiniLM) vs hybrid (RRF): on the
   default fictional world (2.8k documents, 1- and 2-hop questions; the first hop names its entity), and on a
   2k-passage PyDocs sub-corpus (its questions' gold passages plus random others; dense embedding of all 15.8k
   passages takes too long on a CPU).
3. Env step latency (a ``search`` tool call) with the in-process index (baseline) vs ``retriever=http://...``
   against ``agentenv search serve`` in another process.
4. Mean return of the scripted oracle vs a random tool-calling policy (random searches and opens, then a random
   entity name as the answer) on every registered search id.

Usage: python benchmarks/search_env.py [--episodes 50] [--skip-dense]   (writes benchmarks/results/search_env.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import agentenv
from agentenv.envs.search import PRESETS
from agentenv.envs.search.corpus import Corpus
from agentenv.envs.search.env import load_corpus
from agentenv.envs.search.pydocs import load_pydocs
from agentenv.envs.search.retrieval import BM25Retriever, make_retriever
from agentenv.envs.search.world import build_world, world_config
from agentenv.policies.scripted import WalkthroughPolicy
from agentenv.rollout import play_episode
from agentenv.tool_calls import tool_call_text

RESULTS = Path(__file__).parent / "results" / "search_env.json"


def call(name: str, **arguments) -> str:
    return tool_call_text(name, arguments)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pydocs_bm25(rows: list[dict]) -> None:
    docs = load_pydocs()
    with tempfile.TemporaryDirectory(prefix="agentenv-bench-bm25-") as cache:
        t0 = time.perf_counter()
        retriever = BM25Retriever(docs.corpus, cache_dir=cache)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        BM25Retriever(docs.corpus, cache_dir=cache)
        load = time.perf_counter() - t0
        queries = [q.text for q in docs.questions[:1000]]
        latencies = []
        for query in queries:
            t0 = time.perf_counter()
            retriever.search(query, k=10)
            latencies.append(time.perf_counter() - t0)
    rows.append({"what": "pydocs bm25 index build", "documents": len(docs.corpus), "seconds": build,
                 "cached_load_seconds": load})  # fmt: skip
    p50, p95 = 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.95)
    rows.append({"what": "pydocs bm25 query (k=10)", "queries": len(queries), "p50_ms": p50, "p95_ms": p95})


def recall(retriever, questions, k: int = 10) -> float:
    hits = retriever.search_batch([q.text for q in questions], k=k)
    return sum(q.gold_docs[0] in {h.doc_id for h in found} for q, found in zip(questions, hits, strict=True)) / len(
        questions
    )


def recalls(rows: list[dict], name: str, corpus: Corpus, questions: list, kinds: tuple[str, ...]) -> None:
    base = None
    for kind in kinds:
        t0 = time.perf_counter()
        retriever = make_retriever(corpus, kind)
        built = time.perf_counter() - t0
        value = recall(retriever, questions)
        base = value if base is None else base
        rows.append({"what": f"recall@10 {name}", "retriever": kind, "questions": len(questions),
                     "documents": len(corpus), "recall": value, "ratio": value / base if base else float("nan"),
                     "index_seconds": built})  # fmt: skip


def world_questions(n: int) -> list:
    world = build_world(world_config("default"))
    return [world.question(2_000_000_000 + i, hops=1 + i % 2) for i in range(n)]


def pydocs_subcorpus(n_questions: int, n_docs: int) -> tuple[Corpus, list]:
    docs = load_pydocs()
    rng = random.Random(0)
    questions = rng.sample([q for q in docs.questions if q.answer_type != "open"], n_questions)
    keep = {q.gold_docs[0] for q in questions}
    others = [d.id for d in docs.corpus if d.id not in keep]
    keep |= set(rng.sample(others, max(0, n_docs - len(keep))))
    return Corpus([d for d in docs.corpus if d.id in keep], name="pydocs-2k"), questions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_latency(rows: list[dict], steps: int) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "agentenv.cli", "search", "serve", "--corpus", "world", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        timings = {}
        for label, options in (("local index", {}), ("retrieval server", {"retriever": f"http://127.0.0.1:{port}"})):
            env = agentenv.make("AgentEnv/Search-World-h1-v0", **options)
            latencies = []
            for s in range(steps):
                env.reset(seed=s)
                query, _ = env.unwrapped.question.oracle_steps()[0]
                t0 = time.perf_counter()
                env.step(call("search", query=query))
                latencies.append(time.perf_counter() - t0)
            env.close()
            timings[label] = latencies
        base = statistics.median(timings["local index"])
        for label, latencies in timings.items():
            p50 = statistics.median(latencies)
            rows.append({"what": "env search step", "retriever": label, "p50_ms": 1000 * p50,
                         "p95_ms": 1000 * percentile(latencies, 0.95), "ratio": p50 / base})  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


class RandomTools:
    """Random searches (corpus words) and opens (random ids), answering a random title at a random turn."""

    name = "random"

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def start(self, env, observation, info):
        corpus = env._corpus
        self.docs = corpus.documents
        self.turns_left = info["turn_limit"]

    def act(self, observation, info):
        self.turns_left -= 1
        doc = self.rng.choice(self.docs)
        if self.turns_left <= 0 or self.rng.random() < 0.25:
            return call("answer", text=doc.title)
        if self.rng.random() < 0.5:
            return call("search", query=self.rng.choice(doc.text.split()))
        return call("open", doc_id=doc.id)


def separation(rows: list[dict], episodes: int) -> None:
    for name in PRESETS:
        env = agentenv.make(f"AgentEnv/{name}", split="test")
        oracle = [play_episode(env, WalkthroughPolicy(), s).episode_return for s in range(episodes)]
        rand = [play_episode(env, RandomTools(s), s).episode_return for s in range(episodes)]
        env.close()
        rows.append({"what": "oracle vs random", "env": name, "episodes": episodes,
                     "oracle_return": statistics.mean(oracle), "random_return": statistics.mean(rand),
                     "separation": statistics.mean(oracle) - statistics.mean(rand)})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--skip-dense", action="store_true", help="BM25 only (dense embedding takes minutes)")
    args = parser.parse_args()
    rows: list[dict] = []
    started = time.perf_counter()
    load_corpus("pydocs")  # the cached corpus build is not what is measured
    pydocs_bm25(rows)
    kinds = ("bm25",) if args.skip_dense else ("bm25", "dense", "hybrid")
    recalls(rows, "world (h1+h2)", load_corpus("world"), world_questions(400), kinds)
    recalls(rows, "pydocs-2k", *pydocs_subcorpus(300, 2000), kinds)
    step_latency(rows, 200)
    separation(rows, args.episodes)
    for r in rows:
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()}
        print("  ".join(f"{k}={v}" for k, v in shown.items()))
    result = {"meta": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "seconds": time.perf_counter() - started}, "rows": rows}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

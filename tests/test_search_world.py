"""The procedural search world: deterministic, answerable, unambiguous, and distractors that never contradict."""

import re

import pytest

from agentenv.core import SPLIT_BASE
from agentenv.envs.search.questions import ANSWER_TYPES, Question, load_questions, save_questions
from agentenv.envs.search.world import _REAL_NAMES, EDGES, FACTS, WORLD_SIZES, WorldConfig, build_world, world_config
from agentenv.errors import ConfigError

SMALL = {"n_people": 150, "n_places": 30, "n_orgs": 25, "n_events": 25}
SEEDS = range(30)


@pytest.fixture(scope="module")
def world():
    return build_world(seed=3, **SMALL)


@pytest.fixture(scope="module")
def questions(world):
    return [world.question(s, hops) for hops in range(1, 5) for s in SEEDS]


def test_same_config_builds_the_same_corpus_and_questions(world):
    again = build_world(seed=3, **SMALL)
    assert again.corpus.fingerprint == world.corpus.fingerprint
    for hops in (1, 3):
        assert [again.question(s, hops) for s in range(10)] == [world.question(s, hops) for s in range(10)]


def test_another_seed_builds_another_world(world):
    other = build_world(seed=4, **SMALL)
    assert other.corpus.fingerprint != world.corpus.fingerprint
    assert {e.name for e in other.entities.values()} != {e.name for e in world.entities.values()}


def test_entity_names_are_unique_and_made_up(world):
    names = [e.name for e in world.entities.values()]
    assert len(names) == len(set(names))
    tokens = {t.lower() for n in names for t in n.split()}
    assert not tokens & _REAL_NAMES


def test_every_step_fact_is_stated_in_its_document(world, questions):
    for q in questions:
        for step in q.meta["steps"]:
            doc = world.corpus[step["doc"]]
            subject = world.entity(step["search"])
            assert subject.name in doc.title + " " + doc.text, (q.id, step)
            forms = world.value(subject, step["fact"]).answers
            assert any(f in doc.text for f in forms), (q.id, step, doc.text)
            assert step["doc"] in q.gold_docs


def test_answers_appear_in_gold_documents(world, questions):
    for q in questions:
        gold_text = " ".join(world.corpus[d].text for d in q.gold_docs)
        if q.answer_type == "open":
            assert q.answer == "" and len(q.nuggets) >= 2
        elif q.answer_type == "list":
            assert all(member in gold_text for member in q.nuggets)
        else:
            assert any(a in world.corpus[q.gold_docs[-1]].text for a in q.answers), q


def test_chains_resolve_to_exactly_one_answer(world, questions):
    for q in questions:
        entity = world.entity(q.meta["entities"][0])
        for edge in q.meta["chain"]:
            entity = world.entities[entity.links[edge]]
        assert entity.name == q.meta["entities"][-1]
        assert len(q.meta["chain"]) == q.hops - 1
        assert len(set(q.meta["entities"])) == len(q.meta["entities"])  # no entity twice on a chain
        fact = q.meta["final"]
        if q.answer_type == "list":
            members = sorted(e.name for e in world.entities.values() if e.links.get(fact) == entity.id)
            assert q.nuggets == tuple(members) and 2 <= len(members) <= 5
        elif q.answer_type != "open":
            assert world.value(entity, fact).answer == q.answer


def test_question_text_names_the_start_but_no_later_entity(world, questions):
    for q in questions:
        start, *later = q.meta["entities"]
        assert start in q.text
        assert not any(name in q.text for name in later), q.text
        assert q.answer not in q.text or q.answer_type == "open"


def test_questions_do_not_copy_document_sentences(world, questions):
    """Paraphrased: no question shares a run of five words with its gold documents."""

    def runs(text):
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}

    for q in questions:
        for doc_id in q.gold_docs:
            names = {w for s in q.meta["steps"] for w in re.findall(r"\w+", s["search"].lower())}
            shared = {r for r in runs(q.text) & runs(world.corpus[doc_id].text) if not set(r) <= names | {"the"}}
            assert not shared, (q.text, shared)


def test_all_answer_types_are_produced_and_restrictable(world):
    seen = {world.question(s, 2).answer_type for s in range(60)}
    assert seen == set(ANSWER_TYPES)
    for answer_type in ANSWER_TYPES:
        assert {world.question(s, 3, answer_types=answer_type).answer_type for s in range(5)} == {answer_type}


def test_split_task_seeds_give_different_questions(world):
    texts = {split: {world.question(base + i, 2).text for i in range(40)} for split, base in SPLIT_BASE.items()}
    assert len(texts["train"] & texts["test"]) < 4
    assert len(texts["validation"] & texts["test"]) < 4
    ids = [world.question(base + i, 2).id for base in SPLIT_BASE.values() for i in range(40)]
    assert len(set(ids)) == len(ids)


def test_oracle_can_follow_the_steps(world, questions):
    """Per hop, the step names the entity to search and a gold document that carries its name."""
    for q in questions:
        hops = [s["hop"] for s in q.meta["steps"]]
        assert hops == sorted(hops) and set(hops) == set(range(1, q.hops + 1))
        for step in q.meta["steps"]:
            assert step["search"] in world.corpus[step["doc"]].title + world.corpus[step["doc"]].text


def test_describe_gives_every_fact_and_its_document(world):
    person = next(e for e in world.entities.values() if "mayor_of" in e.links)
    card = world.describe(person.name)
    assert set(card["facts"]) == {f for f in FACTS["person"] if f in person.links or f in person.attrs}
    for fact, doc_id in card["docs"].items():
        assert card["facts"][fact] in world.corpus[doc_id].text or fact in ("birth_year",)
    with pytest.raises(KeyError, match="no entity"):
        world.entity("Nobody Here")


def test_distractor_rate_adds_documents_and_keeps_entity_documents():
    plain, noisy = build_world(distractor_rate=0.0, **SMALL), build_world(distractor_rate=0.5, **SMALL)
    assert len(noisy.corpus) > len(plain.corpus)
    assert {d.meta["role"] for d in plain.corpus} == {"profile", "notes"}
    real = lambda w: {(d.title, d.text) for d in w.corpus if d.meta["role"] in ("profile", "notes")}  # noqa: E731
    assert real(plain) == real(noisy)
    assert [e.name for e in plain.entities.values()] == [e.name for e in noisy.entities.values()]


def test_distractors_never_state_a_fact_of_a_real_entity():
    world = build_world(distractor_rate=1.0, **SMALL)
    names = sorted((e.name for e in world.entities.values()), key=len, reverse=True)
    real = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")
    fact_words = re.compile(
        r"\b(?:born|found|establish|mayor|capital|head|employ|work|staff|held|took place|organis|independen|popul|"
        r"inhabit|region|metre|visitor|attend)\w*|\d"
    )  # lowercase: names such as "Maekte Works" are not statements
    roles = {d.meta["role"] for d in world.corpus}
    assert {"namesake", "mention"} <= roles
    for doc in world.corpus:
        if doc.meta["role"] == "namesake":  # made-up entities linked only to made-up entities
            assert not real.search(doc.title + " " + doc.text), doc
        elif doc.meta["role"] == "mention":  # real names, no facts
            assert real.search(doc.text) and not fact_words.search(doc.text), doc


def test_default_world_size():
    world = build_world()
    assert 2000 <= len(world.corpus) <= 5000
    assert all(world.fact_docs[(e.id, f)] in world.corpus for e in world.entities.values() for f in e.links)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_people": 10}, "n_people"),
        ({"n_places": 3}, "n_places"),
        ({"n_orgs": "many"}, "n_orgs"),
        ({"n_events": -1}, "n_events"),
        ({"distractor_rate": 9.0}, "distractor_rate"),
        ({"seed": 1.5}, "seed"),
        ({"n_peeple": 10}, "WorldConfig field"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        build_world(**kwargs)


def test_bad_question_arguments_name_the_field(world):
    with pytest.raises(ConfigError, match="hops"):
        world.question(0, hops=5)
    with pytest.raises(ConfigError, match="answer_types"):
        world.question(0, answer_types=["essay"])
    with pytest.raises(ConfigError, match="task_seed"):
        world.question("0")


def test_tiny_world_still_answers_every_type():
    world = build_world(WorldConfig(n_people=9, n_places=8, n_orgs=2, n_events=2))
    for answer_type in ANSWER_TYPES:
        for hops in range(1, 5):
            assert world.question(hops, hops, answer_types=answer_type).answer_type == answer_type


def test_questions_round_trip_through_jsonl(world, tmp_path):
    questions = [world.question(s, 2) for s in range(10)]
    assert load_questions(save_questions(tmp_path / "q.jsonl", questions)) == questions
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_questions(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="answer_type"):
        Question("q", "?", "a", (), "essay", (), (), 1, {})


def test_every_relation_appears_in_some_chain(world):
    chains = {e for s in range(200) for e in world.question(s, 3).meta["chain"]}
    assert chains == set(EDGES)


def test_named_sizes_build_and_validate():
    sizes = [len(build_world(world_config(size, seed=1)).corpus) for size in ("tiny", "small", "default")]
    assert sizes == sorted(sizes) and set(WORLD_SIZES) >= {"tiny", "small", "default", "large"}
    assert world_config("small", distractor_rate=0.0).distractor_rate == 0.0
    with pytest.raises(ConfigError, match="world_size"):
        world_config("huge")
    with pytest.raises(ConfigError, match="WorldConfig field"):
        world_config("small", n_peeple=3)


def test_oracle_plan_opens_each_gold_document_once(world, questions):
    for q in questions:
        plan = q.oracle_steps()
        assert [doc for _, doc in plan] == list(q.gold_docs)
        for query, doc in plan:
            assert query in world.corpus[doc].title + " " + world.corpus[doc].text
        answer = q.oracle_answer()
        assert answer == q.answer if q.answer_type != "open" else all(n in answer for n in q.nuggets)

"""The real-documentation corpus (Debian's python3.11-doc) and its questions; folder corpora of text files.

Tests that need the documentation skip, saying how to install it, when the package is absent.
"""

import re
import textwrap

import pytest

from agentenv.envs.search.corpus import Corpus, Document, chunk_paragraphs, folder_corpus, split_sections
from agentenv.envs.search.pydocs import (
    INSTALL_COMMAND,
    QUESTION_KINDS,
    PyDocsMissingError,
    build_pydocs_corpus,
    find_source_dir,
    load_pydocs,
    parse_page,
    pydocs_questions,
    rst_text,
)
from agentenv.envs.search.questions import ANSWER_TYPES
from agentenv.errors import ConfigError


@pytest.fixture(scope="module")
def pydocs():
    try:
        find_source_dir()
    except PyDocsMissingError:
        pytest.skip(f"python3.11-doc is not installed ({INSTALL_COMMAND})")
    return load_pydocs()


# ---- the real package ----


def test_known_fact_os_getcwd_is_in_module_os(pydocs):
    doc = pydocs.corpus["library/os.html#os.getcwd"]
    assert doc.text.startswith("os.getcwd()") and "current working directory" in doc.text
    assert "Files and Directories" in doc.title
    q = next(q for q in pydocs.questions if q.id == "pydocs-module-os.getcwd")
    assert (q.answer, q.answer_type, q.gold_docs) == ("os", "entity", ("library/os.html#os.getcwd",))
    assert "getcwd" in q.text and "os." not in q.text


def test_known_facts_of_os_makedirs(pydocs):
    by_id = {q.id: q for q in pydocs.questions}
    assert by_id["pydocs-default-os.makedirs-exist_ok"].answer == "False"
    assert by_id["pydocs-param_added-os.makedirs-exist_ok"].answer == "3.2"
    assert by_id["pydocs-pathlike-os.makedirs"].answer == "3.6"
    assert by_id["pydocs-raises-os.makedirs"].answer == "FileExistsError"


def test_corpus_is_large_with_stable_unique_ids(pydocs):
    assert len(pydocs.corpus) > 10_000
    assert all("#" in doc_id and ".html" in doc_id for doc_id in pydocs.corpus.ids)


def test_cached_copy_reads_back_the_same_corpus_and_questions(pydocs):
    import agentenv.envs.search.pydocs as module

    module._LOADED.clear()  # forget this process's copy: read the cache folder again
    again = load_pydocs()
    assert again is not pydocs
    assert again.corpus.fingerprint == pydocs.corpus.fingerprint and again.questions == pydocs.questions


def test_questions_of_a_built_corpus(pydocs):
    corpus = build_pydocs_corpus()
    assert pydocs_questions(corpus) == load_pydocs().questions
    with pytest.raises(ValueError, match="not built by"):
        pydocs_questions(folder_corpus_of_one_file())


def test_every_answer_appears_in_its_gold_documents(pydocs):
    for q in pydocs.questions:
        texts = [pydocs.corpus[d].text for d in q.gold_docs]
        if q.answer_type == "list":
            assert all(any(m in t for t in texts) for m in q.nuggets), q
        elif q.answer_type != "open":
            assert any(a in t for a in q.answers for t in texts), q
        assert q.meta["object"] in texts[0].split("\n")[0]  # the passage starts with the object's signature


def test_all_kinds_and_answer_types_are_produced(pydocs):
    assert {q.meta["kind"] for q in pydocs.questions} == set(QUESTION_KINDS)
    assert {q.answer_type for q in pydocs.questions} == set(ANSWER_TYPES)
    assert len({q.id for q in pydocs.questions}) == len(pydocs.questions)


def test_questions_are_paraphrased_not_copied(pydocs):
    """No question shares a run of six words with its gold passage (names and signatures aside)."""

    def runs(text):
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i : i + 6]) for i in range(len(words) - 5)}

    copied = [q for q in pydocs.questions if runs(q.text) & runs(pydocs.corpus[q.gold_docs[0]].text)]
    assert len(copied) < 0.01 * len(pydocs.questions), [q.text for q in copied[:5]]


def test_filtering_by_type_and_kind(pydocs):
    versions = pydocs_questions(kinds=["added", "deprecated"])
    assert versions and {q.meta["kind"] for q in versions} == {"added", "deprecated"}
    assert {q.answer_type for q in pydocs_questions(answer_types="list")} == {"list"}
    with pytest.raises(ConfigError, match="kinds"):
        pydocs_questions(kinds="nonsense")


def folder_corpus_of_one_file():
    return Corpus([Document("a#b", "A", "text")], "other")


# ---- without the package ----


def test_missing_sources_name_the_install_command(tmp_path):
    with pytest.raises(PyDocsMissingError, match=r"apt-get install -y python3\.11-doc") as info:
        load_pydocs(tmp_path)
    assert "make corpus-pydocs" in str(info.value)


PAGE = """
:mod:`spam` --- Canned meat
===========================

.. module:: spam
   :synopsis: Canned meat.

Intro to the :mod:`spam` module.

Functions
---------

.. function:: fry(pan, oil=None, *, minutes=3)

   Fry the *pan*.  Raises :exc:`ValueError` if *minutes* is negative.

   .. versionadded:: 3.4

   .. versionchanged:: 3.6
      Added the *minutes* parameter.

.. class:: Tin(size='small')

   A tin.

   .. method:: open(force=False)

      Open it; raises :exc:`spam.TinError` when stuck.

   .. deprecated:: 3.9

.. data:: RED
          GREEN

   Colours.
"""


def test_parse_page_reads_modules_objects_and_nesting():
    page = parse_page(textwrap.dedent(PAGE), "library/spam.html")
    assert page.title == "spam — Canned meat"
    names = [o.name for o in page.objects]
    assert names == ["spam.fry", "spam.Tin", "spam.Tin.open", "spam.RED"]
    fry, tin, open_, red = page.objects
    assert fry.signatures == ["pan, oil=None, *, minutes=3"] and fry.section == ("spam — Canned meat", "Functions")
    assert red.names == ["spam.RED", "spam.GREEN"] and red.signatures == [None, None]
    text = rst_text(fry.lines)
    assert "New in version 3.4." in text.text and ":exc:" not in text.text
    assert text.versions == [("versionadded", "3.4", ""), ("versionchanged", "3.6", "Added the minutes parameter.")]
    assert text.raises == [("ValueError", "ValueError")]
    assert rst_text(open_.lines).raises == [("spam.TinError", "spam.TinError")]
    assert [v[0] for v in rst_text(tin.lines).versions] == ["deprecated"]  # the method's lines are its own


def test_small_source_folder_builds_corpus_and_questions(tmp_path, monkeypatch):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "os.rst.txt").write_text(textwrap.dedent(PAGE))
    built = load_pydocs(tmp_path, cache=False)
    assert "library/os.html#spam.fry" in built.corpus
    by_id = {q.id: q for q in built.questions}
    assert by_id["pydocs-added-spam.fry"].answer == "3.4"
    assert by_id["pydocs-param_added-spam.fry-minutes"].answer == "3.6"
    assert by_id["pydocs-default-spam.fry-minutes"].answer_type == "number"
    assert by_id["pydocs-raises-spam.fry"].answer == "ValueError"
    assert by_id["pydocs-deprecated-spam.Tin"].answer == "3.9"
    assert by_id["pydocs-module-spam.fry"].answer == "spam"
    assert set(by_id["pydocs-default-spam.Tin-size"].aliases) == {"small"}
    assert by_id["pydocs-open-spam.fry"].answer_type == "open"


# ---- folder corpora ----


def test_folder_corpus_cuts_markdown_and_rest_at_headings(tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\nHello.\n\n## Install\n\n```\n# not a heading\n```\n\nRun it.\n")
    (tmp_path / "ref.rst").write_text("Reference\n=========\n\nIntro.\n\nUsage\n-----\n\nCall it.\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.md").write_text("# secret\n")
    corpus = folder_corpus(tmp_path)
    assert corpus.ids == ["guide.md#guide", "guide.md#install", "ref.rst#reference", "ref.rst#usage"]
    assert corpus["guide.md#install"].title == "Guide > Install"
    assert "# not a heading" in corpus["guide.md#install"].text
    assert corpus["ref.rst#usage"].title == "Reference > Usage"
    with pytest.raises(ValueError, match="no text"):
        folder_corpus(tmp_path, patterns=("*.csv",))


def test_long_sections_continue_in_numbered_passages(tmp_path):
    (tmp_path / "long.txt").write_text("\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(20)))
    corpus = folder_corpus(tmp_path, max_chars=500)
    assert corpus.ids[:3] == ["long.txt#top", "long.txt#top-2", "long.txt#top-3"]
    assert all(len(d.text) <= 500 for d in corpus)
    assert "Paragraph 19" in corpus.documents[-1].text


def test_chunk_and_split_helpers():
    assert chunk_paragraphs("a. " * 400, 100) and all(len(c) <= 100 for c in chunk_paragraphs("a. " * 400, 100))
    assert chunk_paragraphs("   \n\n  ", 100) == []
    assert split_sections("Title\n=====\n\nBody\n", "rst") == [(("Title",), "Body")]
    with pytest.raises(ValueError, match="fmt"):
        split_sections("x", "html")

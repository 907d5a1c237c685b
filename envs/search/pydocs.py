"""The real-documentation corpus: the Python 3.11 docs (Debian's ``python3.11-doc``) as passages, with questions.

The reST sources (``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``) become passages: one per documented
object (``.. function::``, ``.. class::``, ``.. method::``...; id ``library/os.html#os.getcwd``, the Sphinx anchor) and
the prose of each section (``library/os.html#files-and-directories``); a passage longer than ``max_chars`` continues
in ``...-2``, ``...-3``. Markup becomes plain text the way Sphinx renders it (``:func:`mkdir``` -> ``mkdir()``,
``.. versionadded:: 3.2`` -> "New in version 3.2.").

Questions come from the structure of the directives, so their answers are exact: the module that provides a
uniquely named object, the version that added an object or one of its parameters, the exception it documents
raising, a parameter's default, the version that deprecated it, and open "summarise" questions whose nuggets are
those facts. They are phrased from templates, never copied from the documentation's sentences.

Nothing of the documentation is in this repository: :func:`load_pydocs` builds the corpus and questions once and
caches them (JSONL) under the AgentEnv cache, keyed by a fingerprint of the sources. Without the package it raises
:class:`PyDocsMissingError` naming the command that installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentenv.cache import build_once, cache_root
from agentenv.envs.search.corpus import Corpus, Document, chunk_paragraphs, slugify
from agentenv.envs.search.questions import ANSWER_TYPES, Question, load_questions, save_questions
from agentenv.errors import check_choice

#: Where Debian's python3.11-doc puts the reST sources; ``$AGENTENV_PYDOCS_SOURCES`` or ``source_dir`` override it.
DEFAULT_SOURCE_DIR = Path("/usr/share/doc/python3.11/html/_sources")
INSTALL_COMMAND = "sudo apt-get install -y python3.11-doc"
#: Bump when the parser or the questions change: it is part of the cache key.
BUILD_VERSION = 4
#: Question kinds; each maps to one answer type (``raises`` is ``list`` when several exceptions are documented).
QUESTION_KINDS = ("module", "added", "param_added", "pathlike", "deprecated", "raises", "default", "open")


class PyDocsMissingError(FileNotFoundError):
    """The documentation sources are not installed; the message says how to install them."""


# ---- reST to text -----------------------------------------------------------------------------------------

_OBJECT_KINDS = (
    "function",
    "method",
    "class",
    "exception",
    "data",
    "attribute",
    "decorator",
    "decoratormethod",
    "classmethod",
    "staticmethod",
    "coroutinefunction",
    "coroutinemethod",
    "abstractmethod",
    "property",
)
_OBJECT = re.compile(r"^(\s*)\.\. (?:py:)?(" + "|".join(_OBJECT_KINDS) + r")::\s*(.*?)\s*$")
_MODULE = re.compile(r"^\.\. (?:py:)?(module|currentmodule)::\s*(\S+)")
_DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w:-]+)::(?:\s+(.*?))?\s*$")
_COMMENT = re.compile(r"^(\s*)\.\.(?:\s.*)?$")
_SUBSTITUTION = re.compile(r"^\s*\.\. \|[^|]+\|")
_OPTION = re.compile(r"^\s*:[\w -]+:(?:\s.*)?$")
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
_ROLE = re.compile(r":(?:[\w-]+:)*([\w-]+):`([^`]*)`")
_VERSION_DIRECTIVES = {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}
_DROP = {
    "index",
    "toctree",
    "testsetup",
    "testcleanup",
    "raw",
    "include",
    "literalinclude",
    "highlight",
    "sectionauthor",
    "moduleauthor",
    "tabularcolumns",
    "only",
    "contents",
    "image",
    "figure",
    "module",
    "currentmodule",
    "program",
}
_LABELS = {
    "note": "Note:",
    "warning": "Warning:",
    "seealso": "See also:",
    "important": "Important:",
    "caution": "Caution:",
    "impl-detail": "CPython implementation detail:",
    "availability": "Availability:",
    "rubric": "",
    "topic": "",
    "sidebar": "",
}
_KIND_WORDS = {
    "function": "function",
    "coroutinefunction": "coroutine function",
    "class": "class",
    "exception": "exception",
    "data": "constant",
    "decorator": "decorator",
}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _role(match: re.Match) -> str:
    role, content = match.group(1), match.group(2)
    titled = re.match(r"^(.*?)\s*<([^<>]*)>$", content, re.S)
    if titled and titled.group(1):
        return titled.group(1)
    content = content.lstrip("!")
    if role == "pep":
        return f"PEP {content}"
    if role == "rfc":
        return f"RFC {content}"
    if role == "issue":
        return f"bpo-{content}"
    if role == "gh":
        return f"gh-{content}"
    if content.startswith("~"):
        content = content[1:].rsplit(".", 1)[-1]
    if role in ("func", "meth") and not content.endswith(")"):
        content += "()"
    return content


_INLINE = (
    (re.compile(r"``(.+?)``", re.S), r"\1"),
    (re.compile(r"`([^`<]+?)\s*<[^>]+>`__?"), r"\1"),
    (re.compile(r"`([^`]+)`__?"), r"\1"),
    (re.compile(r"\*\*(\S(?:[^*\n]*?\S)?)\*\*"), r"\1"),
    (re.compile(r"(?<![\w*\\])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
)


def inline_text(text: str) -> str:
    """reST inline markup as Sphinx displays it: roles, literals, emphasis, links, escapes."""
    if not any(c in text for c in "`*\\"):
        return text
    text = _ROLE.sub(_role, text)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text.replace("\\ ", "").replace("\\\\", "\x00").replace("\\", "").replace("\x00", "\\")


@dataclass
class _Text:
    """Converted content: the text, its version notes ``(directive, version, body)`` and raise sentences."""

    text: str = ""
    versions: list[tuple[str, str, str]] = field(default_factory=list)
    raises: list[tuple[str, str]] = field(default_factory=list)  # (shown exception name, its target)


def rst_text(lines: list[str]) -> _Text:
    """Plain text of a block of reST lines; version directives become "New in version X." paragraphs."""
    out: list[str] = []
    result = _Text()
    plain: list[str] = []  # raw prose lines outside version notes, for the raise scan
    pending: list[str] = []  # prose lines, converted together so that markup may span lines

    def flush() -> None:
        if pending:
            out.append(inline_text("\n".join(pending)))
            pending.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line) if ".." in line else None
        substitution = directive is None and _SUBSTITUTION.match(line)
        if directive or substitution or (line.lstrip().startswith("..") and _COMMENT.match(line) and "::" not in line):
            flush()
            base = _indent(line)
            j = i + 1
            while j < len(lines) and _OPTION.match(lines[j]) and _indent(lines[j]) > base:
                j += 1
            end = j
            while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
                end += 1
            body = lines[j:end]
            name = directive.group(2) if directive else ""
            args = (directive.group(3) or "") if directive else ""
            if not directive or name in _DROP:
                i = end
                continue
            if name in _VERSION_DIRECTIVES:
                note, version = _version_note(name, args, body)
                out += ["", note, ""]
                result.versions.append(version)
                i = end
                continue
            if name == "audit-event":
                out += _audit_event(args)
                i = end
                continue
            label = _LABELS.get(name)
            header = label if label is not None else ""
            if name == "availability" or label is None:
                header = f"{header} {inline_text(args)}".strip()
            out += ["", header] if header else [""]
            sub = rst_text([x[base:] if len(x) > base else x.strip() for x in body])
            out += [sub.text, ""]
            result.versions += sub.versions
            result.raises += sub.raises
            i = end
            continue
        stripped = line.rstrip()
        if stripped.endswith("::"):
            stripped = stripped[:-2].rstrip() + (":" if not stripped[:-2].endswith(" ") and stripped[:-2] else "")
        pending.append(stripped)
        plain.append(line)
        i += 1
    flush()
    result.text = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")
    result.raises = _raise_mentions("\n".join(plain)) + result.raises
    return result


def _version_note(name: str, args: str, body: list[str]) -> tuple[str, tuple[str, str, str]]:
    """A version directive as its paragraph ("New in version 3.8.", "Changed in version 3.9: ...") and as
    ``(directive, version, text)``."""
    removal = name == "deprecated-removed"
    parts = args.split(None, 2 if removal else 1)
    version = parts[0] if parts else ""
    removed = parts[1] if removal and len(parts) > 1 else ""
    rest = parts[-1] if len(parts) > (2 if removal else 1) else ""
    body_text = inline_text(" ".join(x.strip() for x in [rest, *body] if x.strip() and not _DIRECTIVE.match(x)))
    head = {
        "versionadded": f"New in version {version}.",
        "versionchanged": f"Changed in version {version}:",
        "deprecated": f"Deprecated since version {version}:",
        "deprecated-removed": f"Deprecated since version {version}, will be removed in version {removed}:",
    }[name]
    if name != "versionadded" and not body_text:
        head = head.rstrip(":") + "."
    return f"{head} {body_text}".strip(), (name, version, body_text)


def _audit_event(args: str) -> list[str]:
    """An ``audit-event`` directive as its sentence (nothing without an event name)."""
    parts = args.split()
    if not parts:
        return []
    arguments = parts[1].replace(",", ", ") if len(parts) > 1 else ""
    with_args = f" with arguments {arguments}" if arguments else ""
    return ["", f"Raises an auditing event {parts[0]}{with_args}.", ""]


def _raise_mentions(raw: str) -> list[tuple[str, str]]:
    """Exceptions named by :exc: roles in sentences that say "raise" (raw reST, before conversion)."""
    found = []
    for paragraph in re.split(r"\n\s*\n", raw):
        flat = " ".join(paragraph.split())
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            if not re.search(r"\brais(e|es|ed|ing)\b", sentence, re.I):
                continue
            for role in re.finditer(r":exc:`([^`]+)`", sentence):
                content = role.group(1).lstrip("!")
                target = re.sub(r"^.*<([^>]+)>$", r"\1", content).lstrip("~")
                shown = _role(re.match(_ROLE, f":exc:`{content}`"))
                found.append((shown, target))
    return found


# ---- parsing the sources ----------------------------------------------------------------------------------


@dataclass
class PyObject:
    """One documented object: ``name`` is its full dotted name (``os.makedirs``, ``str.split``)."""

    kind: str
    name: str
    module: str | None
    signatures: list[str | None]  # argument lists, None for objects shown without parentheses
    page: str
    section: tuple[str, ...]
    names: list[str] = field(default_factory=list)  # one per signature ("os.O_RDONLY", "os.O_WRONLY", ...)
    lines: list[str] = field(default_factory=list)
    in_class: bool = False
    noindex: bool = False  # a second description that points at the main one: no anchor, no questions
    text: _Text | None = None
    doc_ids: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def signature_text(self) -> str:
        prefix = {
            "class": "class ",
            "exception": "exception ",
            "decorator": "@",
            "decoratormethod": "@",
            "coroutinefunction": "coroutine ",
            "coroutinemethod": "coroutine ",
            "classmethod": "classmethod ",
            "staticmethod": "staticmethod ",
            "abstractmethod": "abstractmethod ",
            "property": "property ",
        }.get(self.kind, "")
        names = self.names or [self.name] * len(self.signatures)
        shown = [f"{prefix}{n}" + ("" if a is None else f"({a})") for n, a in zip(names, self.signatures, strict=True)]
        return "\n".join(shown)


@dataclass
class _Page:
    path: str  # library/os.html
    title: str
    prose: list[tuple[tuple[str, ...], list[str]]]  # (section path, raw lines) in order
    objects: list[PyObject]


def _split_signature(sig: str) -> tuple[str, str | None]:
    """``makedirs(name, mode=0o777)`` -> ("makedirs", "name, mode=0o777"); ``O_RDONLY`` -> ("O_RDONLY", None)."""
    sig = sig.replace("\\\\", "\\")
    match = re.match(r"^([\w.]+)\s*(?:\((.*)\))?\s*(?:->.*)?$", sig.strip())
    if not match:
        name = re.split(r"[\s(]", sig.strip(), maxsplit=1)[0]
        return name, None
    return match.group(1), match.group(2)


def _qualify(name: str, parent: PyObject | None, module: str | None) -> str:
    """The full dotted name Sphinx gives ``name``: inside its class, else inside the current module."""
    if parent is not None and not name.startswith(parent.name + "."):
        return f"{parent.name}.{name.removeprefix(parent.short + '.')}"
    if parent is None and module and not name.startswith(module + "."):
        return f"{module}.{name}"
    return name


def parse_page(text: str, path: str) -> _Page:
    """One reST page: its title, prose per section and the objects it documents (methods nested in classes)."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    section: list[tuple[int, str]] = []
    prose: list[tuple[tuple[str, ...], list[str]]] = [((), [])]
    objects: list[PyObject] = []
    stack: list[tuple[int, int, PyObject]] = []  # (directive indent, content indent, object)
    module: str | None = None
    title = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip():
            while stack and _indent(line) <= stack[-1][0]:
                stack.pop()
        if not stack:
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            over = _ADORNMENT.match(line)
            style = None
            if over and i + 2 < len(lines) and lines[i + 1].strip() and _ADORNMENT.match(lines[i + 2]):
                style, heading, skip = (over.group(1), True), lines[i + 1].strip(), 3
            elif (
                line.strip()
                and not line[0].isspace()
                and not over
                and _ADORNMENT.match(nxt)
                and len(nxt.rstrip()) >= len(line.rstrip())
            ):
                style, heading, skip = (nxt[0], False), line.strip(), 2
            if style is not None:
                if style not in styles:
                    styles.append(style)
                level = styles.index(style)
                while section and section[-1][0] >= level:
                    section.pop()
                heading = inline_text(heading).replace(" --- ", " — ")
                section.append((level, heading))
                title = title or heading
                prose.append((tuple(h for _, h in section), []))
                i += skip
                continue
            mod = _MODULE.match(line)
            if mod:
                module = None if mod.group(2) == "None" else mod.group(2)
        obj = _OBJECT.match(line)
        if obj:
            base, kind, first = len(obj.group(1)), obj.group(2), obj.group(3)
            sigs = [first]
            j = i + 1
            while j < len(lines) and lines[j].strip() and _indent(lines[j]) > base and not _OPTION.match(lines[j]):
                if _DIRECTIVE.match(lines[j]):
                    break
                sigs.append(lines[j].strip())
                j += 1
            options = j
            while j < len(lines) and lines[j].strip() and _OPTION.match(lines[j]):
                j += 1
            noindex = any(x.strip() in (":noindex:", ":no-index:") for x in lines[options:j])
            parent = next((o for _, _, o in reversed(stack) if o.kind in ("class", "exception")), None)
            names_args = [_split_signature(s) for s in sigs]
            names = [_qualify(name, parent, module) for name, _ in names_args]
            content_indent = next((_indent(x) for x in lines[j:] if x.strip()), base + 3)
            if content_indent <= base:
                content_indent = base + 3
            section_path = tuple(h for _, h in section)
            signatures = [a for _, a in names_args]
            o = PyObject(kind, names[0], module, signatures, path, section_path, names)
            o.in_class, o.noindex = parent is not None, noindex
            objects.append(o)
            stack.append((base, content_indent, o))
            i = j
            continue
        if stack:
            top_content = stack[-1][1]
            stack[-1][2].lines.append(line[top_content:] if _indent(line) >= top_content else line.strip())
        else:
            prose[-1][1].append(line)
        i += 1
    return _Page(path, title or path, [p for p in prose if any(x.strip() for x in p[1])], objects)


# ---- the corpus -------------------------------------------------------------------------------------------


def find_source_dir(source_dir: str | Path | None = None) -> Path:
    """``source_dir``, else ``$AGENTENV_PYDOCS_SOURCES``, else :data:`DEFAULT_SOURCE_DIR`; it must hold the
    ``library/*.rst.txt`` sources, else :class:`PyDocsMissingError` says how to install them."""
    chosen = Path(source_dir or os.environ.get("AGENTENV_PYDOCS_SOURCES") or DEFAULT_SOURCE_DIR)
    if not (chosen / "library" / "os.rst.txt").is_file():
        raise PyDocsMissingError(
            f"the Python documentation sources are not at {chosen} (no library/os.rst.txt). Install them with:\n"
            f"    {INSTALL_COMMAND}\n(or `make corpus-pydocs`), or pass source_dir= / set $AGENTENV_PYDOCS_SOURCES "
            "to a folder of Sphinx *.rst.txt sources."
        )
    return chosen


def _source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.rst.txt") if p.is_file())


def source_fingerprint(source_dir: str | Path | None = None) -> str:
    """A hash of the parser version and every source file's path and bytes: the cache key."""
    root = find_source_dir(source_dir)
    h = hashlib.sha256(f"pydocs-v{BUILD_VERSION}".encode())
    for file in _source_files(root):
        h.update(file.relative_to(root).as_posix().encode() + b"\0")
        h.update(file.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _parse_all(root: Path) -> list[_Page]:
    pages = []
    for file in _source_files(root):
        rel = file.relative_to(root).as_posix().removesuffix(".rst.txt") + ".html"
        pages.append(parse_page(file.read_text(encoding="utf-8", errors="replace"), rel))
    return pages


def _documents(pages: list[_Page], max_chars: int) -> list[Document]:
    documents: list[Document] = []
    taken: set[str] = set()

    def add(base: str, title: str, chunks: list[str], meta: dict) -> list[str]:
        ids = []
        for k, chunk in enumerate(chunks):
            doc_id, n = base, 1
            while doc_id in taken:
                n += 1
                doc_id = f"{base}-{n}"
            taken.add(doc_id)
            ids.append(doc_id)
            documents.append(Document(doc_id, title, chunk, {**meta, "part": k + 1}))
        return ids

    for page in pages:
        for section, raw in page.prose:
            text = rst_text(raw).text
            anchor = slugify(section[-1]) if section else "top"
            title = " > ".join(section) if section else page.title
            add(f"{page.path}#{anchor}", title, chunk_paragraphs(text, max_chars), {"page": page.path})
        for o in page.objects:
            o.text = rst_text(o.lines)
            signature = o.signature_text()
            body = chunk_paragraphs(o.text.text, max_chars - len(signature) - 2) if o.text.text.strip() else []
            # every part starts with the signature, so each one says what it documents
            o.chunks = [f"{signature}\n\n{b}" for b in body] or [signature]
            title = " > ".join([*o.section, o.name]) if o.section else o.name
            meta = {"page": page.path, "object": o.name, "kind": o.kind}
            anchor = (slugify(o.section[-1]) if o.section else "top") if o.noindex else o.name
            o.doc_ids = add(f"{page.path}#{anchor}", title, o.chunks, meta)
    return documents


def build_pydocs_corpus(source_dir: str | Path | None = None, *, max_chars: int = 1500, cache: bool = True) -> Corpus:
    """The Python documentation as a corpus (cached; see :func:`load_pydocs`)."""
    return load_pydocs(source_dir, max_chars=max_chars, cache=cache).corpus


def pydocs_questions(
    source: Corpus | str | Path | None = None,
    *,
    answer_types: str | Iterable[str] | None = None,
    kinds: str | Iterable[str] | None = None,
    max_chars: int = 1500,
    cache: bool = True,
) -> list[Question]:
    """The questions over :func:`build_pydocs_corpus`, in id order, optionally filtered by answer type or kind.

    ``source`` is a source folder (as for :func:`load_pydocs`) or the corpus that :func:`build_pydocs_corpus`
    returned in this process (its questions are looked up by the corpus's fingerprint).
    """
    if isinstance(source, Corpus):
        built = next((p for p in _LOADED.values() if p.corpus.fingerprint == source.fingerprint), None)
        if built is None:
            raise ValueError(
                "pydocs_questions: this corpus was not built by build_pydocs_corpus/load_pydocs in this process; "
                "pass the source folder instead"
            )
        questions = built.questions
    else:
        questions = load_pydocs(source, max_chars=max_chars, cache=cache).questions
    if answer_types is not None:
        wanted = {answer_types} if isinstance(answer_types, str) else set(answer_types)
        for t in wanted:
            check_choice("answer_types", t, ANSWER_TYPES)
        questions = [q for q in questions if q.answer_type in wanted]
    if kinds is not None:
        wanted = {kinds} if isinstance(kinds, str) else set(kinds)
        for k in wanted:
            check_choice("kinds", k, QUESTION_KINDS)
        questions = [q for q in questions if q.meta["kind"] in wanted]
    return questions


@dataclass
class PyDocs:
    """The corpus, its questions and the fingerprint of the sources they were built from."""

    corpus: Corpus
    questions: list[Question]
    fingerprint: str


def load_pydocs(source_dir: str | Path | None = None, *, max_chars: int = 1500, cache: bool = True) -> PyDocs:
    """Corpus and questions, built once per source fingerprint and ``max_chars`` under ``<cache>/search/``."""
    root = find_source_dir(source_dir)
    fingerprint = source_fingerprint(root)
    if not cache:
        corpus, questions = _build(root, max_chars)
        return PyDocs(corpus, questions, fingerprint)
    if (fingerprint, max_chars) in _LOADED:
        return _LOADED[fingerprint, max_chars]

    def build(staging: Path) -> None:
        corpus, questions = _build(root, max_chars)
        corpus.save_jsonl(staging / "corpus.jsonl")
        save_questions(staging / "questions.jsonl", questions)
        info = {"source": str(root), "fingerprint": fingerprint, "documents": len(corpus), "questions": len(questions)}
        (staging / "agentenv.json").write_text(json.dumps(info, indent=1))

    folder = build_once(cache_root() / "search" / f"pydocs-{fingerprint}-c{max_chars}", build)
    corpus = Corpus.load_jsonl(folder / "corpus.jsonl", name="pydocs")
    loaded = _LOADED[fingerprint, max_chars] = PyDocs(corpus, load_questions(folder / "questions.jsonl"), fingerprint)
    return loaded


#: What :func:`load_pydocs` loaded in this process, by (source fingerprint, max_chars): one read per process.
_LOADED: dict[tuple[str, int], PyDocs] = {}


def _build(root: Path, max_chars: int) -> tuple[Corpus, list[Question]]:
    pages = _parse_all(root)
    corpus = Corpus(_documents(pages, max_chars), "pydocs")
    return corpus, _questions([o for p in pages for o in p.objects])


# ---- questions --------------------------------------------------------------------------------------------

ASK = {
    "module": (
        "Which standard-library module provides the {what} {short}?",
        "In which module of the Python standard library is the {what} {short} defined?",
        "Which module would you import to use the {what} {short}?",
    ),
    "added": (
        "Since which Python version has {name} been available?",
        "In which Python release did {name} first appear?",
        "Which version of Python introduced {name}?",
    ),
    "param_added": (
        "Since which Python version does {name} accept the {param} argument?",
        "In which Python release did {name} gain its {param} parameter?",
    ),
    "pathlike": (
        "Since which Python version does {name} accept path-like objects?",
        "From which Python release on can you pass a path-like object to {name}?",
    ),
    "deprecated": (
        "Since which Python version has {name} been deprecated?",
        "In which Python release was {name} deprecated?",
    ),
    "raises": (
        "Which exception does the documentation entry of {name} say it raises?",
        "According to its own documentation entry, what exception can {name} raise?",
    ),
    "raises_list": (
        "Which exceptions does the documentation entry of {name} say it raises?",
        "List the exceptions that the documentation entry of {name} says it can raise.",
    ),
    "default": (
        "What is the default value of the {param} parameter of {name}?",
        "If you call {name} without passing {param}, what value does {param} take?",
    ),
    "open": (
        "Summarise what the documentation says about {name}: {facts}.",
        "Describe {name} from its documentation, covering {facts}.",
    ),
}
_OPEN_PARTS = {
    "added": "when it was added",
    "param_added": "when its {param} parameter was added",
    "pathlike": "since when it accepts path-like objects",
    "deprecated": "since when it is deprecated",
    "raises": "which exceptions it raises",
    "default": "the default of {param}",
}
#: Words for defaults that are all punctuation (SQuAD normalisation would leave nothing of "''" or "()").
_EMPTY_VALUES = {
    "''": ("empty string", '""'),
    '""': ("empty string", "''"),
    "b''": ("empty bytes", 'b""'),
    'b""': ("empty bytes", "b''"),
    "()": ("empty tuple",),
    "[]": ("empty list",),
    "{}": ("empty dict", "empty dictionary"),
}
_ADDED_PARAM = re.compile(r"\b(?:parameters?|arguments?)\b", re.I)
_ADDED_WORD = re.compile(r"\b(?:added|new)\b", re.I)


def _params(args: str | None) -> dict[str, str | None]:
    """Parameter name -> default (None without one) of an argument list; optional brackets are dropped."""
    if args is None:
        return {}
    parts, depth, quote, current = [], 0, "", ""
    for ch in args:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth <= 0:
            parts.append(current)
            current = ""
            depth = max(depth, 0)
        else:
            current += ch
    parts.append(current)
    params: dict[str, str | None] = {}
    for part in parts:
        part = _balance(part)
        if "=" in part:
            name, default = (x.strip() for x in part.split("=", 1))
        else:
            name, default = part, None
        name = name.lstrip("*")
        if re.fullmatch(r"[A-Za-z_]\w*", name) and name not in params:
            params[name] = default
    return params


def _balance(part: str) -> str:
    """``part`` without the optional-argument brackets that belong to the signature ("[, step]"), not to it."""
    part = part.strip()
    while part.startswith("[") and part.count("[") > part.count("]"):
        part = part[1:].strip()
    while part.endswith("]") and part.count("]") > part.count("["):
        part = part[:-1].strip()
    return part


def _chunk_with(o: PyObject, needle: str) -> str | None:
    for doc_id, chunk in zip(o.doc_ids, o.chunks, strict=True):
        if needle in chunk:
            return doc_id
    return None


def _pick(key: str, n: int) -> int:
    """A template index fixed by the question id (stable across runs, spread over the templates)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % n


def _question(kind: str, o: PyObject, answer: str, aliases: Iterable[str], answer_type: str, gold: str, **extra):
    key = "-".join([kind, o.name, *(str(v) for v in extra.values() if isinstance(v, str))])
    qid = f"pydocs-{key}"
    templates = ASK["raises_list" if kind == "raises" and answer_type == "list" else kind]
    fields = {"name": o.name, "short": o.short, "what": _KIND_WORDS.get(o.kind, o.kind), **extra}
    return {
        "id": qid,
        "text": templates[_pick(qid, len(templates))].format(**fields),
        "answer": answer,
        "aliases": tuple(a for a in dict.fromkeys(aliases) if a and a != answer),
        "answer_type": answer_type,
        "gold": gold,
        "kind": kind,
        "object": o.name,
        **extra,
    }


def _nugget(fact: dict) -> str:
    name, kind = fact["object"], fact["kind"]
    return {
        "module": f"{name} is provided by the {fact['answer']} module",
        "added": f"{name} was added in Python {fact['answer']}",
        "param_added": f"The {fact.get('param')} parameter of {name} was added in Python {fact['answer']}",
        "pathlike": f"{name} accepts path-like objects since Python {fact['answer']}",
        "deprecated": f"{name} is deprecated since Python {fact['answer']}",
        "raises": f"{name} can raise {fact['answer']}",
        "default": f"The {fact.get('param')} parameter of {name} defaults to {fact['answer']}",
    }[kind]


def _object_facts(o: PyObject, unique_short: bool) -> list[dict]:
    facts: list[dict] = []
    text = o.text or _Text()
    # module: only for a module-level object whose short name nothing else in the docs shares
    if o.module and not o.in_class and unique_short and o.kind in _KIND_WORDS and len(o.signatures) == 1:
        facts.append(_question("module", o, o.module, (f"{o.module} module",), "entity", o.doc_ids[0]))
    plain_added = [v for d, v, body in text.versions if d == "versionadded" and not body]
    if len(plain_added) == 1 and len([d for d, *_ in text.versions if d == "versionadded"]) == 1:
        v = plain_added[0]
        gold = _chunk_with(o, f"New in version {v}.")
        if gold:
            facts.append(_question("added", o, v, (f"Python {v}",), "date", gold))
    params = {}
    for args in o.signatures:
        for p, d in _params(args).items():
            params.setdefault(p, set()).add(d)
    added_params: dict[str, list[str]] = {}
    for d, v, body in text.versions:
        short = d in ("versionadded", "versionchanged") and len(body) < 200 and _ADDED_PARAM.search(body)
        if short and (d == "versionadded" or _ADDED_WORD.search(body)):
            for p in dict.fromkeys(re.findall(r"\*(\w+)\*|\b(\w+)\b(?= (?:parameter|argument))", body)):
                name = p[0] or p[1]
                if name in params:
                    added_params.setdefault(name, []).append(v)
    for p, versions in added_params.items():
        raw_bodies = [b for d, v, b in text.versions if v == versions[0]]
        if len(versions) == 1 and raw_bodies:
            gold = _chunk_with(o, versions[0])
            if gold:
                facts.append(
                    _question("param_added", o, versions[0], (f"Python {versions[0]}",), "date", gold, param=p)
                )
    pathlike = [v for d, v, body in text.versions if d == "versionchanged" and re.search(r"path-like object", body)]
    if len(pathlike) == 1:
        gold = _chunk_with(o, f"Changed in version {pathlike[0]}")
        if gold:
            facts.append(_question("pathlike", o, pathlike[0], (f"Python {pathlike[0]}",), "date", gold))
    # a deprecation of one parameter is not the object's
    deprecated = [
        v
        for d, v, body in text.versions
        if d in ("deprecated", "deprecated-removed")
        and not re.search(r"\b(?:parameters?|arguments?)\b", body)
        and not any(re.search(rf"\b{re.escape(p)}\b", body) for p in params)
    ]
    if len(deprecated) == 1:
        gold = _chunk_with(o, f"Deprecated since version {deprecated[0]}")
        if gold:
            facts.append(_question("deprecated", o, deprecated[0], (f"Python {deprecated[0]}",), "date", gold))
    # an exception's entry names its base classes in "raised when" sentences: not what it raises
    shown = list(dict.fromkeys(s for s, _ in text.raises)) if o.kind != "exception" else []
    if 1 <= len(shown) <= 3:
        golds = [_chunk_with(o, s) for s in shown]
        if all(golds):
            targets = dict(text.raises)
            if len(shown) == 1:
                aliases = (targets[shown[0]], targets[shown[0]].rsplit(".", 1)[-1])
                facts.append(_question("raises", o, shown[0], aliases, "entity", golds[0]))
            else:
                ordered = sorted(shown)
                q = _question("raises", o, ", ".join(ordered), (" and ".join(ordered),), "list", golds[0])
                q["gold_all"] = tuple(dict.fromkeys(golds))
                q["members"] = ordered
                facts.append(q)
    for p, defaults in params.items():
        if len(defaults) != 1:
            continue
        (default,) = defaults
        # None is the default of about half the parameters: a guess, not a search, would answer it
        if not default or default == "None" or len(default) > 40 or "..." in default:
            continue
        unquoted = default[1:-1] if len(default) >= 2 and default[0] == default[-1] and default[0] in "'\"" else ""
        aliases = (unquoted, *_EMPTY_VALUES.get(default, ()))
        answer_type = "number" if re.fullmatch(r"-?\d+(\.\d+)?", default) else "entity"
        facts.append(_question("default", o, default, aliases, answer_type, o.doc_ids[0], param=p))
    return facts


def _questions(objects: list[PyObject]) -> list[Question]:
    objects = [o for o in objects if not o.noindex]
    name_counts = Counter(n for o in objects for n in (o.names or [o.name]))
    short_counts = Counter(n.rsplit(".", 1)[-1] for n in name_counts.elements())
    questions: list[Question] = []
    for o in objects:
        if name_counts[o.name] > 1 or not o.doc_ids:
            continue  # documented twice: "the" documentation of it is ambiguous
        facts = _object_facts(o, short_counts[o.short] == 1)
        for f in facts:
            gold = f.get("gold_all", (f["gold"],))
            nuggets = tuple(f.get("members", (f["answer"],)))
            meta = {k: v for k, v in f.items() if k in ("kind", "object", "param")}
            meta["steps"] = [{"hop": 1, "search": o.name, "doc": g} for g in gold]
            meta["facts"] = [_nugget(f)]
            questions.append(
                Question(f["id"], f["text"], f["answer"], f["aliases"], f["answer_type"], nuggets, gold, 1, meta)
            )
        # open: two to four facts, at most one of them a default (the module is in the name: not a fact to ask)
        others = [f for f in facts if f["kind"] not in ("module", "default")]
        parts = others[:3] + [f for f in facts if f["kind"] == "default"][:1]
        if others and len(parts) >= 2:
            asked = [_OPEN_PARTS[f["kind"]].format(param=f.get("param", "")) for f in parts]
            listed = ", ".join(asked[:-1]) + " and " + asked[-1]
            qid = f"pydocs-open-{o.name}"
            text = ASK["open"][_pick(qid, len(ASK["open"]))].format(name=o.name, facts=listed)
            gold = tuple(dict.fromkeys(g for f in parts for g in f.get("gold_all", (f["gold"],))))
            nuggets = tuple(_nugget(f) for f in parts)
            meta = {
                "kind": "open",
                "object": o.name,
                "open_facts": [f["kind"] for f in parts],
                "nugget_values": [[f["answer"], *f["aliases"]] for f in parts],
                "steps": [{"hop": 1, "search": o.name, "doc": g} for g in gold],
                "facts": list(nuggets),
            }
            questions.append(Question(qid, text, "", (), "open", nuggets, gold, 1, meta))
    questions.sort(key=lambda q: q.id)
    seen: set[str] = set()
    unique = []
    for q in questions:
        if q.id not in seen:
            seen.add(q.id)
            unique.append(q)
    return unique

"""Corpora for the search envs: documents with stable ids, saved as JSONL, fingerprinted for index caches."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Document:
    """One retrievable passage. ``id`` is stable across rebuilds of the same corpus."""

    id: str
    title: str
    text: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "meta": dict(self.meta)}


class Corpus:
    """An ordered collection of :class:`Document` s, addressable by id."""

    def __init__(self, documents: Iterable[Document], name: str = "corpus"):
        self.name = name
        self.documents = list(documents)
        self._by_id = {d.id: i for i, d in enumerate(self.documents)}
        if len(self._by_id) != len(self.documents):
            seen: set[str] = set()
            dup = next(d.id for d in self.documents if d.id in seen or seen.add(d.id))
            raise ValueError(f"corpus {name!r}: duplicate document id {dup!r}")
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._by_id

    def __getitem__(self, doc_id: str) -> Document:
        try:
            return self.documents[self._by_id[doc_id]]
        except KeyError:
            raise KeyError(f"no document {doc_id!r} in corpus {self.name!r}") from None

    def get(self, doc_id: str) -> Document | None:
        index = self._by_id.get(doc_id)
        return None if index is None else self.documents[index]

    def index_of(self, doc_id: str) -> int:
        return self._by_id[doc_id]

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.documents]

    @property
    def fingerprint(self) -> str:
        """A hash of every id, title and text: index caches are keyed by it."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for d in self.documents:
                for part in (d.id, d.title, d.text):
                    h.update(part.encode("utf-8"))
                    h.update(b"\0")
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def save_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for d in self.documents:
                f.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load_jsonl(cls, path: str | Path, name: str | None = None) -> Corpus:
        path = Path(path)
        docs = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    docs.append(
                        Document(str(raw["id"]), str(raw.get("title", "")), str(raw["text"]), raw.get("meta") or {})
                    )
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{n}: not a document record ({e})") from e
        return cls(docs, name or path.stem)


# ---- folders of text: section-titled passages ---------------------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")


def slugify(text: str) -> str:
    """A lowercase anchor for ``text`` ("Files and Directories" -> "files-and-directories")."""
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "section"


def chunk_paragraphs(text: str, max_chars: int = 1500) -> list[str]:
    """Blank-line separated paragraphs packed into chunks of at most ``max_chars`` (a longer paragraph is cut at
    sentence ends, else at spaces, else hard). Chunks are stripped; empty text gives no chunk."""
    if max_chars < 50:
        raise ValueError(f"max_chars={max_chars} is too small; allowed: >= 50")
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip("\n").rstrip()
        if not paragraph.strip():
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        current = ""
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > max_chars // 2 else max_chars
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(sentence[:cut].rstrip())
                sentence = sentence[cut:].lstrip()
            if current and len(current) + 1 + len(sentence) > max_chars:
                pieces.append(current)
                current = ""
            current = f"{current} {sentence}" if current else sentence
        if current:
            pieces.append(current)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return [c.strip("\n") for c in chunks if c.strip()]


def split_sections(text: str, fmt: str) -> list[tuple[tuple[str, ...], str]]:
    """``text`` cut at its headings: ``[(heading path, body)]`` in order (text before the first heading has the
    empty path). ``fmt``: ``"md"`` (ATX ``#`` headings, not inside code fences), ``"rst"`` (underlined or over- and
    underlined titles; levels in order of first use, as docutils does) or ``"txt"`` (no headings)."""
    if fmt not in ("md", "rst", "txt"):
        raise ValueError(f"fmt={fmt!r}; allowed: 'md', 'rst', 'txt'")
    lines = text.splitlines()
    sections: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    styles: list[tuple[str, bool]] = []

    def flush() -> None:
        content = "\n".join(body).strip("\n")
        if content.strip():
            sections.append((tuple(title for _, title in path), content))
        body.clear()

    def heading(level: int, title: str) -> None:
        flush()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))

    i, fenced = 0, False
    while i < len(lines):
        line = lines[i]
        if fmt == "md":
            if _MD_FENCE.match(line):
                fenced = not fenced
            match = None if fenced else _MD_HEADING.match(line)
            if match:
                heading(len(match.group(1)), match.group(2).strip())
                i += 1
                continue
        elif fmt == "rst":
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            over = _RST_ADORNMENT.match(line)
            if over and i + 2 < len(lines) and lines[i + 1].strip() and _RST_ADORNMENT.match(lines[i + 2]):
                style = (over.group(1), True)
                title, skip = lines[i + 1].strip(), 3
            elif line.strip() and not line[0].isspace() and not over and _RST_ADORNMENT.match(nxt):
                if len(nxt.rstrip()) < len(line.rstrip()):
                    body.append(line)
                    i += 1
                    continue
                style = (nxt[0], False)
                title, skip = line.strip(), 2
            else:
                style = None
            if style is not None:
                if style not in styles:
                    styles.append(style)
                heading(styles.index(style), title)
                i += skip
                continue
        body.append(line)
        i += 1
    flush()
    return sections


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".md", ".markdown")):
        return "md"
    if name.endswith((".rst", ".rst.txt")):
        return "rst"
    return "txt"


def folder_corpus(
    path: str | Path,
    patterns: Iterable[str] = ("*.md", "*.rst", "*.txt"),
    max_chars: int = 1500,
    name: str | None = None,
) -> Corpus:
    """A corpus of the text, Markdown and reST files under ``path`` (recursive), one document per passage.

    Each file is cut at its headings (:func:`split_sections`) and each section packed into passages of at most
    ``max_chars`` (:func:`chunk_paragraphs`). Ids are stable for unchanged files: ``<relative path>#<section slug>``,
    ``-2``, ``-3``... for a section's further passages (and for repeated headings); titles are the heading path
    joined by " > " (or the file's relative path). Hidden files and folders (``.git``, ``.venv``) are skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"folder_corpus: {root} is not a folder")
    patterns = tuple(patterns)
    files = sorted(
        p
        for p in {p for pattern in patterns for p in root.rglob(pattern)}
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    documents: list[Document] = []
    taken: set[str] = set()
    for file in files:
        rel = file.relative_to(root).as_posix()
        text = file.read_text(encoding="utf-8", errors="replace")
        for headings, body in split_sections(text, _format_of(file)):
            base = f"{rel}#{slugify(headings[-1]) if headings else 'top'}"
            for chunk in chunk_paragraphs(body, max_chars):
                doc_id, n = base, 1
                while doc_id in taken:
                    n += 1
                    doc_id = f"{base}-{n}"
                taken.add(doc_id)
                title = " > ".join(headings) if headings else rel
                documents.append(Document(doc_id, title, chunk, {"path": rel}))
    if not documents:
        raise ValueError(f"folder_corpus: no text in files matching {list(patterns)} under {root}")
    return Corpus(documents, name or root.name)

"""AST mutation operators: where a module can take a one-spot bug, and the minimal textual edit that injects it.

:func:`mutation_sites` walks a module's AST and lists every site of every operator, in source order, each as a
:class:`Mutation`: a span of the source (from the nodes' ``lineno``/``col_offset``/``end_*`` positions, operator
tokens located with :mod:`tokenize`) and its replacement text. :func:`apply_mutation` splices that one span, so
the rest of the file keeps its formatting and the diff between original and mutant is a line or two.

==================  ==========================================================================================
operator            edit
==================  ==========================================================================================
compare_flip        ``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``is``↔``is not``, ``in``↔``not in``
off_by_one          an integer constant ``k`` → ``k + 1`` and ``k - 1``; a non-constant slice bound or
                    ``range`` stop ``e`` → ``e + 1`` and ``e - 1``
bool_op_swap        ``and``↔``or``
drop_statement      a call, assignment (of names already bound), augmented assignment, ``raise`` or ``yield``
                    statement in a function body → ``pass``
wrong_return        ``return True``↔``return False``; a returned comparison/boolean → its negation;
                    any other returned expression → ``None``
swap_args           two adjacent positional arguments of a call exchanged
negate_condition    the test of ``if``/``elif``/``while``/conditional expression ``c`` → ``not c`` (``not c`` → ``c``)
arith_swap          ``+``↔``-`` (also ``+=``↔``-=``), ``/``↔``//``
==================  ==========================================================================================

Never mutated: docstrings and other bare strings, ``__repr__`` bodies, logging/``warnings``/``print`` calls,
type annotations, ``if __name__ == "__main__"`` and ``if TYPE_CHECKING`` blocks, Python-version checks. Code
that no test covers is filtered by the builder from coverage data (each site carries the lines to look up).
"""

from __future__ import annotations

import ast
import bisect
import io
import itertools
import threading
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass

OPERATORS = (
    "compare_flip",
    "off_by_one",
    "bool_op_swap",
    "drop_statement",
    "wrong_return",
    "swap_args",
    "negate_condition",
    "arith_swap",
)

_COMPARE_FLIP = {
    ast.Lt: "<=",
    ast.LtE: "<",
    ast.Gt: ">=",
    ast.GtE: ">",
    ast.Eq: "!=",
    ast.NotEq: "==",
    ast.Is: "is not",
    ast.IsNot: "is",
    ast.In: "not in",
    ast.NotIn: "in",
}
_ARITH_SWAP = {ast.Add: "-", ast.Sub: "+", ast.Div: "//", ast.FloorDiv: "/"}
_BOOL_SWAP = {ast.And: "or", ast.Or: "and"}
#: Calls whose arguments are not swapped: the swap only makes a TypeError, never a behaviour bug.
_NO_SWAP_CALLS = frozenset(
    {"isinstance", "issubclass", "getattr", "setattr", "hasattr", "delattr", "super", "print", "format", "type"}
)
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
_ATOMIC = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


class MutationError(ValueError):
    """A mutation that does not fit the source it is applied to, or whose result does not parse."""


@dataclass(frozen=True)
class Mutation:
    """One site: replace ``original`` (source lines ``line``..``end_line``, character columns) by ``replacement``.

    ``lines`` are the source lines whose coverage tells which tests execute the site: the enclosing statement's
    first line and the lines of the mutated node. ``function`` is the enclosing function's qualified name.
    """

    operator: str
    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    original: str
    replacement: str
    lines: tuple[int, ...]
    function: str = ""

    def describe(self) -> str:
        return f"{self.operator} at {self.file}:{self.line}: {self.original!r} -> {self.replacement!r}"


class _Source:
    """Offsets in a source text: AST byte columns → character offsets, and the positioned tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.tokens: list[tuple[int, int, int, str]] = []  # (start, end, type, string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                continue
            self.tokens.append((self.offset(*token.start), self.offset(*token.end), token.type, token.string))
        self.token_starts = [t[0] for t in self.tokens]

    def offset(self, line: int, char_col: int) -> int:
        return self.starts[line - 1] + char_col

    def char_col(self, line: int, byte_col: int) -> int:
        return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, self.char_col(node.lineno, node.col_offset))

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, self.char_col(node.end_lineno, node.end_col_offset))

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def position(self, offset: int) -> tuple[int, int]:
        """(1-based line, character column) of an offset."""
        low, high = 0, len(self.starts) - 1
        while low < high:  # the last line start <= offset
            mid = (low + high + 1) // 2
            if self.starts[mid] <= offset:
                low = mid
            else:
                high = mid - 1
        return low + 1, offset - self.starts[low]

    def operator_span(self, after: int, before: int) -> tuple[int, int] | None:
        """The span of the operator tokens between two operands (parentheses around operands skipped)."""
        inside = []
        for token in self.tokens[bisect.bisect_left(self.token_starts, after) :]:
            if token[1] > before:
                break
            if token[3] not in ("(", ")"):
                inside.append(token)
        if not inside:
            return None
        return inside[0][0], inside[-1][1]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _is_logging_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    parts = _dotted(node.func).split(".")
    if parts[0] in ("print", "warnings", "warn"):
        return True
    if any(p.lstrip("_").lower().startswith(("log", "logger")) for p in parts[:-1]):
        return True
    return len(parts) > 1 and parts[-1] in _LOG_METHODS and "log" in ".".join(parts[:-1]).lower()


def _is_skipped_test(test: ast.AST) -> bool:
    """``__name__ == "__main__"``, ``TYPE_CHECKING``, version and platform checks: not behaviour."""
    text = ast.dump(test)
    return any(word in text for word in ("__main__", "TYPE_CHECKING", "version_info", "'platform'", "PY3", "PY2"))


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _negated(source: _Source, node: ast.expr) -> str:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return source.segment(node.operand)
    text = source.segment(node)
    return f"not {text}" if isinstance(node, _ATOMIC) else f"not ({text})"


def _shifted(source: _Source, node: ast.expr, delta: int) -> str:
    text = source.segment(node)
    if not isinstance(node, _ATOMIC):
        text = f"({text})"
    return f"{text} + 1" if delta > 0 else f"{text} - 1"


class _Finder:
    def __init__(self, source: _Source, file: str, operators: frozenset[str]) -> None:
        self.source = source
        self.file = file
        self.operators = operators
        self.sites: list[Mutation] = []
        self.function: list[str] = []  # qualified-name parts of the enclosing scopes
        self.in_function = 0
        self.bound: list[dict[str, int]] = []  # per function: name -> first line where it is bound

    # ---- recording ----------------------------------------------------------------------------------------

    def add(self, operator: str, start: int, end: int, replacement: str, statement: ast.stmt, node: ast.AST):
        if operator not in self.operators:
            return
        original = self.source.text[start:end]
        if original == replacement or not original:
            return
        line, col = self.source.position(start)
        end_line, end_col = self.source.position(end)
        lines = tuple(sorted({statement.lineno, *range(node.lineno, (node.end_lineno or node.lineno) + 1)}))
        qualname = ".".join(self.function)
        self.sites.append(
            Mutation(operator, self.file, line, col, end_line, end_col, original, replacement, lines, qualname)
        )

    def add_node(self, operator: str, node: ast.AST, replacement: str, statement: ast.stmt) -> None:
        self.add(operator, self.source.start(node), self.source.end(node), replacement, statement, node)

    # ---- traversal ----------------------------------------------------------------------------------------

    def body(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == "__repr__":
                return
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if default is not None:
                    self.expression(default, node)
            args = node.args
            names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a]
            bound = {name: node.lineno for name in names}
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    bound.setdefault(inner.id, inner.lineno)
                    bound[inner.id] = min(bound[inner.id], inner.lineno)
            self.function.append(node.name)
            self.in_function += 1
            self.bound.append(bound)
            self.body([s for s in node.body if not _is_docstring(s)])
            self.bound.pop()
            self.in_function -= 1
            self.function.pop()
            return
        if isinstance(node, ast.ClassDef):
            self.function.append(node.name)
            self.body([s for s in node.body if not _is_docstring(s)])
            self.function.pop()
            return
        if isinstance(node, ast.If | ast.While):
            if _is_skipped_test(node.test):
                if isinstance(node, ast.If):
                    self.body(node.orelse)
                return
            if not (isinstance(node.test, ast.Constant)):
                self.add_node("negate_condition", node.test, _negated(self.source, node.test), node)
            self.expression(node.test, node)
            self.body(node.body)
            self.body(node.orelse)
            return
        if isinstance(node, ast.Expr) and (_is_docstring(node) or _is_logging_call(node.value)):
            return
        if isinstance(node, ast.Assert):
            return
        if self.in_function and self._droppable(node):
            self.add_node("drop_statement", node, "pass", node)
        if isinstance(node, ast.Return) and node.value is not None:
            self._wrong_return(node)
        if isinstance(node, ast.AugAssign) and type(node.op) in _ARITH_SWAP and type(node.op) in (ast.Add, ast.Sub):
            span = self.source.operator_span(self.source.end(node.target), self.source.start(node.value))
            if span:
                self.add("arith_swap", *span, _ARITH_SWAP[type(node.op)] + "=", node, node)
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "type_comment", "decorator_list"):
                continue
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, ast.stmt):
                    self.statement(item)
                elif isinstance(item, ast.expr):
                    self.expression(item, node)
                elif isinstance(item, ast.excepthandler | ast.match_case | ast.withitem | ast.comprehension):
                    self._generic(item, node)

    def _generic(self, node: ast.AST, statement: ast.stmt) -> None:
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "type"):
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, ast.stmt):
                    self.statement(item)
                elif isinstance(item, ast.expr):
                    self.expression(item, statement)
                elif isinstance(item, ast.AST):
                    self._generic(item, statement)

    def _droppable(self, node: ast.stmt) -> bool:
        if isinstance(node, ast.Expr):
            return isinstance(node.value, ast.Call | ast.Yield | ast.YieldFrom | ast.Await)
        if isinstance(node, ast.AugAssign | ast.Raise):
            return True
        if isinstance(node, ast.Assign):
            bound = self.bound[-1] if self.bound else {}
            for target in node.targets:
                for name in ast.walk(target):
                    if not (isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store)):
                        continue
                    if bound.get(name.id, node.lineno) >= node.lineno:
                        return False  # dropping the first binding of a name only makes a NameError
            return True
        return False

    def _wrong_return(self, node: ast.Return) -> None:
        value = node.value
        if isinstance(value, ast.Constant):
            if value.value is True or value.value is False:
                self.add_node("wrong_return", value, str(not value.value), node)
            elif value.value is not None:
                self.add_node("wrong_return", value, "None", node)
            return
        if isinstance(value, ast.Compare | ast.BoolOp) or (
            isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)
        ):
            self.add_node("wrong_return", value, _negated(self.source, value), node)
        else:
            self.add_node("wrong_return", value, "None", node)

    def expression(self, node: ast.expr, statement: ast.stmt) -> None:
        source = self.source
        if isinstance(node, ast.Lambda):
            self.expression(node.body, statement)
            return
        if isinstance(node, ast.Constant):
            if type(node.value) is int:
                self.add_node("off_by_one", node, str(node.value + 1), statement)
                self.add_node("off_by_one", node, str(node.value - 1), statement)
            return
        if isinstance(node, ast.JoinedStr):
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    self.expression(value.value, statement)
            return
        if isinstance(node, ast.Compare):
            if _is_skipped_test(node):
                return
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                span = source.operator_span(source.end(operands[i]), source.start(operands[i + 1]))
                if span:
                    self.add("compare_flip", *span, _COMPARE_FLIP[type(op)], statement, node)
        elif isinstance(node, ast.BoolOp):
            for left, right in itertools.pairwise(node.values):
                span = source.operator_span(source.end(left), source.start(right))
                if span:
                    self.add("bool_op_swap", *span, _BOOL_SWAP[type(node.op)], statement, node)
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH_SWAP:
            if not any(_is_text(side) for side in (node.left, node.right)):
                span = source.operator_span(source.end(node.left), source.start(node.right))
                if span:
                    self.add("arith_swap", *span, _ARITH_SWAP[type(node.op)], statement, node)
        elif isinstance(node, ast.IfExp):
            if not isinstance(node.test, ast.Constant):
                self.add_node("negate_condition", node.test, _negated(source, node.test), statement)
        elif isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper):
                if bound is not None and not isinstance(bound, ast.Constant | ast.UnaryOp):
                    self.add_node("off_by_one", bound, _shifted(source, bound, +1), statement)
                    self.add_node("off_by_one", bound, _shifted(source, bound, -1), statement)
        elif isinstance(node, ast.Call):
            if _is_logging_call(node):
                return
            name = _dotted(node.func)
            positional = node.args
            if name == "range" and positional and not any(isinstance(a, ast.Starred) for a in positional):
                stop = positional[0] if len(positional) == 1 else positional[1]
                if not isinstance(stop, ast.Constant | ast.UnaryOp):
                    self.add_node("off_by_one", stop, _shifted(source, stop, +1), statement)
                    self.add_node("off_by_one", stop, _shifted(source, stop, -1), statement)
            if name.split(".")[-1] not in _NO_SWAP_CALLS:
                for left, right in itertools.pairwise(positional):
                    if isinstance(left, ast.Starred) or isinstance(right, ast.Starred):
                        continue
                    first, second = source.segment(left), source.segment(right)
                    if first == second:
                        continue
                    between = source.text[source.end(left) : source.start(right)]
                    start, end = source.start(left), source.end(right)
                    self.add("swap_args", start, end, second + between + first, statement, node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child, statement)
            elif isinstance(child, ast.keyword):
                self.expression(child.value, statement)
            elif isinstance(child, ast.comprehension):
                self._generic(child, statement)
            elif isinstance(child, ast.arguments):
                for default in [*child.defaults, *child.kw_defaults]:
                    if default is not None:
                        self.expression(default, statement)


def _is_text(node: ast.expr) -> bool:
    """A string or sequence display: ``+`` there is concatenation, and ``-`` only a TypeError."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    return isinstance(node, ast.JoinedStr | ast.List | ast.Tuple | ast.ListComp)


def mutation_sites(source: str, file: str = "<module>", operators: Iterable[str] | None = None) -> list[Mutation]:
    """Every mutation site of ``source`` (a module's text), sorted by position then operator and replacement.

    ``file`` (the module's path relative to the tree root) is recorded in each :class:`Mutation`. Sources with
    a lone carriage return (old Mac line ends) have no sites: their line numbers are ambiguous.
    """
    chosen = frozenset(OPERATORS if operators is None else operators)
    unknown = chosen - set(OPERATORS)
    if unknown:
        raise ValueError(f"operators={sorted(unknown)} are unknown; choose from {list(OPERATORS)}")
    if "\r" in source.replace("\r\n", ""):
        return []
    tree = parse(source)
    finder = _Finder(_Source(source), file, chosen)
    finder.body([s for s in tree.body if not _is_docstring(s)])
    unique = {(m.line, m.col, m.end_line, m.end_col, m.operator, m.replacement): m for m in finder.sites}
    return [unique[key] for key in sorted(unique)]


#: CPython 3.11's parser keeps its recursion depth in shared state, so parses in two threads at once can fail with
#: "SystemError: AST constructor recursion depth mismatch" (the task builder evaluates mutants in threads).
_PARSE_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse(source)``, one thread at a time (see :data:`_PARSE_LOCK`)."""
    with _PARSE_LOCK:
        return ast.parse(source)


def apply_mutation(source: str, mutation: Mutation) -> str:
    """``source`` with the mutation's span replaced; raises :class:`MutationError` if it does not fit or parse."""
    lines = source.split("\n")
    if mutation.end_line > len(lines):
        raise MutationError(f"{mutation.describe()}: the source has only {len(lines)} lines")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    start = starts[mutation.line - 1] + mutation.col
    end = starts[mutation.end_line - 1] + mutation.end_col
    if source[start:end] != mutation.original:
        raise MutationError(f"{mutation.describe()}: the source there reads {source[start:end]!r}")
    mutant = source[:start] + mutation.replacement + source[end:]
    try:
        parse(mutant)
    except SyntaxError as e:
        raise MutationError(f"{mutation.describe()}: the mutant does not parse ({e.msg})") from None
    return mutant

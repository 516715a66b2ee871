"""The rewrite of each parsed template that routes what it does through the sandbox's guard filters.

Contract: ``InsertGuards`` wraps every ``for`` iterable (``ITER_GUARD``), printed value (``EMIT_GUARD``,
with the length of the literal text around it), ``~`` operand (``DATA_GUARD``) and result (``VALUE_GUARD``),
list/dict/tuple literal (``VALUE_GUARD``) and output of literal text alone (``TEXT_GUARD``); it refuses
private namespace attributes (``SecurityError``). The environment defines the filters under these names.
"""

from __future__ import annotations

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.visitor import NodeTransformer

# Names of the guard filters the AST rewrite inserts (not meant for template authors, harmless if used).
ITER_GUARD = "__guard_iter"
EMIT_GUARD = "__guard_emit"
VALUE_GUARD = "__guard_value"
DATA_GUARD = "__guard_data"
TEXT_GUARD = "__guard_text"


class InsertGuards(NodeTransformer):
    """Wraps loop iterables, printed values, ``~`` concatenations and literals in guard filters."""

    @staticmethod
    def _wrap(node: nodes.Node, guard: str, *extra: int) -> nodes.Filter:
        args: list[nodes.Expr] = [nodes.Const(value, lineno=node.lineno) for value in extra]
        return nodes.Filter(node, guard, args, [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, ITER_GUARD)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        # Literal text is counted like printed values (a loop repeats it, a macro or set block buffers it).
        # Its length is known now, so it is added to the count of the next printed value in the same
        # output (the last one takes the literal text after it): the literal itself stays a constant that
        # Jinja writes as is, and no guard call is spent on it.
        expressions = [child for child in node.nodes if not isinstance(child, nodes.TemplateData)]
        if not expressions:
            text = "".join(child.data for child in node.nodes if isinstance(child, nodes.TemplateData))
            literal = nodes.MarkSafeIfAutoescape(nodes.Const(text), lineno=node.lineno)
            node.nodes = [self._wrap(literal, TEXT_GUARD)]
            return node
        wrapped: list[nodes.Expr] = []
        pending = 0
        last = 0
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                pending += len(child.data)
                wrapped.append(child)
            else:
                last = len(wrapped)
                wrapped.append(self._wrap(child, EMIT_GUARD, pending))
                pending = 0
        if pending:
            guard = wrapped[last]
            assert isinstance(guard, nodes.Filter) and isinstance(guard.args[0], nodes.Const)
            guard.args[0].value += pending
        node.nodes = wrapped
        return node

    def _value(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return self._wrap(node, VALUE_GUARD)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        # Each operand of ~ is turned into text: it must be data, like a printed value.
        node.nodes = [self._wrap(operand, DATA_GUARD) for operand in node.nodes]
        return self._wrap(node, VALUE_GUARD)

    def visit_NSRef(self, node: nodes.NSRef) -> nodes.Node:
        if node.attr.startswith("_"):
            # {% set ns._x = ... %}: namespaces hold data under plain names; private names are refused
            # like private attributes.
            raise SecurityError(f"line {node.lineno}: namespace attribute {node.attr!r} is private")
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._value(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._value(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":  # assignment targets ({% for a, b in ... %}) stay as they are
            self.generic_visit(node)
            return node
        return self._value(node)

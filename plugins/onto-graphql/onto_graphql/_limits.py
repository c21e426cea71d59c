"""What one GraphQL document may ask: its size in bytes and tokens, its depth, its aliases.

The size and token limits apply while parsing (``query_parser``), so an oversized
document is refused before it is validated; depth and aliases are validation rules,
refused with every other validation error. Each refusal is a GraphQL error saying which
limit it hit and what the limit is.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    parse,
)

__all__ = ["aliases_rule", "depth_rule", "query_parser"]


def query_parser(max_bytes: int, max_tokens: int) -> Any:
    """An ariadne ``query_parser`` refusing queries over ``max_bytes`` or ``max_tokens``."""

    def parse_query(context: Any, data: dict[str, Any]) -> DocumentNode:
        query = data["query"]
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise GraphQLError(
                f"the query is {size} bytes long; this server accepts at most {max_bytes} "
                "(the max_query_bytes setting)",
                extensions={"code": "QUERY_TOO_LARGE"},
            )
        return parse(query, no_location=False, max_tokens=max_tokens)

    return parse_query


def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    """A validation rule refusing operations nested deeper than ``max_depth`` selections."""

    class MaxDepth(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            fragments = {
                d.name.value: d
                for d in self.context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            depth = _depth(node.selection_set, fragments, set(), 0, max_depth)
            if depth > max_depth:
                name = f"operation {node.name.value!r}" if node.name else "the operation"
                self.report_error(
                    GraphQLError(
                        f"{name} is nested more than {max_depth} levels deep (the max_depth "
                        "setting); ask for fewer levels",
                        node,
                        extensions={"code": "QUERY_TOO_DEEP"},
                    )
                )

    return MaxDepth


def _depth(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: set[str],
    depth: int,
    limit: int,
) -> int:
    """The depth of ``selections``; stops counting once past ``limit``."""
    if selections is None or depth > limit:
        return depth
    deepest = depth
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            inner = selection.selection_set
            found = _depth(inner, fragments, visiting, depth + 1, limit) if inner else depth + 1
        elif isinstance(selection, InlineFragmentNode):
            found = _depth(selection.selection_set, fragments, visiting, depth, limit)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue  # unknown or cyclic: other rules report it
            found = _depth(fragment.selection_set, fragments, visiting | {name}, depth, limit)
        else:
            continue
        deepest = max(deepest, found)
        if deepest > limit:
            break
    return deepest


def aliases_rule(max_aliases: int) -> type[ASTValidationRule]:
    """A validation rule refusing documents with more than ``max_aliases`` aliases."""

    class MaxAliases(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.count = 0

        def enter_field(self, node: FieldNode, *_: Any) -> None:
            if node.alias is None:
                return
            self.count += 1
            if self.count == max_aliases + 1:
                self.report_error(
                    GraphQLError(
                        f"the document uses more than {max_aliases} aliases (the max_aliases "
                        "setting)",
                        node,
                        extensions={"code": "TOO_MANY_ALIASES"},
                    )
                )

    return MaxAliases

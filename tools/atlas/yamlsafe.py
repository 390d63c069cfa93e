"""Safe, bounded YAML reading that keeps the node tree so errors can name a line.

libyaml composes the document into a node graph (aliases become shared nodes, nothing is
constructed); we then build plain Python values ourselves, accepting only the core tags, and
counting every node visit so an alias bomb stops after a fixed budget instead of expanding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000  # node visits per document, counting each alias expansion again
MAX_DEPTH = 40

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP = _TAG + "str", _TAG + "seq", _TAG + "map"
_IMPLICIT = Resolver.yaml_implicit_resolvers


class _FastLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader with a resolver that skips path resolution (we never register path resolvers)."""

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: object, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                assert isinstance(value, str)
                for tag, regexp in _IMPLICIT.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is yaml.SequenceNode else _MAP


_constructor = SafeConstructor()
# Scalars other than strings are built by PyYAML's own safe constructors; a timestamp stays text.
_SCALARS = {
    _STR: None,
    _TAG + "timestamp": None,
    _TAG + "null": SafeConstructor.construct_yaml_null,
    _TAG + "bool": SafeConstructor.construct_yaml_bool,
    _TAG + "int": SafeConstructor.construct_yaml_int,
    _TAG + "float": SafeConstructor.construct_yaml_float,
}


class YamlProblem(Exception):
    """The document cannot be read; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    data: object
    node: yaml.Node
    duplicate_keys: tuple[tuple[Location, int, int], ...]  # (location, line, line of the first one)
    marked: tuple[Location, ...]  # strings that start with the `mark` given to read_yaml

    def line_of(self, location: Sequence[str | int]) -> int:
        """The line of the deepest node that exists along `location` (for a missing field: its parent)."""
        node = self.node
        line = node.start_mark.line + 1
        for part in location:
            child = _child(node, part)
            if child is None:
                break
            key_node, node = child
            line = (key_node or node).start_mark.line + 1
        return line


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in reversed(node.value):  # the last duplicate wins, as in the data
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                return key_node, value_node
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def read_yaml(raw: bytes, mark: str | None = None) -> Document:
    """Compose and build one YAML document; raises YamlProblem for anything unsafe or malformed.

    Locations of string values starting with `mark` are collected on the way (placeholders).
    """
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(1, f"file is larger than {MAX_FILE_BYTES:,} bytes")
    loader = _FastLoader(raw)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise YamlProblem(mark.line + 1 if mark else 1, f"invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:  # e.g. a byte sequence that is not UTF-8
        raise YamlProblem(1, f"invalid YAML: {error}") from None
    finally:
        loader.dispose()
    if node is None:
        raise YamlProblem(1, "file is empty")
    builder = _Builder(mark)
    data = builder.build(node, None, 0)
    return Document(data, node, tuple(builder.duplicates), tuple(builder.marked))


# While building, a location is a cheap chain (parent chain, part); it is flattened only when kept.
_Chain = tuple | None


def _flatten(chain: _Chain) -> Location:
    parts: list[str | int] = []
    while chain is not None:
        chain, part = chain
        parts.append(part)
    return tuple(reversed(parts))


class _Builder:
    def __init__(self, mark: str | None) -> None:
        self.budget = MAX_NODES
        self.mark = mark
        self.duplicates: list[tuple[Location, int, int]] = []
        self.marked: list[Location] = []

    def build(self, node: yaml.Node, chain: _Chain, depth: int) -> object:
        self.budget -= 1
        if self.budget < 0:
            raise YamlProblem(
                node.start_mark.line + 1, f"more than {MAX_NODES:,} YAML nodes (an alias bomb?); refused"
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(node.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
        tag = node.tag
        if tag == _STR and isinstance(node, yaml.ScalarNode):  # by far the most common node
            value = node.value
            if self.mark and self.mark in value and value.lstrip().startswith(self.mark):
                self.marked.append(_flatten(chain))
            return value
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            return self._mapping(node, chain, depth)
        if tag == _SEQ and isinstance(node, yaml.SequenceNode):
            return [self.build(item, (chain, i), depth + 1) for i, item in enumerate(node.value)]
        if tag in _SCALARS and isinstance(node, yaml.ScalarNode):
            construct = _SCALARS[tag]
            return node.value if construct is None else construct(_constructor, node)
        raise YamlProblem(node.start_mark.line + 1, f"YAML tag {tag.replace(_TAG, '!!')} is not allowed")

    def _mapping(self, node: yaml.MappingNode, chain: _Chain, depth: int) -> dict:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag not in _SCALARS or not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(
                    key_node.start_mark.line + 1,
                    "mapping keys must be plain names (no tags, complex keys or << merges)",
                )
            key = key_node.value
            if key in result:
                first = next(k for k, _ in node.value if k.value == key)
                line = key_node.start_mark.line + 1
                self.duplicates.append((_flatten((chain, key)), line, first.start_mark.line + 1))
            result[key] = self.build(value_node, (chain, key), depth + 1)
        return result

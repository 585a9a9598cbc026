"""YAML files with positioned errors: the one place config, scenario and rule files are parsed.

ruamel.yaml's round-trip loader keeps every node's line and column, so a problem found later (by pydantic,
or by a loader walking the tree) can still name ``file:line:column``.

Aliases are counted as what they expand to: a file whose nodes, aliases expanded, pass ``NODE_BUDGET`` is
refused at the alias that passes it, while it is composed (before anything is built from it). A
"billion laughs" file of a few hundred bytes would otherwise expand to millions of nodes (seconds and
gigabytes) when validated or walked; the largest file the project ships has a few hundred.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent

from hedgewatch.service.errors import ConfigError, Problem

M = TypeVar("M", bound=BaseModel)

NODE_BUDGET = 100_000


class AliasBomb(ComposerError):
    """The document's nodes, aliases expanded, pass the budget."""


class _BudgetComposer(Composer):
    """A composer that counts every node as it would be expanded: a node costs one, an alias what its
    anchored node cost (itself and everything under it)."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self._spent = 0
        self._cost: dict[int, int] = {}

    def _spend(self, n: int, mark: Any) -> None:
        self._spent += n
        if self._spent > NODE_BUDGET:
            raise AliasBomb(None, None, f"aliases expand past {NODE_BUDGET} nodes", mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            mark = self.parser.peek_event().start_mark
            node = super().compose_node(parent, index)
            self._spend(self._cost.get(id(node), 1), mark)
            return node
        before = self._spent
        self._spend(1, self.parser.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._cost[id(node)] = self._spent - before
        return node


def load_yaml(text: str, file: str) -> Any:
    """The YAML node tree of ``text`` (None when empty); invalid YAML, or aliases expanding past
    ``NODE_BUDGET`` nodes, raise ConfigError with the position."""
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    y.Composer = _BudgetComposer
    try:
        return y.load(io.StringIO(text))
    except AliasBomb as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError([Problem(file, line, col, "", f"{exc.problem}: refused (an alias bomb?)")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise ConfigError([Problem(file, line, col, "", f"invalid YAML: {exc.problem or exc}")]) from exc
    except Exception as exc:  # ruamel raises a few non-marked errors (duplicate keys, bad anchors)
        raise ConfigError([Problem(file, None, None, "", f"invalid YAML: {exc}")]) from exc


def load_mapping(text: str, file: str, what: str) -> CommentedMap:
    """Like ``load_yaml`` for a document that must be a mapping (an empty one is an empty mapping)."""
    root = load_yaml(text, file)
    if root is None:
        return CommentedMap()
    if not isinstance(root, CommentedMap):
        raise ConfigError([Problem(file, 1, 1, "", f"{what} must be a mapping")])
    return root


def plain(node: Any) -> Any:
    """The node tree as plain dicts and lists."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def locate(root: Any, loc: tuple[int | str, ...]) -> tuple[int | None, int | None]:
    """1-based line and column of the deepest node along ``loc`` that exists in ``root``."""
    line: int | None = None
    col: int | None = None
    node = root
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            ln, cl = node.lc.key(part)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            ln, cl = node.lc.item(part)
            node = node[part]
        else:
            break
        line, col = ln + 1, cl + 1
    return line, col


def validation_problems(exc: ValidationError, file: str, root: Any) -> list[Problem]:
    """pydantic's errors as problems with the file position of each field."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line, col = locate(root, loc)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        problems.append(Problem(file, line, col, ".".join(str(p) for p in loc), msg))
    return problems


def validate(model: type[M], root: Any, file: str) -> M:
    """Validate a node tree into ``model``; raises ConfigError listing every problem with its position."""
    try:
        return model.model_validate(plain(root))
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, file, root)) from exc

"""YAML loading that remembers where every value came from.

PyYAML's safe loader throws the node marks away once it has built Python
objects, but error messages must name the line of the offending key. So the
file is composed into nodes once, turned into plain Python values by hand,
and a side table maps each YAML path (a tuple of keys and list indexes) to
its 1-based line. Only ``yaml.SafeLoader`` is ever used: no tags that build
arbitrary objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simcore.errors import ConfigError

PathT = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data from a YAML document plus the line of every path in it."""

    data: Any
    file: str
    lines: dict[PathT, int] = field(default_factory=dict)
    # Values set with --set have no line; remember their origin instead.
    origins: dict[PathT, str] = field(default_factory=dict)

    def line_of(self, path: PathT) -> int | None:
        """Line of ``path`` or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def origin_of(self, path: PathT) -> str | None:
        path = tuple(path)
        for i in range(len(path), -1, -1):
            if path[:i] in self.origins:
                return self.origins[path[:i]]
        return None


def format_path(path: PathT) -> str:
    """('workloads', 0, 'size') -> 'workloads[0].size'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


# libyaml's composer gives the same nodes and marks ten times faster; the
# hardware profiles are parsed on every resolve (a sweep resolves each point)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_text(text: str, file: str) -> Located:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty", file=file, expected="a YAML mapping")
        located = Located(data=None, file=file)
        located.data = _build(loader, node, (), located)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error: {problem}", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=str(path)) from None
    return load_yaml_text(text, str(path))


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: PathT, loc: Located) -> Any:
    loc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(
                    "mapping keys must be plain names",
                    file=loc.file,
                    path=format_path(path),
                    line=knode.start_mark.line + 1,
                )
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise ConfigError(
                    f"duplicate key {key!r}",
                    file=loc.file,
                    path=format_path(path + (key,)),
                    line=knode.start_mark.line + 1,
                )
            loc.lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _build(loader, vnode, path + (key,), loc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, v, path + (i,), loc) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_set_path(text: str) -> PathT:
    """``workloads[0].nr_pages`` as a path: ("workloads", 0, "nr_pages").
    ValueError when the text is not such a path."""
    parts: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        between = text[pos : m.start()]
        if between not in ("", "."):
            raise ValueError
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(text) or not parts:
        raise ValueError
    return tuple(parts)

"""Turn pydantic validation errors into one-paragraph ConfigErrors.

A pydantic ``loc`` names model fields, with discriminator tags of tagged
unions mixed in; the user needs the YAML path they wrote and its line. The
first error is reported (one clear message beats a wall of them), with a
"did you mean" hint for unknown keys drawn from the fields valid there.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from simcore.errors import ConfigError
from simcore.yamlsrc import Located, PathT, format_path


def _data_path(loc: tuple, data: Any) -> PathT:
    """Drop loc parts that are not in the data (union tags, validator names)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if (
            isinstance(cur, dict)
            and part in cur
            or isinstance(cur, list)
            and isinstance(part, int)
            and part < len(cur)
        ):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and not isinstance(part, int):
            # a key the data lacks: a missing or an unknown field; keep it
            # only if it is the last part (the field being complained about)
            if part == loc[-1]:
                out.append(part)
            continue
    return tuple(out)


def _unwrap(ann: Any, value: Any) -> list[type[BaseModel]]:
    """Model classes an annotation may hold, chosen by the value's `type` tag."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(ann)[0], value)
    if origin in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(ann) for m in _unwrap(a, value)]
        if isinstance(value, dict) and "type" in value:
            tagged = [
                m
                for m in models
                if "type" in m.model_fields
                and value["type"] in typing.get_args(m.model_fields["type"].annotation)
            ]
            return tagged or models
        return models
    if origin in (list, tuple):
        return [m for a in typing.get_args(ann) for m in _unwrap(a, value)]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return []


def fields_at(model: type[BaseModel], path: PathT, data: Any) -> list[str]:
    """Field names valid at ``path`` (a data path) under ``model``."""
    models = [model]
    cur = data
    for part in path:
        if isinstance(part, int):
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
            continue
        nxt: list[type[BaseModel]] = []
        child = cur.get(part) if isinstance(cur, dict) else None
        for m in models:
            if part in m.model_fields:
                ann = m.model_fields[part].annotation
                probe = child[0] if isinstance(child, list) and child else child
                nxt.extend(_unwrap(ann, probe))
        models, cur = nxt, child
    names: list[str] = []
    for m in models:
        names.extend(n for n in m.model_fields if n not in names)
    return names


def _message(err: dict, fields: list[str]) -> tuple[str, str | None]:
    kind = err["type"]
    key = err["loc"][-1] if err["loc"] else None
    if kind == "extra_forbidden":
        msg = f"unknown key {key!r}"
        hint = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        return msg, ", ".join(fields) if fields and not hint else None
    if kind == "missing":
        return f"required key {key!r} is missing", None
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag")
        expected = ctx.get("expected_tags", "")
        names = [t.strip(" '") for t in str(expected).split(",")]
        msg = f"unknown type {tag!r}"
        hint = difflib.get_close_matches(str(tag), names, n=1, cutoff=0.5)
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        return msg, f"one of {expected}"
    if kind == "union_tag_not_found":
        return "each entry needs a 'type' key", None
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg, None


def validation_to_config_error(
    exc: ValidationError,
    *,
    file: str,
    model: type[BaseModel],
    located: Located | None = None,
    prefix: PathT = (),
) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    data = located.data if located is not None else None
    if located is not None and prefix:
        for part in prefix:
            data = data[part]
    path = _data_path(tuple(err["loc"]), data)
    fields = (
        fields_at(model, path[:-1], data) if err["type"] == "extra_forbidden" else []
    )
    msg, expected = _message(err, fields)
    full = prefix + path
    line = located.line_of(full) if located is not None else None
    origin = located.origin_of(full) if located is not None else None
    if origin is not None:
        return ConfigError(msg, file=origin, path=format_path(full), expected=expected)
    return ConfigError(
        msg, file=file, path=format_path(full), line=line, expected=expected
    )


def check_known_keys(located: Located, ypath: PathT, model: type[BaseModel]) -> None:
    """Reject keys of the mapping at ``ypath`` that ``model`` lacks.

    Run before pydantic: it would report a misspelt required key as
    missing, without the hint that names the key the user meant.
    """
    data = located.data
    for part in ypath:
        data = data[part]
    fields = list(model.model_fields)
    for key in data:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), fields, n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown key {key!r}{tip}",
                file=located.file,
                path=format_path((*ypath, key)),
                line=located.line_of((*ypath, key)),
                expected=None if hint else "one of " + ", ".join(fields),
            )

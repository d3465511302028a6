"""What crosses the pipe between ft-score and its jailed worker: framed JSON, never pickle.

The worker runs hostile input and may be hostile itself, so the parent reads its replies as data
only: a length-prefixed JSON document of bounded size, values tagged where JSON has no type
(bytes, dates, decimals, nested tuples), and sqlglot trees rebuilt from a flat node list whose
class names must name sqlglot expression classes. (Unpickling a reply would let a worker that
escaped its query run code in the parent; sqlglot's own serde imports any module a payload names.)
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import os
import select
import time

_HEADER = 8  # bytes of big-endian length before each message


# ---------------------------------------------------------------- framing


def send(fd: int, payload: bytes, deadline: float | None = None) -> None:
    """Write one message; with a deadline, `fd` is non-blocking and TimeoutError ends a stuck write."""
    view = memoryview(len(payload).to_bytes(_HEADER, "big") + payload)
    while view:
        _wait(fd, deadline, write=True)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def recv(fd: int, maxlength: int, deadline: float | None = None) -> bytes:
    """Read one message of at most `maxlength` bytes (ValueError past it, EOFError at end of input)."""
    length = int.from_bytes(_read(fd, _HEADER, deadline), "big")
    if length > maxlength:
        raise ValueError(f"message of {length} bytes, over {maxlength}")
    return _read(fd, length, deadline)


def _read(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        _wait(fd, deadline, write=False)
        try:
            chunk = os.read(fd, min(left, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _wait(fd: int, deadline: float | None, write: bool) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    ready = select.select([], [fd], [], left)[1] if write else select.select([fd], [], [], left)[0]
    if not ready:
        raise TimeoutError


# ---------------------------------------------------------------- result values

_PLAIN = (type(None), bool, int, float, str)


def _encode(v):
    if isinstance(v, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, list | tuple):
        return {"$l": [x if type(x) in _PLAIN else _encode(x) for x in v]}
    if isinstance(v, datetime.datetime):
        return {"$dt": v.isoformat()}
    if isinstance(v, datetime.date):
        return {"$d": v.isoformat()}
    if isinstance(v, datetime.time):
        return {"$t": v.isoformat()}
    if isinstance(v, decimal.Decimal):
        return {"$dec": str(v)}
    if isinstance(v, set | frozenset):
        return {"$s": [x if type(x) in _PLAIN else _encode(x) for x in v]}
    if isinstance(v, dict):
        return {"$o": {str(k): x if type(x) in _PLAIN else _encode(x) for k, x in v.items()}}
    if isinstance(v, _PLAIN):  # subclasses of int, str, ... as the plain type
        return v
    return {"$r": repr(v)[:1000]}


def encode_rows(rows) -> list[list]:
    """Result rows as JSON-ready lists (plain values pass as they are)."""
    return [[v if type(v) in _PLAIN else _encode(v) for v in row] for row in rows]


_DECODE = {
    "$b": lambda s: base64.b64decode(s, validate=True),
    "$l": tuple,
    "$dt": datetime.datetime.fromisoformat,
    "$d": datetime.date.fromisoformat,
    "$t": datetime.time.fromisoformat,
    "$dec": decimal.Decimal,
    "$s": set,
    "$o": dict,
    "$r": str,
}


def _object_hook(d: dict):
    if len(d) == 1:
        (tag, value), = d.items()
        if tag in _DECODE:
            return _DECODE[tag](value)
    return d


def loads(payload: bytes):
    """A message from the worker: JSON with tagged values decoded (ValueError if malformed)."""
    try:
        return json.loads(payload, object_hook=_object_hook)
    except (RecursionError, TypeError, decimal.InvalidOperation, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed message ({type(exc).__name__})") from None


def dumps(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------- sqlglot trees


def dump_tree(tree) -> list[list]:
    """A sqlglot tree as flat nodes [parent, arg_key, in_list, class, value] (as sqlglot.serde walks it,
    without positions, comments or types: what the checker compares ignores them)."""
    from sqlglot import exp

    out: list[list] = []
    stack = [(tree, None, None, False)]
    while stack:
        node, parent, key, in_list = stack.pop()
        index = len(out)
        if isinstance(node, exp.Expr):
            cls = type(node)
            out.append([parent, key, in_list, f"{cls.__module__}.{cls.__qualname__}", None])
            for k, vs in reversed(list(node.args.items())):
                if type(vs) is list:
                    stack.extend((v, index, k, True) for v in reversed(vs))
                elif vs is not None:
                    stack.append((vs, index, k, False))
        elif isinstance(node, exp.DType):
            out.append([parent, key, in_list, "DType", node.value])
        else:
            out.append([parent, key, in_list, None, node])
    return out


_CLASSES: dict[str, type] = {}


def _expression_classes() -> dict[str, type]:
    if not _CLASSES:
        from sqlglot import exp

        stack = [exp.Expr]
        while stack:
            cls = stack.pop()
            _CLASSES[f"{cls.__module__}.{cls.__qualname__}"] = cls
            stack.extend(cls.__subclasses__())
    return _CLASSES


def load_tree(nodes):
    """Rebuild a tree from dump_tree's list; ValueError for anything that is not one."""
    from sqlglot import exp

    if not isinstance(nodes, list) or not nodes:
        raise ValueError("not a tree")
    classes, built = _expression_classes(), []
    for i, item in enumerate(nodes):
        if type(item) is not list or len(item) != 5:
            raise ValueError("not a tree node")
        parent, key, in_list, cls_name, value = item
        if cls_name is None:
            if type(value) not in _PLAIN:
                raise ValueError("not a plain value")
            node = value
        elif cls_name == "DType":
            node = exp.DType(value)
        elif cls_name in classes:
            node = classes[cls_name]()
        else:
            raise ValueError(f"unknown expression class {cls_name!r}")
        if i:
            if not (type(parent) is int and 0 <= parent < i and isinstance(built[parent], exp.Expr)
                    and type(key) is str):
                raise ValueError("bad tree link")
            if in_list:
                built[parent].append(key, node)
            else:
                built[parent].set(key, node)
        built.append(node)
    if not isinstance(built[0], exp.Expr):
        raise ValueError("not a tree")
    return built[0]

"""Streaming JSONL: read records with file:line errors, write them flushed or atomically.

The one reader every command uses (`read_records`, `iter_lines_as_records`). Input is
hostile (a dataset or a model may have written it), so every way a line can be bad ends in
the same one-line InputError naming FILE:LINE (`<stdin>:N` on stdin), exit 2:

- not UTF-8 (lines are read as bytes and decoded one at a time, so the line is known);
- not JSON, or not a JSON object;
- nested deeper than MAX_DEPTH (Python's json raises RecursionError past ~1,000 levels, and
  a record just under that would fail later, when a command writes it back);
- a lone UTF-16 surrogate escape ("\\ud800"), which no UTF-8 output can hold.

A UTF-8 BOM at the start of a line (a file saved by Excel or Notepad, or several such files
concatenated) is skipped. Lines are split on "\\n" only: str.splitlines() would also break
at U+2028, which JSON strings may hold raw (GSM8K has them).
"""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import re
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from ft_common.atomic import atomic_write
from ft_common.errors import FtError, InputError

STDIO = "-"
MAX_DEPTH = 500  # nesting levels a record may have (real records have fewer than 10)
BOM = "\ufeff"


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIO else str(path)


def iter_lines_as_records(lines: Iterable[str] | IO[bytes], name: str, *, line_numbers: bool = False,
                          digest=None) -> Iterator:
    """Parse each non-blank line as a JSON object; a bad one raises InputError naming name:line.

    `lines`: a binary file (decoded here as strict UTF-8), or an iterable of str lines.
    With line_numbers, yields (line number, record) pairs. `digest` (a hashlib object) is
    fed every byte read, so a caller gets the input's sha256 without reading it twice.
    """
    if hasattr(lines, "read1") or isinstance(lines, (io.RawIOBase, io.BufferedIOBase)):
        return _parse_binary(lines, name, line_numbers, digest)
    if digest is not None:
        lines = _digested(lines, digest)
    return _parse(lines, name, line_numbers)


def _digested(lines: Iterable[str], digest) -> Iterator[str]:
    for line in lines:
        digest.update(line.encode("utf-8", "surrogatepass"))
        yield line


def _parse_binary(fh: IO[bytes], name: str, line_numbers: bool, digest) -> Iterator:
    stream = DecodedText(fh, digest)
    try:
        yield from _parse(stream.text, name, line_numbers, stream._recorder)
    finally:
        stream.close()


class DecodedText:
    """A strict UTF-8 text view of a binary stream, for readers that go line by line (JSONL,
    csv); a bad byte becomes an InputError naming its line and column.

    TextIOWrapper's line iteration is the fastest way to decode and split (2-3x faster than
    bytes.decode + str.split in Python); the _Recorder under it remembers where lines
    start. newline="\n": split on "\n" only and keep "\r" (JSON and csv whitespace), so
    line numbers count what `wc -l` and an editor count. encoding "utf-8-sig" drops a BOM
    at the start.
    """

    def __init__(self, fh: IO[bytes], digest=None, encoding: str = "utf-8"):
        self._recorder = _Recorder(fh, digest)
        self.text = io.TextIOWrapper(self._recorder, encoding=encoding, errors="strict", newline="\n")
        self.text._CHUNK_SIZE = 1 << 16

    def where_not_utf8(self, name: str, lineno: int) -> str:
        """The error text when decoding failed while line `lineno` (1-based) was being read."""
        return self._recorder.where_not_utf8(name, lineno)

    def close(self) -> None:
        self.text.detach()  # leaves the caller's file (stdin) open


# A "\ud800"-"\udfff" escape: the only way a lone surrogate gets into a parsed string.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# In a line: a high surrogate escape not followed by a low one, or a low one not after a high
# one (an escaped backslash, "\\\\ud800", also matches: the walk of the record decides).
_LONE_SURROGATE_TEXT = re.compile(r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
                                  r"|[c-fC-F](?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F]))")


class _Recorder(io.RawIOBase):
    """A binary stream as TextIOWrapper reads it: feeds the digest, notes surrogate escapes,
    and keeps the bytes from the start of the line in progress, to name a bad byte's line."""

    def __init__(self, raw: IO[bytes], digest):
        self._read = getattr(raw, "read1", raw.read)
        self._digest = digest
        self.escapes = False  # a surrogate escape was seen: check strings from now on
        self._pieces: list[bytes] = []  # from the start of the line in progress through the last chunk
        self._end = b""  # the last chunk's last bytes: an escape may straddle two chunks

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        chunk = self._read(size)
        # Of the earlier chunks keep only what follows their last newline: TextIOWrapper has
        # handed out every line before it by the time it reads (and decodes) this chunk.
        if self._pieces:
            cut = self._pieces[-1].rfind(b"\n")
            if cut >= 0:
                self._pieces = [self._pieces[-1][cut + 1:]]
        if not chunk:
            return chunk
        if self._digest is not None:
            self._digest.update(chunk)
        if not self.escapes:
            self.escapes = bool(SURROGATE_ESCAPE.search(chunk) or SURROGATE_ESCAPE.search(self._end + chunk[:3]))
        self._end = chunk[-3:]
        self._pieces.append(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read1(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)

    def where_not_utf8(self, name: str, lineno: int) -> str:
        """`lineno`: the number of the line in progress when decoding failed."""
        data = b"".join(self._pieces)
        try:
            data.decode("utf-8")
            return f"{name}:{lineno}: not UTF-8 text"
        except UnicodeDecodeError as exc:
            line = lineno + data.count(b"\n", 0, exc.start)
            column = exc.start - data.rfind(b"\n", 0, exc.start)
            return f"{name}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column})"


class _Text:
    """What _parse needs to know about str input: nothing can be undecodable, no escape was noted."""

    escapes = True

    @staticmethod
    def where_not_utf8(name: str, lineno: int) -> str:
        return f"{name}:{lineno}: not UTF-8 text"


def _parse(lines: Iterable[str], name: str, numbered: bool, source=_Text) -> Iterator:
    loads = json.loads
    lineno = 0
    try:
        for lineno, line in enumerate(lines, 1):  # noqa: B007 - lineno is read in the except
            try:
                record = loads(line)
            except json.JSONDecodeError:
                # The rare cases cost nothing on the hot path: a BOM, a blank line.
                line = line.removeprefix(BOM)
                if not line.strip():
                    continue
                record = _reparse(line, name, lineno)
            except RecursionError:
                raise InputError(f"{name}:{lineno}: JSON nested too deeply") from None
            if type(record) is not dict:
                raise InputError(f"{name}:{lineno}: expected a JSON object: {_excerpt(line)}")
            # Depth > MAX_DEPTH needs that many brackets opened and closed: only a long line can.
            if len(line) > 2 * MAX_DEPTH and line.count("[") + line.count("{") > MAX_DEPTH \
                    and _depth(record) > MAX_DEPTH:
                raise InputError(f"{name}:{lineno}: JSON nested too deeply (more than {MAX_DEPTH} levels)")
            if source.escapes and _LONE_SURROGATE_TEXT.search(line) and _has_lone_surrogate(record):
                raise InputError(f"{name}:{lineno}: a lone UTF-16 surrogate escape (\\udXXX) is not text")
            yield (lineno, record) if numbered else record
    except UnicodeDecodeError:  # raised by the decoding under `lines`, before line lineno + 1
        raise InputError(source.where_not_utf8(name, lineno + 1)) from None


def _reparse(line: str, name: str, lineno: int):
    """json.loads of a line that failed once: fine now only if a BOM was the trouble."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise InputError(f"{name}:{lineno}: not valid JSON: {_excerpt(line)}") from None
    except RecursionError:
        raise InputError(f"{name}:{lineno}: JSON nested too deeply") from None


def _excerpt(line: str) -> str:
    return repr(line.rstrip("\r\n")[:60])


def _depth(value) -> int:
    """Nesting depth of a parsed value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((v, depth + 1) for v in value if isinstance(v, (dict, list)))
    return deepest


def _has_lone_surrogate(value) -> bool:
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def read_records(path: str = STDIO, *, line_numbers: bool = False, digest=None) -> Iterator:
    """Stream the records of a JSONL file (.xz or .gz ones decompressed), or of stdin for '-' (options:
    iter_lines_as_records)."""
    name = display_name(path)
    if path == STDIO:
        yield from iter_lines_as_records(_stdin_lines(), name, line_numbers=line_numbers, digest=digest)
        return
    try:
        fh = _open_compressed(path)
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None
    with fh:
        try:
            yield from iter_lines_as_records(fh, name, line_numbers=line_numbers, digest=digest)
        except (EOFError, OSError, lzma.LZMAError) as exc:  # a cut or corrupt .xz/.gz (BadGzipFile is an OSError)
            raise InputError(f"{name}: not a readable compressed file ({exc})") from None


def _open_compressed(path: str) -> IO[bytes]:
    """The file's bytes; .xz and .gz files (the committed results are kept so) decompressed."""
    if path.endswith(".xz"):
        return lzma.open(path, "rb")
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _stdin_lines() -> IO:
    # Bytes, whatever the locale says: decoded here, so a bad byte names its line.
    return getattr(sys.stdin, "buffer", sys.stdin)


def dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class RecordWriter:
    """Write records one per line; flushes each line when writing to a pipe or terminal."""

    def __init__(self, fh: IO[str], flush_each: bool):
        self._fh = fh
        self._flush_each = flush_each
        self.count = 0

    def write(self, record: dict) -> None:
        self._fh.write(dumps(record) + "\n")
        if self._flush_each:
            self._fh.flush()
        self.count += 1

    def write_all(self, records: Iterable[dict]) -> int:
        for record in records:
            self.write(record)
        return self.count


@contextlib.contextmanager
def open_output(path: str = STDIO, append: bool = False) -> Iterator[RecordWriter]:
    """A RecordWriter on stdout ('-'), or on a file written atomically (or appended to)."""
    if path == STDIO:
        yield RecordWriter(sys.stdout, flush_each=True)
        sys.stdout.flush()
        return
    if append:
        try:
            fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise FtError(f"{path}: cannot open for appending ({exc.strerror})") from None
        with fh:
            # Appending keeps every finished line: a crash loses at most the line in flight.
            yield RecordWriter(fh, flush_each=True)
        return
    try:
        with atomic_write(path) as fh:
            yield RecordWriter(fh, flush_each=False)
    except OSError as exc:
        raise FtError(f"{path}: cannot write ({exc.strerror})") from None


def write_records(records: Iterable[dict], path: str = STDIO) -> int:
    """Write all records to `path` ('-' for stdout); return how many were written."""
    with open_output(path) as writer:
        return writer.write_all(records)

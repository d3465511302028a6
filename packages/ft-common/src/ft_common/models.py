"""The model resolver ft-train and ft-infer share: `-m` may name a local Hugging
Face folder, a `.gguf` file, or a hub id.

A hub id is probed first (`ft_common.hub`): when the hub cannot be reached the
model's copy in the Hugging Face cache is used, or the command fails at once
naming the local alternative, instead of the libraries' minute of retries.

A GGUF file is de-quantized once into a plain safetensors folder in the cache
(`FT_CACHE`, default ~/.cache/ft), keyed by the file's sha256, so training and
inference never see a "quantized" model and the second use costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ft_common import hub, thirdparty
from ft_common.atomic import atomic_dir, atomic_write
from ft_common.errors import FtError, InputError, require_module
from ft_common.progress import log

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    """What `from_pretrained` should be given, and where it came from."""

    path: str  # a local folder, or a hub id for source == "hub" (its cached snapshot when the hub is away)
    source: str  # "folder", "gguf" or "hub"
    spec: str  # what the user wrote
    sha256: str | None = None  # of the GGUF file, when there was one


def cache_root() -> Path:
    return Path(os.environ.get("FT_CACHE", Path.home() / ".cache" / "ft"))


# A model file's sha256 is remembered by where it is, its size, mtime and inode (FT_CACHE/sha256.json),
# so a 1 GB GGUF or a checkpoint's weights are read once, not by every command (~1.5 s a GB).
REMEMBER_FROM_BYTES = 16 << 20  # smaller files are hashed each time: cheap, and the index stays small
REMEMBERED_MAX = 256
_SHA256 = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    st = os.stat(path)
    key = f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    remember = st.st_size >= REMEMBER_FROM_BYTES
    known = _remembered() if remember else {}
    if isinstance(known.get(key), str) and _SHA256.fullmatch(known[key]):
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    sha = digest.hexdigest()
    if remember:
        _remember(known, key, sha)
    return sha


def _remembered() -> dict:
    """The remembered digests; an unreadable or foreign index counts as empty (it is only a cache)."""
    try:
        value = json.loads((cache_root() / "sha256.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _remember(known: dict, key: str, sha: str) -> None:
    where = key.split("\0", 1)[0] + "\0"
    known = {k: v for k, v in known.items() if not k.startswith(where)}  # the file's entry from before it changed
    known[key] = sha
    known = dict(list(known.items())[-REMEMBERED_MAX:])
    try:
        cache_root().mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_root() / "sha256.json") as fh:
            json.dump(known, fh)
    except OSError:  # a read-only cache: hash again next time
        pass


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A sha256 naming a model folder's contents: its config and weight files, by name and content.

    Tokenizer files and notes are left out, so a folder re-saved with another
    tokenizer layout keeps its fingerprint only if its weights are the same.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    names = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES))
    for name in names:
        digest.update(f"{name}\0{file_sha256(folder / name)}\n".encode())
    return digest.hexdigest()


def resolve_model(spec: str, quiet: bool = False) -> ResolvedModel:
    """Turn `-m SPEC` into something transformers can load without GGUF handling."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"{spec}: a folder without config.json is not a Hugging Face model")
        return ResolvedModel(str(path.resolve()), "folder", spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"{spec}: no such GGUF file")
        return _dequantize_gguf(path, spec, quiet)
    if path.exists():
        raise InputError(f"{spec}: not a model folder or a .gguf file")
    if _HUB_ID.match(spec):
        return _from_hub(spec)
    raise InputError(f"{spec}: no such model folder or file, and not a hub id (org/name)")


def _from_hub(spec: str) -> ResolvedModel:
    """The hub id itself when the hub answers; its cached snapshot folder when it does not."""
    reason = hub.why_not("model")
    if reason is None:
        return ResolvedModel(spec, "hub", spec)
    folder = hub.cached_model(spec)
    if folder is None:
        raise hub.HubUnreachable(spec, "model", reason, "give -m a local model folder or a .gguf file instead")
    return ResolvedModel(folder, "hub", spec)


def _dequantize_gguf(path: Path, spec: str, quiet: bool) -> ResolvedModel:
    sha = file_sha256(path)
    out = cache_root() / "gguf" / f"{path.stem}-{sha[:16]}"
    if (out / "config.json").is_file():
        return ResolvedModel(str(out), "gguf", spec, sha)
    require_module("gguf", "ft-common", "models")
    transformers = require_module("transformers", "ft-common", "models")
    log(f"de-quantizing {path.name} into {out} (once)", quiet)
    try:
        with _library_bars(shown=not quiet and (sys.stderr.isatty() or not thirdparty.hidden())):
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # transformers raises many kinds for an unsupported file
        raise FtError(f"{spec}: cannot load GGUF file ({type(exc).__name__}: {exc})") from exc
    # The weights are dense now; drop the GGUF marker so the folder is a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{path.name}\nsha256 {sha}\n")
    return ResolvedModel(str(out), "gguf", spec, sha)


@contextlib.contextmanager
def _library_bars(shown: bool):
    """transformers draws a tqdm bar over the GGUF tensors that no setting turns off: as any
    library bar, only on a terminal (or with -v), never with -q. tqdm takes sys.stderr when
    the bar is made, so pointing it elsewhere meanwhile is enough."""
    if shown:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield

"""Reaching the Hugging Face hub: probe it once, fast, before a library is handed a hub id.

Given an endpoint it cannot reach, huggingface_hub retries each file five times with
backoff (25 s and 11 'Retrying in 8s' lines for one dataset; more for a model) before it
fails. ft instead opens one TCP connection to the endpoint (`HF_ENDPOINT`, or the proxy
the environment names for it) with a short timeout. When that fails, or `HF_HUB_OFFLINE`
is set, a copy in the local Hugging Face cache is used without touching the network, and
without one the command fails at once with a line naming the local alternative.
The probe answers "can a connection open", not "does the repository exist": a reachable
hub is left to the library, which reports a missing repository itself.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from ft_common.errors import FtError

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 3.0  # a refused or unroutable connection fails well inside this
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of a boolean variable
_probed: dict[tuple, str | None] = {}  # one probe per endpoint (and proxy) per process


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline(datasets: bool = False) -> bool:
    """Whether the environment forbids the network: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE);
    for datasets, HF_DATASETS_OFFLINE first when it is set, as `datasets` reads it."""
    if datasets and os.environ.get("HF_DATASETS_OFFLINE") is not None:
        return os.environ["HF_DATASETS_OFFLINE"].upper() in _TRUE
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in _TRUE


def _target(url: str) -> tuple[str, int]:
    """The host and port a connection to `url` opens: its proxy's when one applies."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """Why the hub cannot be reached now, or None when a TCP connection to it opens."""
    url = endpoint()
    host, port = _target(url)
    key = (url, host, port)
    if key not in _probed:
        _probed[key] = _connect(url, host, port, timeout)
    return _probed[key]


def _connect(url: str, host: str, port: int, timeout: float) -> str | None:
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except socket.gaierror:
            outcome.append(f"cannot resolve {host}")
        except ConnectionRefusedError:
            outcome.append("connection refused")
        except TimeoutError:
            outcome.append(f"no answer in {timeout:g}s")
        except OSError as exc:
            outcome.append(exc.strerror or type(exc).__name__)

    # A thread, so a name lookup that hangs (getaddrinfo has no timeout) cannot hold us longer.
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    reason = outcome[0] if outcome else f"no answer in {timeout:g}s"
    return None if reason is None else f"cannot reach the Hugging Face hub at {url} ({reason})"


def why_not(kind: str) -> str | None:
    """Why `kind` ("model" or "dataset") cannot come from the hub now, or None when it can."""
    if offline(datasets=kind == "dataset"):
        return ("HF_DATASETS_OFFLINE" if kind == "dataset" and os.environ.get("HF_DATASETS_OFFLINE")
                else "HF_HUB_OFFLINE") + " is set"
    return unreachable()


def _hf_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("HF_HOME") or Path(xdg) / "huggingface").expanduser()


def hub_cache() -> Path:
    """huggingface_hub's file cache (HF_HUB_CACHE, else HF_HOME/hub)."""
    return Path(os.environ.get("HF_HUB_CACHE") or _hf_home() / "hub").expanduser()


def datasets_cache() -> Path:
    """datasets' prepared-table cache (HF_DATASETS_CACHE, else HF_HOME/datasets)."""
    return Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets").expanduser()


def cached_model(repo_id: str) -> str | None:
    """The local snapshot folder of a model in the Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError and kin: not cached
        return None
    return folder if (Path(folder) / "config.json").is_file() else None


def dataset_is_cached(repo_id: str) -> bool:
    """Whether `datasets` has prepared tables of `repo_id` in its cache, which is what its
    offline mode loads (the raw files in the hub cache are not enough)."""
    org, _, name = repo_id.partition("/")
    snake = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)).lower()
    root = datasets_cache() / f"{org}___{snake}"  # datasets' own naming of the folder
    return any(p.is_dir() for p in root.glob("*/*/*"))


def use_cache_only() -> None:
    """From here on, huggingface_hub and datasets in this process read the cache and never the network."""
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # Both libraries read the variables once, at import; patch them if already imported.
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        config = sys.modules["datasets"].config
        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = True


class HubUnreachable(FtError):
    """A hub id was given, the hub cannot be reached, and no cached copy exists (exit 1)."""

    def __init__(self, repo_id: str, kind: str, reason: str, alternative: str):
        super().__init__(f"{repo_id}: {reason}, and the {kind} is not in the local Hugging Face cache; "
                         f"{alternative}")

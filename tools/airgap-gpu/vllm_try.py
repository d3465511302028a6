"""Try vLLM offline on the GPU machine: import it, build an LLM, generate greedily.

    PYTHONPATH=/tmp/vsite:/tmp/site python3 tools/airgap-gpu/vllm_try.py --model PATH

If a module is missing, prints one line `MISSING <module>` (the first one found;
`IMPORT_ERROR ...` for a library that fails to load) and exits 3, so the next staging round can add its wheel. The engine core runs in
a child process by default, where an import error only shows up as "Engine core
initialization failed"; so before building the LLM, a child interpreter imports the
modules on the offline-generate path and reports the first missing one. With
--inproc the engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0),
so any later import error reaches this script directly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Modules on the path of LLM(...).generate for a Llama model on one CUDA GPU.
PROBE = [
    "vllm",
    "vllm.entrypoints.llm",
    "vllm.v1.engine.llm_engine",
    "vllm.v1.engine.core",
    "vllm.v1.engine.core_client",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.executor.multiproc_executor",
    "vllm.platforms.cuda",
    "vllm.v1.worker.gpu_worker",
    "vllm.v1.worker.gpu_model_runner",
    "vllm.model_executor.models.llama",
    "vllm.model_executor.model_loader.default_loader",
    "vllm.v1.attention.backends.flash_attn",
    "vllm.vllm_flash_attn",
    "vllm.v1.sample.sampler",
    "vllm.v1.structured_output",
    "vllm.tokenizers.hf",
    "vllm.compilation.backends",
    "depyf",
    "setproctitle",
]

PROMPTS = [
    "Represent this sentence as a meaning representation: "
    "Dirt: Showdown is a driving game released in 2012.\nMeaning representation:",
    "The capital of France is",
    "Q: What is 2 + 3?\nA:",
    "List three colours:\n1.",
]


def report(exc: ImportError, where: str) -> None:
    """One line for the lead: MISSING <module> when a Python module is absent,
    IMPORT_ERROR otherwise (a shared library or a name that fails to load)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        print(f"MISSING {exc.name}  ({where}: {exc})", flush=True)
    else:
        print(f"IMPORT_ERROR {getattr(exc, 'name', None)}  ({where}: {exc})", flush=True)


def probe() -> int:
    """Child mode: import each probe module, print MISSING for the first failure."""
    for mod in PROBE:
        try:
            __import__(mod)
        except ImportError as exc:  # includes ModuleNotFoundError
            report(exc, f"importing {mod}")
            return 3
    print("probe ok", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=False, default=os.environ.get("MODEL"))
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--inproc", action="store_true", help="engine core in this process")
    ap.add_argument("--probe-only", action="store_true")
    ap.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    for k, v in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }.items():
        os.environ.setdefault(k, v)
    if args.inproc:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

    if args._probe:
        return probe()

    rc = subprocess.run([sys.executable, __file__, "--_probe"]).returncode
    if rc != 0 or args.probe_only:
        return rc
    if not args.model:
        ap.error("--model (or MODEL) is required")

    try:
        from vllm import LLM, SamplingParams

        t0 = time.perf_counter()
        llm = LLM(
            model=args.model,
            dtype="bfloat16",
            gpu_memory_utilization=args.gpu_memory_utilization,
            enforce_eager=args.enforce_eager,
            seed=0,
        )
        t_init = time.perf_counter() - t0
        sp = SamplingParams(
            temperature=0.0, max_tokens=args.max_tokens, stop=["\n\n", "</s>", "\nQ:"]
        )
        t0 = time.perf_counter()
        outs = llm.generate(PROMPTS, sp)
        dt = time.perf_counter() - t0
    except ImportError as exc:
        report(exc, "building/generating")
        return 3
    except Exception as exc:  # engine-core child failures land here
        print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
        print("(an import error in the engine-core process shows only in its own "
              "traceback above; rerun with --inproc to surface it as MISSING)", flush=True)
        return 1

    ntok = 0
    for o in outs:
        c = o.outputs[0]
        ntok += len(c.token_ids)
        print(json.dumps({"prompt": o.prompt[-40:], "text": c.text, "finish": c.finish_reason,
                          "stop": c.stop_reason, "tokens": len(c.token_ids)}))
    import vllm

    print(json.dumps({"vllm": vllm.__version__, "init_s": round(t_init, 1),
                      "gen_s": round(dt, 3), "tokens": ntok,
                      "tok_per_s": round(ntok / dt, 1) if dt else None}))
    print("VLLM_OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

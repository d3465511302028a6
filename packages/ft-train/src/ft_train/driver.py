"""The driver: check and tokenise the data, decide everything, then run the workers on Ray Train.

    train(cfg)   prepare -> run_workers -> {"best", "best_val_ppl", "epochs"}
    prepare      read and check the records, resolve the model, add the special tokens,
                 tokenise (or find it all in token_cache), cut every epoch's batches,
                 choose ZeRO: one Plan (plan.py)
    run_workers  start Ray and hand the Plan to worker.train_loop_per_worker

Everything that can fail on bad input (a malformed line, a record without
prompt/target, a special token that is not one id) fails here, before Ray
starts. The workers get the Plan (through Ray's object store, so this works
on a multi-node cluster too) and write to OUT_DIR, which on several nodes must
be a shared filesystem.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ft_common.atomic import atomic_write
from ft_common.cli import verbose
from ft_common.errors import FtError, InputError, UsageError
from ft_common.jsonl import read_records
from ft_common.models import folder_fingerprint, resolve_model
from ft_common.progress import log

from ft_train import checkpoint, manifest, recipe, token_cache
from ft_train.cluster import fit_on_ray
from ft_train.config import TrainConfig
from ft_train.console import Console, MetricsWatcher
from ft_train.data import (
    DataFile,
    count_tokens,
    default_batch_tokens,
    make_batches,
    read_data_file,
    tokenize_records,
)
from ft_train.flat import flat_shape
from ft_train.plan import (
    Plan,
    choose_zero_for,
    epoch_batches,
    memory_fits,
    model_shape,
    split_to_fit,
    steps_per_epoch,
    uses_bf16,
)
from ft_train.plot import plot_curve
from ft_train.recipe import Recipe
from ft_train.tokens import (
    add_tokens,
    check_tokens,
    stop_token,
    tokens_from_file,
    tokens_from_records,
)


@dataclass(frozen=True)
class Prepared:
    plan: Plan  # what the workers carry out
    summary: str  # what the user is told


def prepare(cfg: TrainConfig, marks: dict | None = None) -> Prepared:
    """Read, check and tokenise; resolve the model; decide the recipe, the checkpoint selection,
    the batches and the engine. The plan's config has model_path, special_tokens, stop, lr,
    epochs, batch_tokens, warmup and select_by resolved (cfg itself is frozen and left as given).
    `marks` ({name: time.time()}, the manifest's timing) gets when the data was read, the model
    resolved and the records tokenised."""
    marks = {} if marks is None else marks
    out = Path(cfg.out_dir)
    earlier = [out / checkpoint.STATE, out / checkpoint.CHECKPOINTS, out / "ft-train.json"]
    if any(p.exists() for p in earlier) and not cfg.resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it, or choose another -o")
    if cfg.resume:
        info = checkpoint.latest_state(out)
        if not info:
            raise UsageError(f"--resume: {out} has no saved training state")
        checkpoint.check_state_files(out / checkpoint.STATE / info["tag"])  # plain data only, before Ray

    train = read_data_file(cfg.train)
    if not train.records:
        raise InputError(f"{train.name}: no records to train on")
    if cfg.valid:
        valid = read_data_file(cfg.valid)
        if not valid.records:
            raise InputError(f"{valid.name}: no validation records")
    else:
        records = train.records[:]
        random.Random(cfg.seed).shuffle(records)
        n = max(1, int(len(records) * cfg.valid_fraction))
        if len(records) < 2:
            raise InputError(f"{train.name}: need at least 2 records to hold out validation (or pass --valid)")
        valid = DataFile(f"{train.name} (held out {n})", train.sha256, records[:n])
        train = DataFile(train.name, train.sha256, records[n:])

    marks["data_read"] = time.time()
    resolved = resolve_model(cfg.model, quiet=cfg.quiet)
    marks["model_resolved"] = time.time()
    cfg = replace(cfg, model_path=resolved.path)
    is_ft = resolved.source == "folder" and (Path(resolved.path) / "ft-train.json").is_file()
    parent = {"spec": cfg.model, "source": "ft-checkpoint" if is_ft else resolved.source, "path": resolved.path,
              "sha256": resolved.sha256 or (folder_fingerprint(resolved.path) if resolved.source == "folder" else None)}

    special = tokens_from_file(cfg.special_tokens_file) if cfg.special_tokens_file else tokens_from_records(train.records)
    cfg = replace(cfg, special_tokens=special, stop=stop_token(train.records, special))
    tok_dir = out / ".work" / "tokenizer"
    cache_key = token_cache.key(resolved.path, train, valid, special, cfg.stop, cfg.ctx_len, cfg.loss_on,
                                None if cfg.valid else (cfg.seed, cfg.valid_fraction))
    tokenised = token_cache.load(cache_key, tok_dir, len(train.records), len(valid.records), cfg.ctx_len)
    if tokenised is None:
        tokenised = _tokenise(cfg, resolved.path, train, valid, tok_dir)
        token_cache.save(cache_key, tokenised, tok_dir)
    else:  # the timing's phases say when a run's tokens came from the cache (a repeat run's seconds)
        marks["token_cache_hit"] = time.time()
    marks["tokenized"] = time.time()
    train_rows, truncated = tokenised.train_rows, tokenised.truncated
    valid_rows, v_truncated = tokenised.valid_rows, tokenised.valid_truncated
    stop_id = tokenised.stop_id

    gpu = _uses_gpu(cfg)
    cfg = layout_choice(cfg, gpu)
    all_tokens, loss_tokens = count_tokens(train_rows)
    config, params = model_shape(resolved.path, tokenised.vocab_size)  # once: the recipe and the ZeRO choice use it
    cfg, chosen = _apply_recipe(cfg, config, params, gpu, all_tokens)
    select_by, eval_records = _selection(cfg, valid.records, gpu)
    cfg = replace(cfg, select_by=select_by)
    zero = choose_zero_for(cfg, config, params, gpu)
    cfg = graphs_choice(cfg, zero, gpu)
    train_batches = epoch_batches(cfg, train_rows)
    valid_batches = make_batches(valid_rows, cfg.layout, cfg.batch_size, cfg.batch_tokens, cfg.ctx_len, seed=0,
                                 multiple=cfg.pad_multiple)
    # the flat layout's one shape, for every batch of the run (validation's too: one longest record)
    flat = flat_shape([b for e in train_batches for b in e] + valid_batches) if cfg.layout == "flat" else None
    steps = steps_per_epoch(cfg, train_batches[0])
    cfg = compile_choice(cfg, zero, all_tokens * cfg.epochs, params)
    data = {
        "train": {"file": train.name, "sha256": train.sha256, "records": len(train_rows), "truncated": truncated,
                  "tokens": all_tokens, "loss_tokens": loss_tokens},
        "valid": {"file": valid.name, "sha256": valid.sha256, "records": len(valid_rows), "truncated": v_truncated},
    }
    plan = Plan(
        cfg=cfg, tokenizer_dir=str(tok_dir.resolve()), stop_id=stop_id, device="cuda" if gpu else "cpu",
        zero=zero,
        train_batches=train_batches,
        valid_batches=valid_batches,
        steps_per_epoch=steps, parent=parent, data=data,
        lineage=manifest.parent_lineage(resolved.path) if is_ft else [],
        # the loss rule (Recipe.lr_from_loss): the workers choose the lr, from the loss before training
        recipe={"lr": None if chosen.lr_from_loss else cfg.lr, "lr_rule": cfg.lr_rule, "epochs": cfg.epochs,
                "batch_tokens": chosen.batch_tokens, "warmup": cfg.warmup,
                "micro_batches": chosen.micro_batches, "chosen": list(chosen.chosen), "params": chosen.params,
                "line": chosen.line(steps)},
        eval_records=eval_records,
        flat=flat,
    )
    summary = (f"{len(train_rows)} training records ({all_tokens} tokens, {loss_tokens} in the loss), "
               f"{len(valid_rows)} validation; {truncated + v_truncated} truncated to {cfg.ctx_len} tokens; "
               f"{len(special)} special tokens, stop {cfg.stop!r}")
    return Prepared(plan, summary)


def _tokenise(cfg: TrainConfig, model_dir: str, train: DataFile, valid: DataFile, tok_dir: Path) -> token_cache.Tokenised:
    """The tokenizer with cfg's special tokens, saved to tok_dir for the workers; every record
    checked (InputError on the first that does not tokenise whole) and tokenised."""
    import transformers

    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    add_tokens(tokenizer, cfg.special_tokens)
    train_pieces = check_tokens(tokenizer, cfg.special_tokens, train.records, train.name)
    valid_pieces = check_tokens(tokenizer, cfg.special_tokens, valid.records, valid.name)
    stop_id = tokenizer.convert_tokens_to_ids(cfg.stop) if cfg.stop else None
    if cfg.stop and (stop_id is None or stop_id == tokenizer.unk_token_id):
        raise InputError(f"stop token {cfg.stop!r} is not in the tokenizer (add it with --special-tokens)")
    train_rows, truncated = tokenize_records(train.records, tokenizer, cfg.ctx_len, cfg.loss_on, train_pieces)
    valid_rows, v_truncated = tokenize_records(valid.records, tokenizer, cfg.ctx_len, cfg.loss_on, valid_pieces)
    shutil.rmtree(tok_dir, ignore_errors=True)
    tokenizer.save_pretrained(tok_dir)
    return token_cache.Tokenised(train_rows, truncated, valid_rows, v_truncated, len(tokenizer), stop_id)


def _apply_recipe(cfg: TrainConfig, config, params: int, gpu: bool, tokens: int) -> tuple[TrainConfig, Recipe]:
    """lr, epochs, batch_tokens and warmup: as given, or by the default recipe (ft_train.recipe),
    the batch within what fits (plan.memory_fits: on a GPU the model's state and the batch's
    activations; data.default_batch_tokens halves the GPU budget until they fit; the CPU budget).
    A given batch (--batch-tokens, --batch-size) that would not fit a GPU is split into micro-batches
    that do (plan.split_to_fit: more grad_accum, the same tokens a step). `config`, `params`: model_shape's."""
    fits = memory_fits(cfg, config, params, gpu)
    given = bool(cfg.batch_tokens or cfg.batch_size)
    cap = cfg.batch_tokens or default_batch_tokens(gpu, fits, floor=cfg.ctx_len)
    chosen = recipe.choose(params=params, tokens_per_epoch=tokens, batch_cap=cap, lr=cfg.lr, epochs=cfg.epochs,
                           batch_tokens=cfg.batch_tokens or None, warmup=cfg.warmup,
                           batch_size=cfg.batch_size, lr_rule=cfg.lr_rule)
    cfg = replace(cfg, lr=chosen.lr, epochs=chosen.epochs, batch_tokens=chosen.batch_tokens, warmup=chosen.warmup)
    if given:
        cfg, k = split_to_fit(cfg, fits)
        if k > 1:
            chosen = replace(chosen, micro_batches=k, micro=cfg.batch_size or cfg.batch_tokens)
    return cfg, chosen


def layout_choice(cfg: TrainConfig, gpu: bool) -> TrainConfig:
    """--layout auto resolved: flat on a GPU in bf16 (ft_train.flat: no padding; its attention is
    flash's variable-length kernel, which needs 16-bit inputs), group elsewhere (the CPU, fp32)."""
    if cfg.layout != "auto":
        return cfg
    return replace(cfg, layout="flat" if gpu and uses_bf16(cfg, gpu) else "group")


def graphs_choice(cfg: TrainConfig, zero, gpu: bool) -> TrainConfig:
    """--cuda-graphs resolved to on or off (ft_train.step_graphs). They need one CUDA worker at plain
    ZeRO-0 in bf16 (FlatMaster) and the flat or group layout (fixed shapes, no attention mask: no
    host sync in the step); auto turns them on wherever that holds, on refuses a run where it does
    not. On, the group layout's widths are rounded up to step_graphs.WIDTH_MULTIPLE unless
    --pad-multiple is given, so a run has a handful of shapes (the flat layout has one)."""
    if cfg.cuda_graphs == "off":
        return cfg
    why_not = next((reason for reason, blocked in (
        ("a GPU", not gpu), ("one worker", cfg.workers > 1), ("plain ZeRO-0", zero.deepspeed),
        ("bf16", not zero.bf16), ("the flat or group layout", cfg.layout not in ("flat", "group")),
        ("no gradient checkpointing", cfg.gradient_checkpointing)) if blocked), None)
    if why_not:
        if cfg.cuda_graphs == "on":
            raise UsageError(f"--cuda-graphs on needs {why_not}")
        return replace(cfg, cuda_graphs="off")
    from ft_train.step_graphs import WIDTH_MULTIPLE

    multiple = cfg.pad_multiple if cfg.pad_multiple > 1 or cfg.layout != "group" else WIDTH_MULTIPLE
    return replace(cfg, cuda_graphs="on", pad_multiple=multiple)


# --compile auto's threshold, in training tokens (all epochs): where a compile with inductor's cache
# empty (a first run of a model on a machine) repays itself. On one H100 (2026-12-06,
# docs/benchmarks.md, "The optimizer step and the loss compiled too", "The cold compile at 1.5B")
# the compiled blocks, loss and optimizer step saved 4.0 us a token at 135M (a graphed ViGGO epoch
# 3.07 -> 1.63 s) and 12.9-14.1 us at 1.5B (154 -> 103 ms a 4,096-token step; a ViGGO epoch 14.0 ->
# 9.4 s); the cold compile cost a 135M run's first epoch 10.5 s (2.2 s warm) and a 1.5B run's 64 s
# (phase Q15c: ViGGO's first epoch 79.3 s against 14.9 eager, 98.1 s of training against 42.8 s
# eager; the SQL and GSM8K runs after it, with the cache warm, trained in 52.6 and 47.7 s against
# 65.6 and 56.1). Break-even: about 2.6M tokens at 135M, 4.9M at 1.5B; so the threshold is 3M at
# 135M, rising as (parameters / 135M)^0.2 (5M at 1.5B; 4.1M at 0.63B, between the measured sizes).
COMPILE_MIN_TOKENS = 3_000_000
COMPILE_REF_PARAMS = 135_000_000
COMPILE_SIZE_EXPONENT = 0.2


def compile_min_tokens(params: int) -> int:
    """The fewest training tokens for which --compile auto compiles a model of `params` parameters."""
    return int(COMPILE_MIN_TOKENS * max(1.0, params / COMPILE_REF_PARAMS) ** COMPILE_SIZE_EXPONENT)


def compile_choice(cfg: TrainConfig, zero, tokens: int, params: int = COMPILE_REF_PARAMS) -> TrainConfig:
    """--compile resolved to on or off, for a run that trains a model of `params` parameters on
    `tokens` tokens in all. auto: on where the steps replay from CUDA graphs (one CUDA worker at
    ZeRO-0: graphs_choice has run) and there are enough tokens to repay the compile
    (compile_min_tokens); off where inductor cannot compile for the GPU.
    Only the plain engine compiles: under DeepSpeed `on` is said to be off, in one line."""
    value = {True: "on", False: "off"}.get(cfg.compile, cfg.compile)  # a bool in manifests before 2026-12-06
    if value == "on" and zero.deepspeed:
        log(f"ft-train: --compile compiles the plain engine's blocks (ZeRO-0); DeepSpeed ZeRO-{zero.stage} "
            "trains them eagerly", cfg.quiet)
        value = "off"
    if value == "auto":
        worth = cfg.cuda_graphs == "on" and tokens >= compile_min_tokens(params)
        value = "on" if worth and _can_compile_for_gpu() else "off"
    return replace(cfg, compile=value)


def compile_failed_line(timing: dict) -> str:
    """The run's closing line for a compile that failed (the manifest's timing): the blocks' (then
    everything trained eagerly), or the loss's or the optimizer step's alone (the blocks compiled)."""
    part = timing.get("compile_failed_in", "the transformer blocks")
    after = "they trained eagerly" if part == "the transformer blocks" else "it ran eagerly"
    return f"ft-train: compiling {part} failed ({timing['compile_failed']}); {after}"


def _can_compile_for_gpu() -> bool:
    """Inductor writes triton kernels, and triton builds its launcher with the C compiler: a run
    left to auto must not fail its first step for want of either."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None and any(
        (os.environ.get("CC"), shutil.which("cc"), shutil.which("gcc"), shutil.which("clang")))


def _selection(cfg: TrainConfig, valid: list[dict], gpu: bool) -> tuple[str, list[dict]]:
    """--select-by resolved (accuracy or ppl) and, for accuracy, the validation sample to generate on."""
    if cfg.select_by == "ppl" or (cfg.select_by == "auto" and not gpu):
        return "ppl", []
    from ft_train.valid_accuracy import checker_class, sample

    if checker_class(valid) is None:  # the class only: SQL's checker would start a worker process
        if cfg.select_by == "accuracy":
            raise UsageError("--select-by accuracy needs ft-score installed and validation records of one task "
                             "that has a checker (their 'task' key)")
        return "ppl", []
    return "accuracy", sample(valid, cfg.eval_samples, cfg.seed)


def train(cfg: TrainConfig) -> dict:
    """Train; return {"best": path, "best_val_ppl": ..., "epochs": ...}."""
    marks = {"start": _process_start(), "imported": time.time()}  # wall-clock marks for the manifest's "timing"
    out = Path(cfg.out_dir)
    made = _first_missing(out) or _first_missing(out / ".work")  # what to remove if prepare fails
    out.mkdir(parents=True, exist_ok=True)
    try:
        prepared = prepare(replace(cfg, out_dir=str(out.resolve())), marks)
    except BaseException:
        # Bad input fails here, before training: leave no empty OUT_DIR (or .work) behind.
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    marks["prepare"] = time.time()
    plan = prepared.plan
    cfg = plan.cfg
    # After prepare, so that bad input fails before torch is imported to look for a GPU; before the
    # workers, which import DeepSpeed: without a GPU it warns on import unless told the accelerator.
    if plan.device != "cuda":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    log(f"ft-train: {prepared.summary}", cfg.quiet)
    log(f"ft-train: plan: {plan.recipe['line']}; {_engine_words(plan)}; best checkpoint by "
        f"{'accuracy on ' + str(len(plan.eval_records)) + ' validation records' if plan.eval_records else 'perplexity'}",
        cfg.quiet)
    if cfg.dry_run:  # the plan, and nothing left behind: what this run made, or the tokenizer copy
        shutil.rmtree(made if made is not None else Path(plan.tokenizer_dir), ignore_errors=True)
        return {"dry_run": True, **plan.resolved(), "data": plan.data}
    resumed_at = None
    if cfg.resume:
        info = checkpoint.latest_state(out)
        resumed_at = info["step"]
        log(f"ft-train: resumed at step {resumed_at} (epoch {info['epoch'] + 1}, batch {info['batch']})", cfg.quiet)
    else:
        (out / "metrics.jsonl").unlink(missing_ok=True)

    run_workers(plan, resumed_at, marks)

    man_path = out / "ft-train.json"
    if not man_path.is_file():
        raise FtError("training ended without writing a checkpoint")
    man = json.loads(man_path.read_text())
    best = man["best"]
    worker_marks = _read_json(out / ".work" / manifest.WORKER_MARKS)
    shutil.rmtree(out / ".work", ignore_errors=True)  # the tokenizer copy and Ray's run folder
    marks["exit"] = time.time()
    man["timing"] = manifest.timing(marks, worker_marks)
    with atomic_write(man_path) as fh:  # amended after the workers: the checkpoints' copies have no timing
        fh.write(json.dumps(man, indent=2) + "\n")
    t = man["timing"]
    if t.get("cuda_graphs", {}).get("failed"):
        log(f"ft-train: CUDA graphs went off during the run ({t['cuda_graphs']['failed']}); the rest trained eagerly",
            cfg.quiet)
    if t.get("compile_failed"):
        log(compile_failed_line(t), cfg.quiet)
    result = {"best": str(Path(cfg.out_dir) / best["path"]), "best_val_ppl": best["val_ppl"],
              "epochs": len(man["epochs"])}
    if "val_accuracy" in best:
        result["best_val_accuracy"] = best["val_accuracy"]
    accuracy = f"val accuracy {100 * best['val_accuracy']:.1f}%, " if "val_accuracy" in best else ""
    log(f"ft-train: best: epoch {best['epoch']} ({accuracy}val ppl {best['val_ppl']:.3f}) -> {result['best']} "
        f"({t['start_to_first_step_s']:.0f} s to the first step, {t['last_step_to_exit_s']:.0f} s after the last)",
        cfg.quiet)
    return result


def _process_start() -> float:
    """When this command started (its process's creation time), so that the interpreter's start
    and the imports before train() count too; now, where that cannot be read. On Linux from
    /proc/self/stat's start time (clock ticks since boot) against the boot-time clock, to 10 ms:
    psutil's create_time adds it to a boot time read in whole seconds, up to 1 s early."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except Exception:  # noqa: BLE001 - not Linux: psutil's
        pass
    try:
        import psutil  # Ray's dependency

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - a mark, not worth failing for
        return time.time()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _engine_words(plan: Plan) -> str:
    z = plan.zero
    engine = f"DeepSpeed ZeRO-{z.stage}" if z.deepspeed else "plain PyTorch (ZeRO-0)"
    offload = f", offload {z.offload}" if z.offload != "none" else ""
    graphs = ", CUDA graphs" if plan.cfg.cuda_graphs == "on" else ""
    compiled = ", compiled blocks" if plan.cfg.compile == "on" else ""
    flat = ", flat batches (no padding)" if plan.cfg.layout == "flat" else ""
    return (f"{engine}{offload}, {'bf16' if z.bf16 else 'fp32'}{flat}{graphs}{compiled}, "
            f"{plan.cfg.workers} {plan.device} worker(s)")


def _first_missing(path: Path) -> Path | None:
    """The outermost of `path` and its parents that does not exist yet (None: path exists)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def run_workers(plan: Plan, resumed_at: int | None = None, marks: dict | None = None) -> None:
    """Run worker.train_loop_per_worker(plan) on cfg.workers Ray Train workers. The terminal
    shows only ft-train's lines meanwhile; Ray's, DeepSpeed's and the workers' own output goes
    to OUT_DIR/ft-train.log (console.py; -v shows it instead)."""
    cfg, use_gpu = plan.cfg, plan.device == "cuda"
    if use_gpu and not cfg.address:  # else Ray would wait for GPUs that never come
        import torch

        if torch.cuda.device_count() < cfg.workers:
            raise UsageError(f"--workers {cfg.workers} needs {cfg.workers} GPUs; this machine has "
                             f"{torch.cuda.device_count()} (use --device cpu, or fewer workers)")
    out = Path(cfg.out_dir)
    # The learning curve is drawn here, in the driver, which waits idle: as soon as the last epoch's
    # metrics are in, while a worker writes the last checkpoint and Ray shuts down.
    plotter = threading.Thread(target=plot_curve, args=(out / "metrics.jsonl", out / "curve.png"),
                               name="ft-train-plot")
    with Console(out, quiet=cfg.quiet, verbose=verbose()) as console:
        shown = _metric_lines(out / "metrics.jsonl", resumed_at)
        watcher = MetricsWatcher(out / "metrics.jsonl", console, plan.total_steps, cfg.epochs, shown,
                                 on_last_epoch=plotter.start)
        watcher.start()
        try:
            fit_on_ray(plan, {} if marks is None else marks)
        except Exception as exc:  # Ray wraps the worker's exception; show its last line
            raise FtError(f"training failed: {_last_line(exc)} (the whole log: {console.log_path})") from exc
        finally:
            watcher.stop()
        if plotter.ident is None:  # no last epoch row seen (a resume after it was written)
            plotter.start()
        plotter.join()


def _metric_lines(path: Path, resumed_at: int | None) -> int:
    """metrics.jsonl's lines already shown: none, or on a resume those the worker keeps (step <= the state's)."""
    if resumed_at is None or not path.is_file():
        return 0
    rows = read_records(str(path))
    return sum(1 for r in rows if isinstance(r, dict) and r.get("step", 0) <= resumed_at)


def _uses_gpu(cfg: TrainConfig) -> bool:
    return cfg.device == "cuda" or (cfg.device == "auto" and _has_gpu())


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _last_line(exc: BaseException) -> str:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        exc = next(iter(failures.values()))
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__

"""The plan: everything the driver decides, handed whole to every Ray Train worker.

The driver builds one `Plan` (driver.prepare) and the workers only carry it out: they
take their rank's share of each epoch's batches (data.shard) and build the engine
the plan names. Nothing here is decided twice. It is plain data (dataclasses, lists,
dicts), so Ray ships it through its object store to workers on any node; the batches
refer to the same row dicts, which pickle stores once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ft_train.config import TrainConfig
from ft_train.data import make_batches, rows_per_batch, shard, tokens_per_batch
from ft_train.tokens import embedding_rows

if TYPE_CHECKING:
    from ft_train.flat import FlatShape

Batch = list  # a batch: a list of sequences, a sequence a list of token rows (see data.make_batches)


@dataclass(frozen=True)
class Zero:
    """How the workers train: ZeRO stage, CPU offload, dtype (see engine.choose_zero)."""

    stage: int
    offload: str  # none, optimizer or all
    bf16: bool
    deepspeed: bool  # False: plain PyTorch (ZeRO-0, DDP across workers)


@dataclass(frozen=True)
class Plan:
    cfg: TrainConfig  # resolved: model_path, special_tokens, stop and batch_tokens filled
    tokenizer_dir: str  # the tokenizer with the special tokens added (OUT_DIR/.work/tokenizer)
    stop_id: int | None  # the stop token's id: the checkpoint's first eos
    device: str  # cuda or cpu, for every worker
    zero: Zero
    train_batches: list[list[Batch]]  # every epoch's batches, in order, before sharding by rank
    valid_batches: list[Batch]
    steps_per_epoch: int  # optimizer steps per worker in one epoch
    parent: dict  # the manifest's parent, data and lineage (manifest.build)
    data: dict
    lineage: list[dict]
    recipe: dict = field(default_factory=dict)  # what the default recipe chose (ft_train.recipe), for the manifest
    eval_records: list[dict] = field(default_factory=list)  # --select-by accuracy: the validation sample
    flat: FlatShape | None = None  # the flat layout's one batch shape (ft_train.flat)

    @property
    def select_by(self) -> tuple[str, str]:
        """The metric that picks the best epoch, and which way is better."""
        return ("val_accuracy", "max") if self.cfg.select_by == "accuracy" else ("val_ppl", "min")

    @property
    def in_process(self) -> bool:
        """One worker in the driver's own process (Ray Train's local mode): no Ray cluster, no
        controller or worker process to start and import torch in, seconds sooner to the first step."""
        cfg = self.cfg
        return cfg.launch == "local" or (cfg.launch == "auto" and cfg.workers == 1 and not cfg.address)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    def resolved(self) -> dict:
        """The manifest's `resolved`: what auto became."""
        return {"zero": self.zero.stage, "offload": self.zero.offload,
                "dtype": "bfloat16" if self.zero.bf16 else "float32", "workers": self.cfg.workers,
                "device": self.device, "deepspeed": self.zero.deepspeed,
                "launch": "local" if self.in_process else "ray",
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                "select_by": self.cfg.select_by, "cuda_graphs": self.cfg.cuda_graphs, "compile": self.cfg.compile,
                "layout": self.cfg.layout,
                **({"flat_shape": vars(self.flat)} if self.flat else {}),
                "recipe": self.recipe}


def epoch_batches(cfg: TrainConfig, rows: list[dict]) -> list[list[Batch]]:
    """Each epoch's batches, in a seeded order (seed * 1000 + epoch)."""
    return [make_batches(rows, cfg.layout, cfg.batch_size, cfg.batch_tokens, cfg.ctx_len, seed=cfg.seed * 1000 + e,
                         multiple=cfg.pad_multiple)
            for e in range(cfg.epochs)]


def steps_per_epoch(cfg: TrainConfig, first_epoch: list[Batch]) -> int:
    """Optimizer steps per epoch, from the first epoch's batches. Every rank gets the same
    count; later epochs may cut a batch more or less, and the LR schedule is set by this one."""
    return len(shard(first_epoch, 0, cfg.workers, cfg.grad_accum)) // cfg.grad_accum


def uses_bf16(cfg: TrainConfig, gpu: bool) -> bool:
    return cfg.dtype == "bf16" or (cfg.dtype == "auto" and gpu)


ACTIVATION_SHARE = 0.6  # of a GPU's memory, for a batch's activations where ZeRO-0 cannot hold the state


def memory_fits(cfg: TrainConfig, config, n_params: int, gpu: bool) -> Callable[[int], bool]:
    """fits(tokens): a micro-batch of `tokens` fits one worker's GPU (on a CPU, always: no GPU memory
    to fit). It fits when ZeRO-0's state (engine.zero0_state) plus its activations
    (engine.activation_estimate) take at most engine.ZERO_BUDGET (85%) of the GPU's memory, as --zero
    auto first tries. Where the state leaves no room for even one ctx_len sequence, ZeRO-3 and offload
    will take the state off the GPU (choose_zero decides), so only the activations count, within
    ACTIVATION_SHARE (60%). `config` and `n_params` are model_shape's."""
    if not gpu:
        return lambda tokens: True
    from ft_train.engine import ZERO_BUDGET, activation_estimate, zero0_state

    bf16, memory = uses_bf16(cfg, gpu), gpu_memory()

    def activations(tokens: int) -> int:
        return activation_estimate(config, tokens, bf16, cfg.gradient_checkpointing, cfg.fused_loss)

    room = ZERO_BUDGET * memory - zero0_state(n_params, bf16)
    if activations(cfg.ctx_len) > room:
        room = ACTIVATION_SHARE * memory
    return lambda tokens: activations(tokens) <= room


def split_to_fit(cfg: TrainConfig, fits: Callable[[int], bool]) -> tuple[TrainConfig, int]:
    """A batch that would not fit (`fits`: memory_fits) as k micro-batches that do, and grad_accum k,
    so an optimizer step still takes the batch asked for (--batch-size sequences; --batch-tokens
    tokens, or rows for pack and pad): the fewest micro-batches that fit, or up to twice as many
    where that divides the batch exactly (else the batch divided by k, rounded up). (cfg, k); k = 1:
    cfg as it was. A given --grad-accum is the user's own split: left alone."""
    if cfg.grad_accum != 1 or fits(tokens_per_batch(cfg)):
        return cfg, 1
    if cfg.batch_size:
        units, unit = cfg.batch_size, cfg.ctx_len  # sequences, each up to ctx_len tokens
    elif cfg.layout in ("group", "flat"):
        units, unit = cfg.batch_tokens, 1  # tokens (group: padded)
    else:
        units, unit = rows_per_batch(None, cfg.batch_tokens, cfg.ctx_len), cfg.ctx_len  # rows
    micro, k = units, 1
    while micro * unit > cfg.ctx_len:  # one sequence is the least a micro-batch holds
        k += 1
        if -(-units // k) < micro:  # a smaller micro-batch (else k only adds one more of the same size)
            micro = -(-units // k)
            if fits(max(micro * unit, cfg.ctx_len)):
                break
    k = -(-units // micro)
    # k micro-batches of `micro` may hold a little more than asked; a few more that divide it exactly
    # (up to twice as many) keep the step's batch as given
    k = next((j for j in range(k, 2 * k) if units % j == 0), k)
    if units % k == 0:
        micro = units // k
    if k == 1:
        return cfg, 1
    if cfg.batch_size:
        return replace(cfg, batch_size=micro, grad_accum=k), k
    return replace(cfg, batch_tokens=micro * unit, grad_accum=k), k


def choose_zero_for(cfg: TrainConfig, config, n_params: int, gpu: bool) -> Zero:
    """--zero/--offload/--dtype resolved for the workers' device (cfg.batch_tokens already set);
    `config` and `n_params` are model_shape's."""
    from ft_train.engine import activation_estimate, choose_zero

    bf16 = uses_bf16(cfg, gpu)
    if cfg.zero == "auto":
        acts = activation_estimate(config, tokens_per_batch(cfg), bf16, cfg.gradient_checkpointing, cfg.fused_loss)
        stage, offload = choose_zero(n_params, acts, cfg.workers, worker_memory(gpu), not gpu, bf16)
        if cfg.offload not in ("auto", "none"):
            stage, offload = 3, cfg.offload
    else:
        stage, offload = int(cfg.zero), ("none" if cfg.offload == "auto" else cfg.offload)
    return Zero(stage, offload, bf16, deepspeed=stage > 0 or bool(cfg.ds_config))


def model_shape(model_path: str, vocab_size: int):
    """(config, parameter count) of the model with its embeddings grown to vocab_size,
    built on the meta device: no weights are read."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # the terminal shows ft-train's lines only
    config = transformers.AutoConfig.from_pretrained(model_path)
    config.vocab_size = embedding_rows(vocab_size, config.vocab_size)  # as tokens.resize_embeddings grows it
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return config, sum(p.numel() for p in model.parameters())


def worker_memory(gpu: bool) -> int:
    """Bytes one worker's device has: this machine's first GPU (80 GiB when the GPUs are
    elsewhere), or on the CPU this machine's RAM."""
    if gpu:
        return gpu_memory()
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 16 << 30


def gpu_memory() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return 80 << 30

"""The plain command's recipe: learning rate, epochs, batch and warmup, chosen from the model's
size and the data for every one of them the user did not set.

Why these rules (measurements: the ft-train README, "The default recipe"):

- Learning rate from the model's size and from how new the task is to it: the model's mean loss
  on the training targets before any update (measured by the workers on the first PROBE_BATCHES
  batches, so the plan says "from the loss"). lr = 2e-4 at 135M and loss 4.24 (SmolLM2 on ViGGO,
  where 2e-4 beat 1e-4), times (135M / params)^0.4 and (loss / 4.24)^2. At 1.78B
  (Qwen2.5-Coder-1.5B) the best measured lrs of the three tasks lie on that square: GSM8K (loss
  1.13) 5e-6 beat 1e-5 and 2.9e-5; SQL (1.58) 1e-5 beat 2.9e-5; ViGGO (2.66) 2.9e-5 beat 1e-5 and
  5e-5 diverged. The rule gives 5.1e-6, 1.0e-5 and 2.8e-5. A task the model already does well
  (low loss) wants small steps that keep what it knows; a new output format wants larger ones.
  The size exponent, 0.4, is close to 1/width (576 -> 1,536 hidden units). Where it misses: at
  0.5B (the AWQ-converted model, loss 1.76 on SQL) it gives 1.9e-5, where 1e-5 beat 3.3e-5.
- Epochs from the data's size in tokens: a small set is seen more often, a large one less
  (TOKENS_REF tokens seen at REF_PARAMS, fewer for larger models, which learn a task in fewer
  passes), within [1, 10] (10 is the case study's). At 135M that gives the epochs the tuned runs
  used: ViGGO 10, SQL 2, GSM8K 3.
- The batch from the steps it gives: more optimizer steps beat bigger batches on these small
  sets (ViGGO validation at 135M, lr 2e-4: 120 steps 92.9%, 160 94.1%, 240 97.2%, 890 98.0%;
  the tuned SQL and GSM8K runs took 600-1,250), so the token budget is the whole run's tokens
  over TARGET_STEPS, never below MIN_BATCH_TOKENS (a GPU step below that costs as much as a
  larger one) nor above what fits.
- Warmup: 3% of the steps, and at least WARMUP_MIN_STEPS of them (at most 10%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REF_PARAMS = 135e6  # SmolLM2-135M, where the rule's constants were measured
LR_REF, LOSS_REF = 2e-4, 4.24  # the lr at REF_PARAMS for a task at this loss (SmolLM2 on ViGGO)
SIZE_EXPONENT, LOSS_EXPONENT = 0.4, 2.0  # fitted to the three tasks at 1.78B (module doc)
LR_MIN, LR_MAX = 1e-6, 5e-4
PROBE_BATCHES = 8  # training batches the loss before training is measured on (ft_train.worker)
TOKENS_REF = 4_000_000
TARGET_STEPS = 600
MIN_BATCH_TOKENS = 4096
WARMUP_SHARE, WARMUP_MIN_STEPS, WARMUP_MAX_SHARE = 0.03, 10, 0.1


@dataclass(frozen=True)
class Recipe:
    """What the run trains with, and which of it the rule chose (the rest the user gave)."""

    lr: float
    epochs: int
    batch_tokens: int
    warmup: float = WARMUP_SHARE
    chosen: tuple[str, ...] = ()
    params: int = 0  # what the rules were given: the model's parameters, the data's tokens per epoch
    tokens_per_epoch: int = 0
    batch_size: int | None = None  # --batch-size: batches of this many sequences (batch_tokens unused)
    micro_batches: int = 1  # a given batch too large for the GPU, split into this many (plan.split_to_fit)
    micro: int = 0  # ... of this many tokens (sequences with batch_size)

    def line(self, steps_per_epoch: int) -> str:
        """One line for the terminal and the manifest: each value, and what chose it."""
        def why(name: str, reason: str) -> str:
            return f" ({reason})" if name in self.chosen else " (given)"

        params, tokens = self.params, self.tokens_per_epoch

        lr = (f"lr from the loss before training ({params / 1e6:,.0f}M parameters)" if "lr" in self.chosen
              else f"lr {self.lr:.1e} (given)")
        return (f"{lr}, "
                f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}{why('epochs', f'{tokens:,} tokens/epoch')}, "
                f"{self._batches(why('batch_tokens', f'~{TARGET_STEPS} steps'))}: "
                f"{steps_per_epoch} steps/epoch, {steps_per_epoch * self.epochs} in all; "
                f"warmup {self.warmup:.0%}, cosine to lr/10")


    def _batches(self, why: str) -> str:
        if self.batch_size:
            batches = f"batches of {self.batch_size} sequences (given)"
        else:
            batches = f"batches of {self.batch_tokens:,} tokens{why}"
        if self.micro_batches > 1:
            batches += f" as {self.micro_batches} micro-batches of {self.micro:,} (memory)"
        return batches


def rule_lr(params: int, loss: float = LOSS_REF) -> float:
    """The default lr for a model of `params` parameters whose mean loss on the task's targets
    before training is `loss` (the plan's value before the workers measure it: at LOSS_REF)."""
    if not math.isfinite(loss) or loss <= 0:
        loss = LOSS_REF
    lr = LR_REF * (REF_PARAMS / max(params, 1)) ** SIZE_EXPONENT * (loss / LOSS_REF) ** LOSS_EXPONENT
    return min(LR_MAX, max(LR_MIN, lr))


def rule_epochs(tokens_per_epoch: int, params: int) -> int:
    budget = TOKENS_REF * min(1.0, (REF_PARAMS / max(params, 1)) ** 0.5)
    return min(10, max(1, round(budget / max(tokens_per_epoch, 1))))


def rule_batch_tokens(tokens_per_epoch: int, epochs: int, cap: int, floor: int = MIN_BATCH_TOKENS) -> int:
    """The whole run's tokens over TARGET_STEPS, in [floor, cap], a multiple of 512."""
    tokens = tokens_per_epoch * epochs // TARGET_STEPS
    tokens = -(-tokens // 512) * 512
    return max(min(floor, cap), min(cap, tokens))


def rule_warmup(total_steps: int) -> float:
    share = max(WARMUP_SHARE, WARMUP_MIN_STEPS / max(total_steps, 1))
    return min(WARMUP_MAX_SHARE, share)


def choose(*, params: int, tokens_per_epoch: int, batch_cap: int, lr: float | None = None,
           epochs: int | None = None, batch_tokens: int | None = None, warmup: float | None = None,
           batch_size: int | None = None) -> Recipe:
    """The recipe: each of lr, epochs, batch_tokens, warmup as given, or by its rule when None.
    With `batch_size` (--batch-size) batches hold that many sequences, and batch_tokens only
    bounds memory (the cap)."""
    chosen = []
    if lr is None:
        lr, chosen = rule_lr(params), chosen + ["lr"]
    if epochs is None:
        epochs, chosen = rule_epochs(tokens_per_epoch, params), chosen + ["epochs"]
    if batch_tokens is None:
        if batch_size:
            batch_tokens = batch_cap
        else:
            batch_tokens, chosen = rule_batch_tokens(tokens_per_epoch, epochs, batch_cap), chosen + ["batch_tokens"]
    if warmup is None:
        steps = max(1, tokens_per_epoch * epochs // max(batch_tokens, 1))
        warmup, chosen = rule_warmup(steps), chosen + ["warmup"]
    return Recipe(lr=lr, epochs=epochs, batch_tokens=batch_tokens, warmup=warmup, chosen=tuple(chosen), params=params,
                  tokens_per_epoch=tokens_per_epoch, batch_size=batch_size)

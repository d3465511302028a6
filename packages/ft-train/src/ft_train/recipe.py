"""The plain command's recipe: learning rate, epochs, batch and warmup, chosen from the model's
size and the data for every one of them the user did not set.

Why these rules (measurements: the ft-train README, "The default recipe"):

- Learning rate (--lr-rule auto, the default: the loss rule, measured where it can move the lr)
  reads how new the task is to the model: its mean loss on the training targets before any
  update (the workers measure it on the first PROBE_BATCHES training batches).
  lr = 2e-4 x (135M / params)^0.5 x (loss / 4.19)^e, within [LOSS_LR_MIN, LR_MAX]: 2e-4 at
  SmolLM2-135M on ViGGO (loss 4.19), the exponents a least-squares fit (0.50, 2.08) to the best
  lrs measured at 0.63B and 1.78B (GSM8K 5e-6, SQL 1e-5, ViGGO 2.9e-5 at 1.78B; SQL 1e-5 at
  0.63B). Trained with on one H100 (the ft-train README, "The default lr"): at 1.78B GSM8K
  64.0% at its 4.4e-6 against the size rule's 1e-5 at 59.4% (p = 0.014), ViGGO 97.3% against
  96.4%. At 135M the loss's lower rates lost, paired on one machine: GSM8K 3.5%
  against 8.8% at 2e-4 (p = 1e-6), Spider 48.6% against 58.2% (p = 9e-8), WikiSQL 85.2% both; so
  the loss exponent e is 2 from 0.63B up and fades to 0 at 135M (loss_exponent): 2e-4 there.
  Where e is 0 the measurement cannot change the lr, so auto skips it (55 s of a 135M CPU run's
  start, ~0.4 s on an H100); --lr-rule loss measures anyway, to record the loss.
- --lr-rule size, the rule before: the lr falls with model size alone, as a power law from 2e-4 at
  135M (it beat 1e-4 on ViGGO) to 1e-5 at 0.63B (Qwen2.5-Coder-0.5B as loaded), and stays at 1e-5
  above. At 0.5B, 1e-5 beat 3.3e-5 on SQL (Spider 75.0% against 69.4%, WikiSQL 89.2% against
  88.0%); at 1.78B 1e-5 beat 2.9e-5 on SQL (Spider 80.2% against 76.8%) and GSM8K (59.4% against
  49.6%) and lost on ViGGO (96.4% against 98.2%; 5e-5 diverged): one rate cannot serve all three.
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
LR_REF = 2e-4
LARGE_PARAMS, LR_LARGE = 630_174_592, 1e-5  # the size rule's second point: Qwen2.5-Coder-0.5B-Instruct
LR_EXPONENT = math.log(LR_REF / LR_LARGE) / math.log(LARGE_PARAMS / REF_PARAMS)
LR_MIN, LR_MAX = LR_LARGE, 5e-4  # held at 1e-5 from LARGE_PARAMS up (1.78B measured too)
LOSS_REF = 4.19  # --lr-rule loss: LR_REF at REF_PARAMS for a task at this loss (SmolLM2 on ViGGO)
SIZE_EXPONENT, LOSS_EXPONENT = 0.5, 2.0  # fitted to the best lrs measured at 0.63B and 1.78B (module doc)
LOSS_LR_MIN = 1e-6
PROBE_BATCHES = 8  # training batches the loss before training is measured on (ft_train.worker)
LR_RULES = ("auto", "loss", "size")
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
    # how a chosen lr is chosen (--lr-rule): "loss" leaves it to the workers, "auto" too where the loss moves it
    lr_rule: str = "size"

    @property
    def lr_from_loss(self) -> bool:
        """Whether the workers choose the lr, from the loss before training (no --lr; --lr-rule loss, or
        auto where the loss moves the lr: above 135M)."""
        measured = self.lr_rule == "loss" or (self.lr_rule == "auto" and loss_exponent(self.params) > 0)
        return "lr" in self.chosen and measured

    def line(self, steps_per_epoch: int) -> str:
        """One line for the terminal and the manifest: each value, and what chose it."""
        def why(name: str, reason: str) -> str:
            return f" ({reason})" if name in self.chosen else " (given)"

        params, tokens = self.params, self.tokens_per_epoch

        if self.lr_from_loss:
            lr = f"lr from the loss before training ({params / 1e6:,.0f}M parameters)"
        elif "lr" in self.chosen and self.lr_rule == "auto":
            lr = f"lr {self.lr:.1e} ({params / 1e6:.0f}M parameters: at this size the loss would not move it)"
        else:
            lr = f"lr {self.lr:.1e}{why('lr', f'{params / 1e6:.0f}M parameters')}"
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


def rule_lr(params: int) -> float:
    """--lr-rule size's lr: from the model's size alone (also the loss rule's, where no loss was measured)."""
    return min(LR_MAX, max(LR_MIN, LR_REF * (REF_PARAMS / max(params, 1)) ** LR_EXPONENT))


def loss_rule_lr(params: int, loss: float) -> float:
    """--lr-rule loss (the default): the lr for a model of `params` parameters whose mean loss on the task's
    training targets before any update is `loss` (none measured: the size rule's)."""
    if not math.isfinite(loss) or loss <= 0:
        return rule_lr(params)
    lr = LR_REF * (REF_PARAMS / max(params, 1)) ** SIZE_EXPONENT * (loss / LOSS_REF) ** loss_exponent(params)
    return min(LR_MAX, max(LOSS_LR_MIN, lr))


def loss_exponent(params: int) -> float:
    """How strongly the loss before training moves the lr: LOSS_EXPONENT from LARGE_PARAMS up (where
    it was fitted), fading log-linearly to 0 at REF_PARAMS and below, where 2e-4 beat the loss's
    lower rates on every task measured (module doc)."""
    share = math.log(max(params, REF_PARAMS) / REF_PARAMS) / math.log(LARGE_PARAMS / REF_PARAMS)
    return LOSS_EXPONENT * min(1.0, share)


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
           batch_size: int | None = None, lr_rule: str = "size") -> Recipe:
    """The recipe: each of lr, epochs, batch_tokens, warmup as given, or by its rule when None.
    With `batch_size` (--batch-size) batches hold that many sequences, and batch_tokens only
    bounds memory (the cap)."""
    chosen = []
    if lr is None:  # the loss rule's lr before any loss is measured: what auto trains at where the loss cannot move it
        lr, chosen = (rule_lr(params) if lr_rule == "size" else loss_rule_lr(params, LOSS_REF)), chosen + ["lr"]
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
                  tokens_per_epoch=tokens_per_epoch, batch_size=batch_size, lr_rule=lr_rule)

"""Plain-Python reference for `schedulers.greedy_lr`, written from the spec.

This follows the GreedyLR of Hugging Face transformers
(`transformers.optimization.GreedyLR.step`) decision by decision, expressed in
terms of a learning-rate *scale* (initial value 1), with the port's documented
deliberate differences:

* bounds are relative scales (`min_scale`, `max_scale`);
* `threshold_mode='rel'` is sign-correct: `best - threshold * |best|` in 'min'
  mode, `best + threshold * |best|` in 'max' mode (same as HF for best > 0);
* NaN/Inf values count as "not better" and never enter the smoothing window;
* `accumulation_size=k` averages k values (running mean) before a decision;
  a chunk containing a non-finite value decides as "not better".

It deliberately shares no code with the JAX implementation.  Everything runs
in Python floats (float64).
"""

from __future__ import annotations

import math


class GreedyLRReference:
  """Scalar, eager GreedyLR; `step(value)` returns the scale after the call."""

  def __init__(
    self,
    factor=0.95,
    patience=10,
    threshold=1e-6,
    threshold_mode="abs",
    cooldown=0,
    warmup=0,
    min_scale=0.1,
    max_scale=10.0,
    smooth=False,
    window_size=50,
    mode="min",
    reset_start=500,
    accumulation_size=1,
    *,
    eps=1e-8,
  ):
    if mode not in ("min", "max"):
      raise ValueError(f"mode {mode!r}")
    if threshold_mode not in ("abs", "rel"):
      raise ValueError(f"threshold_mode {threshold_mode!r}")
    if not 0.0 < factor < 1.0:
      raise ValueError(f"factor {factor!r}")
    self.factor = float(factor)
    self.patience = int(patience)
    self.threshold = float(threshold)
    self.threshold_mode = threshold_mode
    self.cooldown = int(cooldown)
    self.warmup = int(warmup)
    self.min_scale = float(min_scale)
    self.max_scale = float(max_scale)
    self.smooth = bool(smooth)
    self.window_size = int(window_size)
    self.mode = mode
    self.reset_start_original = int(reset_start)
    self.accumulation_size = int(accumulation_size)
    self.eps = float(eps)

    self.scale = 1.0
    self.best = math.inf if mode == "min" else -math.inf
    self.num_good = 0
    self.num_bad = 0
    self.cooldown_counter = 0
    self.warmup_counter = 0
    self.reset_start = self.reset_start_original
    self.window: list[float] = []  # oldest first, at most window_size values
    self.acc_values: list[float] = []  # values of the pending chunk
    self.acc_mean = 0.0  # running mean of the pending chunk
    # Introspection for tests.
    self.num_decisions = 0
    self.num_increases = 0
    self.num_decreases = 0
    self.num_resets = 0
    self.last_current = None  # value the last decision was taken on

  # -- pieces of the spec ----------------------------------------------------

  def is_better(self, current: float, best: float) -> bool:
    if not math.isfinite(current):
      return False
    if math.isinf(best):  # initial best: any finite value is a new best
      return (best > 0) if self.mode == "min" else (best < 0)
    if self.threshold_mode == "rel":
      margin = self.threshold * abs(best)
    else:
      margin = self.threshold
    if self.mode == "min":
      return current < best - margin
    return current > best + margin

  def _reset(self) -> None:
    self.scale = 1.0
    self.best = math.inf if self.mode == "min" else -math.inf
    self.num_good = 0
    self.num_bad = 0
    self.cooldown_counter = 0
    self.warmup_counter = 0
    self.reset_start = self.reset_start_original
    self.window = []
    self.num_resets += 1

  def _reduce(self) -> None:
    new = max(self.scale * self.factor, self.min_scale)
    if self.scale - new > self.eps:
      self.scale = new
    self.num_decreases += 1
    if self.scale <= self.min_scale:
      self.reset_start -= 1
      if self.reset_start <= 0:
        self._reset()

  def _increase(self) -> None:
    new = min(self.scale / self.factor, self.max_scale)
    if new - self.scale > self.eps:
      self.scale = new
    self.num_increases += 1
    self.reset_start = self.reset_start_original

  def decide(self, value: float) -> None:
    """One HF `step(metric)` on an (already accumulated) value."""
    self.num_decisions += 1
    current = float(value)
    if self.smooth and math.isfinite(current):
      self.window.append(current)
      if len(self.window) > self.window_size:
        self.window.pop(0)
      current = math.fsum(self.window) / len(self.window)
    self.last_current = current

    if self.cooldown_counter > 0:
      self.cooldown_counter -= 1
      self.num_bad = 0
      self.num_good = 0
    elif self.warmup_counter > 0:
      self.warmup_counter -= 1
      self.num_bad = 0
      self.num_good = 0
    else:
      if self.is_better(current, self.best):
        self.best = current
        self.num_bad = 0
        self.num_good += 1
      else:
        self.num_bad += 1
        self.num_good = 0
      if self.num_good > self.patience:
        self._increase()
        self.warmup_counter = self.warmup
        self.num_good = 0
      elif self.num_bad > self.patience:
        self._reduce()  # may reset
        self.cooldown_counter = self.cooldown  # as in HF: after the reset too
        self.num_bad = 0

  def step(self, value: float) -> float:
    """Feeds one value (one optimizer step); returns the scale afterwards."""
    value = float(value)
    self.acc_values.append(value)
    n = len(self.acc_values)
    self.acc_mean = self.acc_mean + (value - self.acc_mean) / n
    if n >= self.accumulation_size:
      if all(math.isfinite(v) for v in self.acc_values):
        chunk = self.acc_mean
      else:
        chunk = math.nan
      self.acc_values = []
      self.acc_mean = 0.0
      self.decide(chunk)
    return self.scale

  def run(self, values) -> list[float]:
    return [self.step(v) for v in values]

  def snapshot(self) -> dict:
    """State in the field names of `schedulers.GreedyLRState`."""
    return dict(
      scale=self.scale,
      best_value=self.best,
      num_good=self.num_good,
      num_bad=self.num_bad,
      cooldown_count=self.cooldown_counter,
      warmup_count=self.warmup_counter,
      reset_count=self.reset_start,
      acc_count=len(self.acc_values),
    )

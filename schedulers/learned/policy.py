"""A trained learning-rate policy: actor weights + the settings it was trained under.

`Policy` is what `schedulers.learned_schedule` deploys: the PPO actor's Flax
variables and a `PolicySpec` (network shape, and the `ControllerSpec` of the
environment: actions, decision interval, budget, scale bounds). `save_policy`
writes the spec as JSON and the weights as an orbax checkpoint (through
`common.checkpoint`); `load_policy` rebuilds the network from the spec and
restores the weights into it (shapes and dtypes checked).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from common import checkpoint, encoders
from schedulers.learned import transform

__all__ = ["Policy", "PolicySpec", "from_ppo", "load_policy", "save_policy"]

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}
_SPEC_FILE = "policy.json"


@dataclasses.dataclass(frozen=True)
class PolicySpec:
  """Static description of a policy (JSON-serialisable)."""

  hidden_sizes: tuple[int, ...]
  activation: str
  controller: transform.ControllerSpec

  def __post_init__(self):
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f"PolicySpec: activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}.")
    object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

  def to_json(self) -> dict[str, Any]:
    return {
      "hidden_sizes": list(self.hidden_sizes),
      "activation": self.activation,
      "controller": {**dataclasses.asdict(self.controller), "observation_size": transform.OBSERVATION_SIZE},
    }

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> PolicySpec:
    controller = dict(data["controller"])
    size = controller.pop("observation_size", transform.OBSERVATION_SIZE)
    if size != transform.OBSERVATION_SIZE:
      raise ValueError(f"policy observes {size} features; this version computes {transform.OBSERVATION_SIZE}.")
    controller["multipliers"] = tuple(controller["multipliers"])
    controller["scale_bounds"] = tuple(controller["scale_bounds"])
    return cls(
      hidden_sizes=tuple(data["hidden_sizes"]),
      activation=data["activation"],
      controller=transform.ControllerSpec(**controller),
    )


def _network(spec: PolicySpec) -> encoders.Network:
  """The actor's (init, apply); the same MLP `common.ppo` builds (init differs only in scale)."""
  return encoders.make_mlp(
    transform.OBSERVATION_SIZE,
    spec.hidden_sizes,
    len(spec.controller.multipliers),
    activation=_ACTIVATIONS[spec.activation],
  )


@dataclasses.dataclass(frozen=True)
class Policy:
  """Actor variables and their spec; `logits(obs)` scores the actions."""

  params: Any
  spec: PolicySpec

  def logits(self, obs: jax.Array) -> jax.Array:
    return _network(self.spec).apply(self.params, obs)

  def action(self, obs: jax.Array) -> jax.Array:
    """The deployed (argmax) action, int32."""
    return jnp.argmax(self.logits(obs), axis=-1).astype(jnp.int32)


def from_ppo(actor_params: Any, *, hidden_sizes, activation: str, controller: transform.ControllerSpec) -> Policy:
  """Wraps a `common.ppo` actor (`PPOState.params.policy`) trained in a `dnn_env` task."""
  return Policy(params=actor_params, spec=PolicySpec(tuple(hidden_sizes), activation, controller))


def save_policy(directory: str | pathlib.Path, policy: Policy) -> pathlib.Path:
  """Writes `policy.json` and the weights (orbax) under `directory`, replacing any earlier policy; returns it."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  staging = directory / "params.tmp"
  shutil.rmtree(staging, ignore_errors=True)
  with checkpoint.Checkpointer(staging, keep=1) as ckpt:
    ckpt.save(0, jax.device_get(policy.params), force=True)
  shutil.rmtree(directory / "params", ignore_errors=True)  # orbax keeps an existing step 0: replace it whole
  staging.replace(directory / "params")
  tmp = directory / (_SPEC_FILE + ".tmp")
  tmp.write_text(json.dumps(policy.spec.to_json(), indent=2, sort_keys=True) + "\n")
  tmp.replace(directory / _SPEC_FILE)
  return directory


def load_policy(directory: str | pathlib.Path) -> Policy:
  """Restores a policy written by `save_policy`.

  Raises:
    FileNotFoundError: no `policy.json` / weights under `directory`.
    common.checkpoint.CheckpointRestoreError: weights that do not fit the spec.
  """
  directory = pathlib.Path(directory)
  spec_path = directory / _SPEC_FILE
  if not spec_path.is_file():
    raise FileNotFoundError(f"no {_SPEC_FILE} in {directory} (write one with save_policy).")
  spec = PolicySpec.from_json(json.loads(spec_path.read_text()))
  target = _network(spec).init(jax.random.PRNGKey(0))
  with checkpoint.Checkpointer(directory / "params", keep=1) as ckpt:
    params, step = ckpt.restore_latest(target)
  if params is None:
    raise FileNotFoundError(f"no policy weights under {directory / 'params'}.")
  del step
  return Policy(params=params, spec=spec)

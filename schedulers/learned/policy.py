"""A trained learning-rate policy: actor weights + the settings it was trained under.

`Policy` is what `schedulers.learned_schedule` deploys: the PPO actor's
weights (the Flax variables `common.ppo` trains, as a nested dict) and a
`PolicySpec` (network shape, and the `ControllerSpec` of the environment:
actions, decision interval, budget, scale bounds).  `Policy.logits` runs the
actor MLP in plain JAX, so deploying a policy needs neither Flax nor orbax.

`save_policy` writes one file, `policy.npz` (NumPy's zip of arrays: the spec
as JSON and every weight); `load_policy` reads it back, checking every
weight's shape against the spec.  `shipped_policy()` loads the DNN policy
that ships with the package (trained on a digits MLP; what it does and does
not beat is in the package README)::

  from schedulers.learned import policy
  tx = optax.chain(optax.sgd(0.01, momentum=0.9), schedulers.learned_schedule(policy.shipped_policy()))
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from schedulers.learned import transform

__all__ = ["Policy", "PolicySpec", "from_ppo", "load_policy", "save_policy", "shipped_policy"]

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
POLICY_FILE = "policy.npz"
_SPEC_KEY = "spec.json"
_FORMAT_KEY = "format_version"
_FORMAT_VERSION = 1
# The policy committed with the DNN results, shipped as package data.
SHIPPED_POLICIES = {"dnn": ("results", "dnn", "policy", POLICY_FILE)}


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

  def weight_shapes(self) -> dict[str, tuple[int, ...]]:
    """`'params/hidden_<i>/{kernel,bias}'` -> shape: the Flax layout of `common.encoders.make_mlp`."""
    sizes = (transform.OBSERVATION_SIZE, *self.hidden_sizes, len(self.controller.multipliers))
    shapes = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      shapes[f"params/hidden_{i}/kernel"] = (fan_in, fan_out)
      shapes[f"params/hidden_{i}/bias"] = (fan_out,)
    return shapes


def _dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """`flax.linen.Dense` with default dtype and precision, operation for operation."""
  dtype = jnp.result_type(x, kernel, bias)
  x, kernel, bias = (jnp.asarray(a, dtype) for a in (x, kernel, bias))
  y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
  return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


@dataclasses.dataclass(frozen=True)
class Policy:
  """Actor variables and their spec; `logits(obs)` scores the actions."""

  params: Any
  spec: PolicySpec

  def logits(self, obs: jax.Array) -> jax.Array:
    """The actor MLP (`Dense -> activation` per hidden layer, linear output) on `obs` [..., 7]."""
    layers = self.params["params"]
    activation = _ACTIVATIONS[self.spec.activation]
    num_layers = len(self.spec.hidden_sizes) + 1
    x = obs
    for i in range(num_layers):
      x = _dense(x, layers[f"hidden_{i}"]["kernel"], layers[f"hidden_{i}"]["bias"])
      if i < num_layers - 1:
        x = activation(x)
    return x

  def action(self, obs: jax.Array) -> jax.Array:
    """The deployed (argmax) action, int32."""
    return jnp.argmax(self.logits(obs), axis=-1).astype(jnp.int32)


def from_ppo(actor_params: Any, *, hidden_sizes, activation: str, controller: transform.ControllerSpec) -> Policy:
  """Wraps a `common.ppo` actor (`PPOState.params.policy`) trained in a `dnn_env` task."""
  return Policy(params=actor_params, spec=PolicySpec(tuple(hidden_sizes), activation, controller))


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}/"))
    return out
  return {prefix[:-1]: np.asarray(tree)}


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = jnp.asarray(value)
  return tree


def _check_weights(spec: PolicySpec, weights: dict[str, np.ndarray], source: Any) -> None:
  """Raises ValueError naming the first weight missing, extra or of the wrong shape/dtype."""
  expected = spec.weight_shapes()
  for name in sorted(set(expected) | set(weights)):
    if name not in weights:
      raise ValueError(f"{source}: weight {name} is missing (the spec needs shape {expected[name]}).")
    if name not in expected:
      raise ValueError(f"{source}: weight {name} is not in the spec's network ({spec.hidden_sizes} hidden units).")
    value = weights[name]
    if tuple(value.shape) != expected[name] or value.dtype != np.float32:
      raise ValueError(
        f"{source}: weight {name} is {value.dtype}{list(value.shape)}, the spec needs float32{list(expected[name])}."
      )


def save_policy(directory: str | os.PathLike[str], policy: Policy) -> pathlib.Path:
  """Writes `directory/policy.npz` (spec + weights), replacing any earlier policy; returns the file."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  weights = {k: np.asarray(v, np.float32) for k, v in _flatten(jax.device_get(policy.params)).items()}
  _check_weights(policy.spec, weights, "save_policy")
  arrays = {
    _FORMAT_KEY: np.asarray(_FORMAT_VERSION, np.int32),
    _SPEC_KEY: np.asarray(json.dumps(policy.spec.to_json(), sort_keys=True)),
    **weights,
  }
  path = directory / POLICY_FILE
  tmp = directory / f".{POLICY_FILE}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
  return path


def _read(source: Any, name: str) -> Policy:
  with source.open("rb") as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)
  arrays = {key: data[key] for key in data.files}
  version = int(arrays.pop(_FORMAT_KEY, -1))
  if version != _FORMAT_VERSION or _SPEC_KEY not in arrays:
    raise ValueError(f"{name}: not a policy file of format {_FORMAT_VERSION} (found format {version}).")
  spec = PolicySpec.from_json(json.loads(str(arrays.pop(_SPEC_KEY))))
  _check_weights(spec, arrays, name)
  return Policy(params=_unflatten(arrays), spec=spec)


def _load_orbax_directory(directory: pathlib.Path) -> Policy:
  """A policy saved by earlier versions (`policy.json` + an orbax `params/` checkpoint); needs the train extra."""
  from common import checkpoint  # pylint: disable=g-import-not-at-top

  spec = PolicySpec.from_json(json.loads((directory / "policy.json").read_text()))
  target = _unflatten({k: np.zeros(shape, np.float32) for k, shape in spec.weight_shapes().items()})
  with checkpoint.Checkpointer(directory / "params", keep=1) as ckpt:
    params, _ = ckpt.restore_latest(target)
  if params is None:
    raise FileNotFoundError(f"no policy weights under {directory / 'params'}.")
  return Policy(params=params, spec=spec)


def load_policy(path: str | os.PathLike[str]) -> Policy:
  """Reads a policy written by `save_policy`: the `policy.npz` file, or the directory holding it.

  Raises:
    FileNotFoundError: no policy file at `path`.
    ValueError: a file that is not a policy, or weights that do not fit its spec.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    if not (path / POLICY_FILE).is_file() and (path / "policy.json").is_file() and (path / "params").is_dir():
      return _load_orbax_directory(path)
    path = path / POLICY_FILE
  if not path.is_file():
    raise FileNotFoundError(f"no policy at {path} (write one with save_policy).")
  return _read(path, str(path))


def shipped_policy(name: str = "dnn") -> Policy:
  """A policy that ships with the package, read through `importlib.resources`.

  Args:
    name: 'dnn': PPO-trained SGD-with-momentum schedule for a digits MLP
      (20 decisions of 25 steps, actions x{0.5, 0.8, 1, 1.25, 2}).
  """
  if name not in SHIPPED_POLICIES:
    raise ValueError(f"shipped_policy: name must be one of {sorted(SHIPPED_POLICIES)}, got {name!r}.")
  resource = importlib.resources.files("schedulers.learned").joinpath(*SHIPPED_POLICIES[name])
  return _read(resource, f"schedulers.learned/{'/'.join(SHIPPED_POLICIES[name])}")

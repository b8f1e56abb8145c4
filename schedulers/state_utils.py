"""Finding a transform's state inside a chained optax state, by type.

`optax.tree.get(state, 'scale')` matches dict keys as well as NamedTuple
fields, so it also finds parameter-shaped optimizer statistics (Adam moments,
momentum traces) of a model with a LayerNorm `scale`, and fails with "multiple
values".  Looking a state up by its class is unambiguous.
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax

S = TypeVar("S")


def find_state(opt_state: Any, state_type: type[S] | tuple[type, ...]) -> S:
  """Returns the first `state_type` node of `opt_state` (depth-first).

  `state_type` may be a tuple of classes, as for `isinstance`.

  Raises:
    ValueError: when `opt_state` holds no such node.
  """
  is_match = lambda node: isinstance(node, state_type)
  for node in jax.tree.leaves(opt_state, is_leaf=is_match):
    if is_match(node):
      return node
  types = state_type if isinstance(state_type, tuple) else (state_type,)
  names = " or ".join(t.__name__ for t in types)
  raise ValueError(f"the optimizer state holds no {names}.")

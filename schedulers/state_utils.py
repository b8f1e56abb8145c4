"""Finding a transform's state inside a chained optax state, by type.

`optax.tree.get(state, 'scale')` matches dict keys as well as NamedTuple
fields, so it also finds parameter-shaped optimizer statistics (Adam moments,
momentum traces) of a model with a LayerNorm `scale`, and fails with "multiple
values".  Looking a state up by its class is unambiguous.

States may also come from a flax.nnx optimizer (`nnx.Optimizer.opt_state`),
whose leaves are `nnx.Variable`s (`OptArray`) rather than arrays: `unwrap`
turns them into arrays and `rewrap` puts new arrays back into Variables, so
every helper here accepts either form.  flax is never imported here: if
`flax.nnx` is not loaded, no nnx Variable can exist.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

import jax

S = TypeVar("S")


def _variable_type() -> type | None:
  """`flax.nnx.Variable` when flax.nnx is loaded, else None (lazy check)."""
  nnx = sys.modules.get("flax.nnx")
  return getattr(nnx, "Variable", None) if nnx is not None else None


def _value(variable) -> Any:
  getter = getattr(variable, "get_value", None)
  return getter() if getter is not None else variable.value


def unwrap(tree: Any) -> Any:
  """`tree` with every nnx Variable replaced by its value (arrays stay).

  Like `nnx.pure` for an optimizer state, without importing flax.
  """
  variable = _variable_type()
  if variable is None:
    return tree
  is_var = lambda x: isinstance(x, variable)
  return jax.tree.map(lambda x: _value(x) if is_var(x) else x, tree, is_leaf=is_var)


def rewrap(like: Any, new: Any) -> Any:
  """`new` (arrays) in the Variables of `like`, where `like` has Variables.

  `like` and `new` have the same structure once `like` is unwrapped; each
  Variable of `like` is copied (type and metadata kept) with its new value,
  so the result can be assigned back to `nnx.Optimizer.opt_state`.  Without
  Variables, `new` is returned as is.
  """
  variable = _variable_type()
  if variable is None:
    return new
  is_var = lambda x: isinstance(x, variable)
  if not any(is_var(x) for x in jax.tree.leaves(like, is_leaf=is_var)):
    return new
  treedef = jax.tree.structure(like, is_leaf=is_var)
  olds = treedef.flatten_up_to(like)
  news = treedef.flatten_up_to(new)
  return treedef.unflatten(old.replace(n) if is_var(old) else n for old, n in zip(olds, news))


def find_state(opt_state: Any, state_type: type[S] | tuple[type, ...]) -> S:
  """Returns the first `state_type` node of `opt_state` (depth-first).

  `state_type` may be a tuple of classes, as for `isinstance`.  nnx
  Variables in `opt_state` are unwrapped first, so the node holds arrays.

  Raises:
    ValueError: when `opt_state` holds no such node.
  """
  is_match = lambda node: isinstance(node, state_type)
  for node in jax.tree.leaves(unwrap(opt_state), is_leaf=is_match):
    if is_match(node):
      return node
  types = state_type if isinstance(state_type, tuple) else (state_type,)
  names = " or ".join(t.__name__ for t in types)
  raise ValueError(f"the optimizer state holds no {names}.")

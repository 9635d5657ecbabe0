"""Reusable argument checks for ``scribe.fit``, the engine and the results' methods.

Each checker raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
outside the allowed range) with a message that names the argument and what is allowed,
and returns the value in canonical form (a plain ``int``, ``bool``, ...). They run before
any data are prepared or any training starts, so one bad input always gives the same
error. ``bool`` is not accepted where an integer is expected (``True`` is not a count).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

#: Seeds are 32-bit unsigned integers: what ``jax.random.PRNGKey`` and NumPy's generators
#: both accept without wrapping or raising.
SEED_MAX = 2**32 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None, what: str = "an integer") -> int:
    """``value`` as an ``int``, within ``[minimum, maximum]``.

    Raises
    ------
    TypeError
        Not an integer (floats, strings, None and bools are refused, even ``2.0``).
    ValueError
        Outside the range.
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """A positive integer (``>= 1``)."""
    return check_int(name, value, minimum=1, what="a positive integer (>= 1)")


def check_optional_positive_int(name: str, value: Any) -> int | None:
    """None or a positive integer."""
    return None if value is None else check_int(
        name, value, minimum=1, what="a positive integer (>= 1) or None")


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer in ``[0, 2**32 - 1]``."""
    return check_int(name, value, minimum=0, maximum=SEED_MAX,
                     what=f"an integer between 0 and {SEED_MAX} (2**32 - 1)")


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy booleans included; 0/1 and strings are refused)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of ``allowed``."""
    allowed = tuple(allowed)
    if isinstance(value, list | dict | set) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; "
                         f"got {value!r}")
    return value


def check_finite_float(name: str, value: Any, minimum: float | None = None,
                       strict: bool = False) -> float:
    """A finite real number, ``>= minimum`` (``> minimum`` with ``strict``)."""
    if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    if not math.isfinite(value) or (minimum is not None and (
            value < minimum or (strict and value == minimum))):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return value


def check_optimizer(name: str, value: Any):
    """A ``numpyro.optim`` optimiser (or an optax ``GradientTransformation``)."""
    # numpyro.optim optimisers have init / update / get_params; SVI wraps an optax
    # GradientTransformation (a NamedTuple of init and update) itself.
    if all(callable(getattr(value, attr, None)) for attr in ("init", "update", "get_params")) \
            or _is_optax(value):
        return value
    raise TypeError(f"{name} must be a numpyro.optim optimizer such as "
                    f"numpyro.optim.Adam(step_size=3e-3) (or an optax GradientTransformation), "
                    f"got {value!r}")


def _is_optax(value: Any) -> bool:
    try:
        import optax
    except ImportError:
        return False
    return isinstance(value, optax.GradientTransformation)


def check_loss(name: str, value: Any):
    """A NumPyro ELBO instance (e.g. ``TraceMeanField_ELBO()``)."""
    from numpyro.infer.elbo import ELBO

    if isinstance(value, type) and issubclass(value, ELBO):
        raise TypeError(f"{name} must be an ELBO instance: pass {value.__name__}(), not the "
                        f"class")
    if not isinstance(value, ELBO):
        raise TypeError(f"{name} must be a numpyro ELBO instance such as "
                        f"numpyro.infer.TraceMeanField_ELBO(), got {value!r}")
    return value


def check_rng_key(name: str, value: Any):
    """A JAX PRNG key: ``jax.random.PRNGKey(seed)`` (uint32, shape (2,)) or a typed key."""
    import jax
    import jax.numpy as jnp

    if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        if value.shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got a key array of shape "
                             f"{value.shape}")
        return value
    if not isinstance(value, jax.Array | np.ndarray) or value.dtype != np.uint32 \
            or value.shape != (2,):
        raise TypeError(f"{name} must be a JAX PRNG key such as jax.random.PRNGKey(0) "
                        f"(uint32, shape (2,)), got {value!r}")
    return value


def check_shape(name: str, value: Any, expected: tuple[int, ...]) -> np.ndarray:
    """An array of exactly ``expected`` shape."""
    shape = tuple(np.shape(value))
    if shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {shape}")
    return value

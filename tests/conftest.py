"""Suite-wide set-up: one XLA compilation cache per test process.

Every ``scribe.fit`` and sampler call jits fresh Python closures, so JAX's in-memory cache
(keyed by function object) never hits across tests, even when two tests build the very
same program (same model, shapes and optimizer). JAX's persistent cache is keyed by the
program itself (HLO, compile options, backend, JAX version), so those repeats load the
compiled executable instead of compiling it again; what runs is bit-for-bit the same
program. The cache lives in a temporary folder owned by this process (removed at exit),
so runs never see each other's entries and pytest-xdist workers never share a file that
is still being written. A developer's own ``JAX_COMPILATION_CACHE_DIR`` is left in charge;
``SCRIBE_TEST_XLA_CACHE=0`` turns the cache off (to time the suite without it).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax

_OWN_CACHE: str | None = None


def pytest_configure(config) -> None:
    global _OWN_CACHE
    if os.environ.get("SCRIBE_TEST_XLA_CACHE") == "0":
        return
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    _OWN_CACHE = tempfile.mkdtemp(prefix="scribe-tests-xla-")
    jax.config.update("jax_compilation_cache_dir", _OWN_CACHE)
    # JAX's default threshold (programs that took >= 1 s to compile) stays: caching every
    # program cost more CPU (keys, serialisation) than its hits saved on modules without
    # repeated fits (docs/testing.md).


def pytest_unconfigure(config) -> None:
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)

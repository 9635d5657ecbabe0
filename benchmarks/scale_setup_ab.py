"""Setup phases (read + statistics, starting values, svi.init) of one model type from a
backed .h5ad, in CPU and wall seconds: this checkout ("new") or an older one ("old").

    git archive 3463a2b scribe plugins | tar -x -C /tmp/old          # the code before
    python benchmarks/scale_setup_ab.py FILE old nbdm_mix /tmp/old    # run A, B, A, B
    python benchmarks/scale_setup_ab.py FILE new nbdm_mix

Prints one JSON line. Each run is its own process (compilation and peak RSS included).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings


def main(path: str, mode: str, model_type: str, old_code: str | None = None) -> dict:
    if mode == "old":   # the old checkout, not the editable install
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path[:0] = [old_code, old_code + "/plugins"]
    warnings.simplefilter("ignore")
    import anndata
    import jax
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from numpyro.optim import Adam

    from scribe.config import ModelConfig
    from scribe.svi import engine

    config = ModelConfig(model_type=model_type,
                         n_components=3 if "_mix" in model_type else None)
    out = {"mode": mode}

    def clock(name, run):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        out[name + "_s"] = round(time.perf_counter() - wall, 2)
        out[name + "_cpu_s"] = round(time.process_time() - cpu, 2)
        return result

    data = anndata.read_h5ad(path, backed="r")
    if mode == "old":
        from scribe.counts import SparseCounts
        from scribe.data import prepare_counts

        def read():
            matrix = prepare_counts(data)[0]
            return matrix, SparseCounts.from_matrix(matrix)

        matrix, counts = clock("read_statistics", read)
        init = clock("initial_values", lambda: engine.initial_params(config, matrix, 0))
    else:
        from scribe.fit_counts import device_counts, stream_for_fit

        streamed = clock("read_statistics", lambda: stream_for_fit(data, config, None, 0)[0])
        init = clock("initial_values", lambda: engine.initial_params(config, streamed, 0))
        counts = clock("device", lambda: device_counts(streamed, config, None))
    svi = SVI(*engine.resolve_model_and_guide(config), Adam(3e-3), TraceMeanField_ELBO())
    n_cells, n_genes = counts.shape
    clock("svi_init", lambda: jax.block_until_ready(engine._compiled_init(
        svi, jax.random.PRNGKey(0), n_cells, n_genes, counts, None, init)))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))

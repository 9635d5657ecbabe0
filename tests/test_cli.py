"""The ``scribe`` console script on the shipped 10x data.

One fit runs the installed console script as a user would (a subprocess, shared with the
plot and report tests); every other command is checked through ``scribe.cli.main``, the
function the console script calls, in this process (no interpreter start-up and import
per test).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import scribe
from scribe.cli import main
from scribe.svi.results import ScribeSVIResults
from tests._tiny_fits import (
    CLI_CELLS,
    CLI_GENES,
    CLI_STEPS,
    REAL_DATA,
    cli_fit,
)

pytestmark = pytest.mark.skipif(not REAL_DATA.exists(),
                                reason=f"shipped data {REAL_DATA} not present")


@pytest.fixture(scope="module")
def fitted():
    return cli_fit()


@pytest.fixture(autouse=True)
def _keep_warning_format(monkeypatch):
    # main() formats warnings as one "scribe: warning:" line, process-wide; undo it here.
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)


def test_fit_saves_a_loadable_fit_of_the_file(fitted):
    path, counts, process = fitted
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr
    assert f"nbdm/odds_ratio on {CLI_CELLS} cells x {CLI_GENES} genes" in process.stdout
    results = scribe.load(path)
    assert (results.n_cells, results.n_genes) == counts.shape
    assert results.n_steps_run == CLI_STEPS and results.converged is False
    # The counts travel with the fit (for `scribe report`), unchanged.
    np.testing.assert_array_equal(results.observed_counts.toarray(), counts)
    # --quiet: no progress bar; the unconverged cap is one warning line.
    assert "SVI" not in process.stderr
    assert "scribe: warning: the fit did not converge" in process.stderr


def test_info_reports_the_fit(fitted, capsys):
    path, counts, _ = fitted
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    results = scribe.load(path)
    assert fields["model_type"] == "nbdm" and fields["parameterization"] == "odds_ratio"
    assert int(fields["n_cells"]) == CLI_CELLS and int(fields["n_genes"]) == CLI_GENES
    assert int(fields["n_steps_run"]) == CLI_STEPS and fields["converged"] == "False"
    assert math.isclose(float(fields["final_loss"]),
                        float(np.median(np.asarray(results.loss_history)[-100:])), rel_tol=1e-6)
    assert fields["fitted_with_scribe"] == scribe.__version__


def test_bad_counts_give_one_line_and_exit_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"g0": [1, 2], "g1": [3, -1]}).to_csv(bad, index=False)
    assert main(["fit", str(bad), "-o", str(tmp_path / "fit.nc")]) == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert errors == ["scribe fit: error: counts must be finite non-negative integers: found "
                      "a negative value (-1) at cell 1, gene 1"]
    assert not (tmp_path / "fit.nc").exists()


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "scribe fit counts.h5ad" in out


@pytest.mark.parametrize("argv,message", [
    (["fit", "missing.h5ad", "-o", "fit.nc"], "missing.h5ad: no such file"),
    (["fit", str(REAL_DATA), "--model", "poisson", "-o", "fit.nc"], "unknown model type"),
    (["fit", str(REAL_DATA), "--model", "nbdm_mix", "-o", "fit.nc"], "give --components"),
    (["fit", str(REAL_DATA), "--parameterization", "odd", "-o", "fit.nc"],
     "--parameterization odd: choose one of"),
    (["fit", str(REAL_DATA), "--guide-family", "fancy", "-o", "fit.nc"],
     "--guide-family fancy: choose one of"),
    (["fit", str(REAL_DATA), "-o", "fit.txt"], "must end with .nc or .zarr"),
    (["fit", str(REAL_DATA), "-o", "nowhere/fit.nc"], "folder nowhere does not exist"),
    (["fit", str(REAL_DATA), "--model", "nbdm", "--organism", "human", "-o", "fit.nc"],
     "mrna_per_cell anchors the per-cell capture"),
    (["fit", str(REAL_DATA), "--model", "nbvcp", "--organism", "martian", "-o", "fit.nc"],
     "unknown organism 'martian'"),
    (["fit", str(REAL_DATA), "--layer", "raw", "-o", "fit.nc"], "layer 'raw' not found"),
    (["info", "missing.nc"], "missing.nc: no such file"),
    (["report", "missing.nc", "-o", "r.html"], "missing.nc: no such file"),
    (["de", "missing.nc", "--groups", "0", "1", "-o", "de.csv"], "missing.nc: no such file"),
])
def test_usage_errors_exit_2_with_one_line_before_any_fit(argv, message, tmp_path,
                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "fit.nc").exists()


@pytest.mark.parametrize("argv", [[], ["fit"], ["fit", "x.h5ad"],
                                  ["fit", "x.h5ad", "-o", "f.nc", "--max-steps", "0"],
                                  ["fit", "x.h5ad", "-o", "f.nc", "--mrna-per-cell", "1e5",
                                   "--organism", "human"],
                                  ["de", "f.nc", "--groups", "0", "-o", "de.csv"]])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_fit_passes_the_guide_family(tmp_path, capsys):
    out = tmp_path / "fit.nc"
    assert main(["fit", str(REAL_DATA), "--model", "zinb", "--guide-family", "mean_field",
                 "--max-steps", "50", "--quiet", "-o", str(out)]) == 0
    loaded = scribe.load(out)
    assert loaded.model_config.guide_family == "mean_field"     # zinb's default: joint_gene
    assert "r_joint_loc" not in loaded.params and "r_loc" in loaded.params


def test_info_of_a_file_that_is_not_a_fit(tmp_path, capsys):
    path = tmp_path / "fit.nc"
    path.write_bytes(b"not netcdf")
    assert main(["info", str(path)]) == 2
    assert "not a scribe fit" in capsys.readouterr().err


def test_report_command_writes_html(fitted, tmp_path, capsys):
    # A fit saved without its counts: the report has the model and MAP tables only (the
    # report with predictive checks is tests/test_report.py's).
    path, _, _ = fitted
    results = scribe.load(path)
    results.set_observed_counts(None)
    results.save(tmp_path / "bare.nc")
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "bare.nc"), "--quiet", "-o", str(out)]) == 0
    document = out.read_text()
    assert document.startswith("<!DOCTYPE html>") and "No counts" in document
    assert ">Genes with the largest MAP r<" in document
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(ScribeSVIResults, "differential_expression"),
                    reason="differential_expression comes with issue 9 (not on this branch)")
def test_de_command_writes_the_table(tmp_path, capsys):
    counts, _ = scribe.simulate.simulate_counts("nbdm_mix", 60, 20, n_components=2, seed=0)
    pd.DataFrame(counts.astype(int), columns=[f"g{g}" for g in range(20)]).to_csv(
        tmp_path / "c.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the 200-step cap is deliberate
        assert main(["fit", str(tmp_path / "c.csv"), "--model", "nbdm", "--components", "2",
                     "--max-steps", "200", "--quiet", "-o", str(tmp_path / "fit.nc")]) == 0
    assert main(["de", str(tmp_path / "fit.nc"), "--groups", "0", "1", "-o",
                 str(tmp_path / "de.csv")]) == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "de.csv", index_col=0)
    assert list(table.columns) == ["lfc_mean", "lfc_sd", "lfsr", "prob_effect",
                                   "prob_signed_effect", "is_de"]
    assert len(table) == 20
    assert ((table["lfsr"] >= 0) & (table["lfsr"] <= 0.5)).all()


@pytest.mark.skipif(not hasattr(scribe, "to_anndata"),
                    reason="scribe.to_anndata comes with issue 9 (not on this branch)")
def test_write_back_adds_the_fit_to_the_anndata(tmp_path, capsys):
    import anndata as ad

    adata = ad.read_h5ad(REAL_DATA)[:50, :20].copy()
    adata.write_h5ad(tmp_path / "in.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the 100-step cap is deliberate
        assert main(["fit", str(tmp_path / "in.h5ad"), "--max-steps", "100", "--quiet",
                     "-o", str(tmp_path / "fit.nc"), "--write-back",
                     str(tmp_path / "out.h5ad")]) == 0, capsys.readouterr().err
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert out.shape == adata.shape
    assert any(key.startswith("scribe_") for key in (*out.obs, *out.var, *out.uns))


def test_write_back_without_to_anndata_is_refused_before_the_fit(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.delattr(scribe, "to_anndata", raising=False)
    monkeypatch.setattr(scribe, "__getattr__", lambda name: (_ for _ in ()).throw(
        AttributeError(name)))
    assert main(["fit", str(REAL_DATA), "-o", str(tmp_path / "f.nc"),
                 "--write-back", str(tmp_path / "o.h5ad")]) == 2
    assert "--write-back needs scribe.to_anndata" in capsys.readouterr().err


def test_report_with_a_missing_layer_of_the_counts_file(fitted, tmp_path, capsys):
    path, _, _ = fitted
    assert main(["report", str(path), "--counts", str(REAL_DATA), "--layer", "raw",
                 "-o", str(tmp_path / "r.html")]) == 2
    assert "--layer raw: not in" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()

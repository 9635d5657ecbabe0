"""``scribe.report``: the HTML fit report — contents, self-containment, and a real browser."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
import subprocess
import types

import numpy as np
import pytest

import scribe
from scribe import fit_report
from tests._tiny_fits import REAL_DATA, capture_mixture_fit, cli_fit

CHROMIUM = next((shutil.which(name) for name in
                 ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(name)), None)
IMAGE = re.compile(r'<img alt="figure" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--no-first-run", "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The report of the fit ``scribe fit`` made of the shipped 10x subset (test_cli)."""
    if not REAL_DATA.exists():
        pytest.skip(f"shipped data {REAL_DATA} not present")
    fit_path, counts, process = cli_fit()
    assert process.returncode == 0, process.stderr
    results = scribe.load(fit_path)
    losses = np.asarray(results.loss_history).copy()
    path = tmp_path_factory.mktemp("report") / "report.html"
    document = scribe.report(results, path=path, n_samples=3, progress=False)
    assert path.read_text(encoding="utf-8") == document
    # The fit is not modified: the report's draws were made on a copy.
    assert results.posterior_samples is None and results.predictive_samples is None
    np.testing.assert_array_equal(np.asarray(results.loss_history), losses)
    return document, results, counts


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])   # IHDR width, height


def test_report_is_self_contained_with_valid_images(made):
    document, _, _ = made
    images = IMAGE.findall(document)
    assert len(images) == document.count("<img") == 4  # loss, library, genes, residual QQ
    for encoded in images:
        width, height = _png_size(base64.b64decode(encoded))
        assert width > 100 and height > 100
    # Nothing loaded from elsewhere: every src/href is inline, no scripts, no stylesheets.
    assert not re.search(r'(src|href)\s*=\s*["\'](?!data:)', document)
    assert "<script" not in document and "<link" not in document


def test_report_contents(made):
    document, results, counts = made
    for title in ("Warnings", "Model and convergence", "Posterior-predictive checks",
                  "Most expressed genes", "Genes the model reproduces worst"):
        assert f">{title}<" in document
    assert "The fit did not converge" in document   # 150 steps, a deliberate cap
    assert "Capture against" not in document and "Mixture components" not in document
    # The "most expressed" table lists genes by observed mean, highest first.
    names = np.asarray(results.var.index)
    top = names[np.argsort(-counts.mean(axis=0), kind="stable")[:3]]
    table = document[document.index(">Most expressed genes<"):
                     document.index(">Genes the model reproduces worst<")]
    positions = [table.index(f"<th>{html.escape(name)}</th>") for name in top]
    assert positions == sorted(positions)


def test_report_argument_errors(made, tmp_path):
    _, results, _ = made
    with pytest.raises(TypeError, match="ScribeSVIResults"):
        scribe.report({"not": "a fit"})
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        scribe.report(results, n_samples=1)
    with pytest.raises(ValueError, match="does not exist"):
        scribe.report(results, path=tmp_path / "missing" / "r.html")
    with pytest.raises(ValueError, match="shape"):
        scribe.report(results, counts=np.ones((3, 3)))


def test_warnings_name_non_convergence_and_unanchored_capture():
    stub = types.SimpleNamespace(converged=False, n_steps_run=500, capture_anchored=False)
    messages = fit_report._warn_fit(stub)
    assert "stopped at its cap of 500 steps" in messages[0]
    assert "without an anchor" in messages[1] and "p_hat and r" in messages[1]
    fine = types.SimpleNamespace(converged=True, n_steps_run=5, capture_anchored=None)
    assert fit_report._warn_fit(fine) == []


def test_pareto_message_counts_cells_above_the_threshold():
    k_hat = np.array([0.1, 0.69, 0.71, 1.3])
    message = fit_report._pareto_message(k_hat)
    assert "for 2 of 4 cells (50.0%; max 1.30)" in message
    assert fit_report._pareto_message(np.array([0.2, 0.5])) is None


def test_gene_check_table_measures_misses_in_band_half_widths():
    import pandas as pd

    names = pd.Index(["a", "b"], name="gene")
    # Draws: mean of gene a spans [0, 10] -> 90 % band [0.5, 9.5], half-width 4.5.
    simulated = {s: np.column_stack([np.linspace(0, 10, 101), np.full(101, 3.0)])
                 for s in ("mean", "variance", "zero_fraction")}
    observed = {"mean": np.array([14.0, 3.0]), "variance": np.array([5.0, 3.0]),
                "zero_fraction": np.array([0.5, 3.0])}
    table = fit_report.gene_check_table(names, observed, simulated, 0.9)
    np.testing.assert_allclose(table["miss_mean"], [(14 - 9.5) / 4.5, 0])
    np.testing.assert_allclose(table["miss_variance"], [0, 0])
    np.testing.assert_allclose(table["worst"], [1.0, 0])


def _probe_page(document: str) -> str:
    """The report with a probe that records errors and, once loaded, every image's size."""
    probe = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && e.target.src) || "load error"));
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.images, function (img) {
    var box = img.getBoundingClientRect();
    return [img.naturalWidth, img.naturalHeight, box.width, box.height, img.complete];
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({errors: window.__errors, images: sizes});
  document.body.appendChild(out);
});
</script>"""
    return document.replace("<head>", "<head>\n" + probe, 1)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_report_in_a_headless_browser(made, tmp_path):
    document, _, _ = made
    page = tmp_path / "probed.html"
    page.write_text(_probe_page(document), encoding="utf-8")
    run = subprocess.run([CHROMIUM, *BROWSER_ARGS, "--enable-logging=stderr", "--v=0",
                          "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, "the page's load event did not run"
    result = json.loads(html.unescape(found.group(1)))
    assert result["errors"] == []
    # Chromium logs page console messages as "CONSOLE(...)" lines.
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert len(result["images"]) == 4
    for natural_w, natural_h, shown_w, shown_h, complete in result["images"]:
        assert complete and natural_w > 0 and natural_h > 0 and shown_w > 0 and shown_h > 0
    # The documented screenshot command (docs/cli.md) writes a non-empty PNG.
    plain, shot = tmp_path / "report.html", tmp_path / "report.png"
    plain.write_text(document, encoding="utf-8")
    subprocess.run([CHROMIUM, *BROWSER_ARGS, f"--screenshot={shot}",
                    "--window-size=1200,3000", plain.as_uri()],
                   capture_output=True, timeout=120, check=True)
    width, height = _png_size(shot.read_bytes())
    assert (width, height) == (1200, 3000)


@pytest.mark.slow
def test_report_of_an_anchored_capture_mixture():
    results, counts = capture_mixture_fit()
    document = scribe.report(results, n_samples=3, progress=False)
    for title in ("Capture against library size", "Mixture components"):
        assert f">{title}<" in document
    # loss, library sizes, gene checks, capture, weights, assignments
    assert len(IMAGE.findall(document)) == 6
    assert "without an anchor" not in document

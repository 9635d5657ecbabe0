"""docs/tutorial.md shows exactly the code examples/tutorial_tenx.py runs, and its figures.

The default test only reads text (milliseconds); the slow one runs the script with
``--quick`` (150 cells, 300 steps per fit: minutes on two shared cores).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._tiny_fits import REAL_DATA

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "examples" / "tutorial_tenx.py"
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^# --- tutorial: (\w+) ---\n(.*?)^# --- end ---\n", re.S | re.M)
FENCE = re.compile(r"^```python\n(.*?)^```\n", re.S | re.M)
FIGURE = re.compile(r"\]\((figures/[\w.-]+\.png)\)")
MAX_FIGURE_BYTES = 100_000


def script_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(SCRIPT.read_text(encoding="utf-8"))


def test_every_block_is_shown_verbatim_in_order():
    blocks = script_blocks()
    fences = FENCE.findall(TUTORIAL.read_text(encoding="utf-8"))
    assert [name for name, _ in blocks] == ["load", "fit", "loss", "compare", "gof",
                                            "anndata", "scanpy", "mixture"]
    # Same count and same text, block by block: an edit to either side fails here.
    assert len(fences) == len(blocks)
    for (name, code), fence in zip(blocks, fences):
        assert fence.strip("\n") == code.strip("\n"), f"tutorial differs in block {name!r}"


def test_figures_exist_small_and_are_made_by_the_script():
    text = TUTORIAL.read_text(encoding="utf-8")
    figures = FIGURE.findall(text)
    assert len(figures) >= 5
    code = SCRIPT.read_text(encoding="utf-8")
    for figure in figures:
        path = ROOT / "docs" / figure
        assert path.exists(), figure
        assert path.stat().st_size <= MAX_FIGURE_BYTES, figure
        assert f'"{path.name}"' in code, f"{figure} is not written by the script"


def test_scanpy_step_skips_without_scanpy(monkeypatch, capsys):
    # None in sys.modules makes ``import scanpy`` raise ImportError, as when absent.
    monkeypatch.setitem(sys.modules, "scanpy", None)
    code = dict(script_blocks())["scanpy"]
    namespace = {"out": object(), "save": None}    # any use of them would raise
    exec(compile(code, str(SCRIPT), "exec"), namespace)
    assert namespace["sc"] is None
    assert "scanpy is not installed" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_run(tmp_path):
    if not REAL_DATA.exists():
        pytest.skip(f"shipped data {REAL_DATA} not present")
    process = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data",
                              str(REAL_DATA), "--figures", str(tmp_path)],
                             capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert process.returncode == 0, process.stderr[-3000:]
    for name in ("loss", "qq", "ppc", "volcano"):
        assert (tmp_path / f"tutorial_{name}.png").stat().st_size > 1000
    assert "whole script" in process.stdout

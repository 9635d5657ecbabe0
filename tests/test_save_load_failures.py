"""Saving atomically and loading non-results files (issue 12, items 2 and 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scribe
from scribe.svi import idata
from scribe.svi.atomic import atomic_write

C, G = 30, 8


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    counts = np.random.default_rng(0).negative_binomial(3, 0.5, size=(C, G)) + 1
    res = scribe.fit(counts.astype(np.float32), n_steps=5, tol=None, progress=False)
    path = tmp_path_factory.mktemp("saved") / "fit.nc"
    res.save(path)
    return res, path


def _listing(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_failing_writer_leaves_the_old_file_and_no_temporary(saved, monkeypatch):
    res, path = saved
    before, listing = path.read_bytes(), _listing(path.parent)

    def half_written(tree, groups, target, zarr):
        with open(target, "wb") as handle:   # a partial file, then the failure
            handle.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idata, "_write", half_written)
    with pytest.raises(OSError, match="No space left"):
        res.save(path)
    assert path.read_bytes() == before
    assert _listing(path.parent) == listing


@pytest.mark.slow   # a fit (or a fresh interpreter importing JAX): > 10 s
def test_disk_full_in_a_subprocess_keeps_the_file_and_the_process(saved):
    # RLIMIT_FSIZE makes every write beyond 4 KiB fail with EFBIG (SIGXFSZ ignored): a
    # disk that fills during the save. The old file must survive byte for byte and the
    # interpreter exit normally (h5py once segfaulted closing the broken file).
    _, path = saved
    before = path.read_bytes()
    assert len(before) > 4096
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import scribe
        res = scribe.load({str(path)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            res.save({str(path)!r})
        except Exception as error:
            print("raised", type(error).__name__)
        else:
            sys.exit("the save did not fail")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "raised" in done.stdout
    assert path.read_bytes() == before
    assert [n for n in _listing(path.parent) if n.endswith(".tmp")] == []


def test_save_replaces_an_existing_file(saved, tmp_path):
    res, path = saved
    target = tmp_path / "other.nc"
    target.write_bytes(b"old contents")
    res.save(target)
    assert scribe.load(target).n_steps_run == res.n_steps_run
    assert _listing(tmp_path) == ["other.nc"]


def test_atomic_write_replaces_a_directory(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("old")

    def writer(where):
        os.mkdir(where)
        with open(os.path.join(where, "new"), "w") as handle:
            handle.write("new")

    atomic_write(target, writer)
    assert _listing(target) == ["new"] and _listing(tmp_path) == ["store.zarr"]


@pytest.mark.parametrize("content", [b"", os.urandom(2048), b"not a netCDF file\n"],
                         ids=["empty", "random", "text"])
def test_loading_a_non_netcdf_file_names_the_path(tmp_path, content):
    path = tmp_path / "bogus.nc"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bogus\.nc.*not a readable netCDF-4"):
        scribe.load(path)


def test_loading_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        scribe.load(tmp_path / "missing.nc")

"""`mfpde compare`: a small comparison end to end, and bad input -> exit 2 with one line."""
from pathlib import Path

import h5py
import pytest

from mfpde.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "validation" / "example_compare.toml"


def test_compare_example_runs_and_fits(tmp_path, capsys):
    cfg = EXAMPLE.read_text().replace("widths = [32, 64, 128, 256]", "widths = [16, 32, 64]") \
        .replace("seeds = 6 ", "seeds = 3 ").replace("N = 4096 ", "N = 512 ")
    p = tmp_path / "c.toml"
    p.write_text(cfg)
    out = tmp_path / "c.h5"
    assert main(["compare", str(p), "-o", str(out), "-q"]) == 0
    with h5py.File(out, "r") as f:
        assert "compare" in f and len(f["compare"]) == 9
        assert "fits" in f


@pytest.mark.parametrize("edit,msg", [
    (("method = \"gd\"", "method = \"adam\""), "method"),
    (("T = 2.0", "T = -1.0"), "T"),
])
def test_compare_bad_input_exit_2(tmp_path, capsys, edit, msg):
    p = tmp_path / "bad.toml"
    p.write_text(EXAMPLE.read_text().replace(*edit))
    with pytest.raises(SystemExit) as e:
        main(["compare", str(p), "-o", str(tmp_path / "x.h5"), "-q"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not (tmp_path / "x.h5").exists()


SMALL = ["compare.widths=[8, 16]", "compare.seeds=2", "compare.reference.N=64",
         "compare.T=0.2", "compare.n_records=2", "compare.test_n=16", "compare.figure=false"]


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_run_of_a_compare_file_is_the_comparison_job(tmp_path, capsys):
    """`mfpde run` of a file with a [compare] section runs the same job as `mfpde compare`."""
    import numpy as np

    from mfpde.config import load_config

    cfg = load_config(EXAMPLE, SMALL)
    p = tmp_path / "small.toml"
    p.write_text(cfg.to_toml())
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert main(["compare", str(p), "-o", str(a), "-q"]) == 0
    assert main(["run", str(EXAMPLE), "-o", str(b), "-q", *sum([["--set", s] for s in SMALL],
                                                                 [])]) == 0
    da, db = _datasets(a), _datasets(b)
    assert set(da) == set(db) and any(k.startswith("fits/") for k in da)
    for k in da:
        assert np.array_equal(da[k], db[k]), k
    # the output rules of `mfpde run`: an existing file needs output.overwrite
    with pytest.raises(SystemExit) as e:
        main(["run", str(p), "-o", str(b), "-q"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    assert main(["run", str(p), "-o", str(b), "-q", "--set", "output.overwrite=true"]) == 0
    # --resume with no interrupted job to continue starts one, as for a run
    assert main(["run", str(p), "-o", str(tmp_path / "r.h5"), "--resume", "-q"]) == 0
    dr = _datasets(tmp_path / "r.h5")
    assert set(dr) == set(da) and all(np.array_equal(dr[k], da[k]) for k in da)


@pytest.mark.parametrize("override,msg", [
    ("compare.widht=[8]", "compare.widht"),
    ("compare.dts=[0.03]", "multiple"),
    ("compare.model.d=7", "compare.model.d"),
    ("compare.fit.ci=1.5", "compare.fit.ci"),
])
def test_run_of_a_compare_file_bad_input_exit_2(tmp_path, capsys, override, msg):
    out = tmp_path / "x.h5"
    with pytest.raises(SystemExit) as e:
        main(["run", str(EXAMPLE), "-o", str(out), "-q", "--set", override,
              *sum([["--set", s] for s in SMALL], [])])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not out.exists()

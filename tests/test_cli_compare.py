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

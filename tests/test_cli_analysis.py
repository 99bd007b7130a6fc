"""`mfpde dropout` and `mfpde connect` on stored runs; `mfpde info` / `mfpde plot` of their result
files; one-line errors (exit 2, nothing written)."""
from pathlib import Path

import numpy as np
import pytest

from mfpde.analysis import connect_runs, dropout_run, read_analysis, read_network
from mfpde.cli import main
from mfpde.store import SCHEMA_VERSION, load

EXAMPLES = Path(__file__).resolve().parents[1] / "validation"
TWO_LAYER = EXAMPLES / "example_two_layer.toml"
PN = EXAMPLES / "example_pn.toml"


def _run(tmp_path, name, *sets, config=TWO_LAYER):
    out = tmp_path / name
    base = ["dynamics.N=64", "dynamics.steps=40", "observe.every=20", "observe.snapshot_every=20",
            "data.n=100", "data.seed=5", "output.overwrite=true"] if config == TWO_LAYER else \
        ["dynamics.steps=20", "observe.snapshot_every=10", "data.seed=5", "output.overwrite=true"]
    args = ["run", str(config), "-o", str(out), "-q"]
    for s in [*base, *sets]:
        args += ["--set", s]
    assert main(args) == 0
    return out


def _one_line_error(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mfpde: error: ")
    return err[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return {"a": _run(tmp, "a.h5", "dynamics.seed=1"), "b": _run(tmp, "b.h5", "dynamics.seed=2"),
            "sub": _run(tmp, "sub.h5", "dynamics.seed=3", "observe.snapshot_particles=16"),
            "other_data": _run(tmp, "c.h5", "dynamics.seed=2", "data.seed=6"),
            "wide": _run(tmp, "w.h5", "dynamics.seed=2", "dynamics.N=66"),
            "tmp": tmp}


def test_dropout_command_writes_result_and_figure(runs, tmp_path, capsys):
    out = tmp_path / "drop.h5"
    assert main(["dropout", str(runs["a"]), "-o", str(out), "--M", "4", "8", "16",
                 "--subsets", "50", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "mean gap" in text and "wrote" in text
    assert out.exists() and out.with_suffix(".png").exists()
    assert not Path(str(out) + ".part").exists()
    # the store's reader opens it unchanged (root attributes of the run store)
    r = load(out)
    assert r.status == "complete" and r.schema_version == SCHEMA_VERSION
    assert r.config_text == load(runs["a"]).config_text
    # the file holds what the Python API computes
    res, src = dropout_run(runs["a"], Ms=[4, 8, 16], n_subsets=50, seed=3)
    f = read_analysis(out)
    assert f["format"] == "mfpde-dropout" and f["attrs"]["N"] == 64
    np.testing.assert_array_equal(f["dropout"]["M"], [4, 8, 16])
    np.testing.assert_array_equal(f["dropout"]["gaps"], res.gaps)
    np.testing.assert_array_equal(f["dropout"]["exact"], res.exact)
    assert f["dropout"]["gaps"].shape == (3, 50)
    w = f["dropout"]["worst_subset"]
    assert w.shape == (3, 16) and np.all(w[0, 4:] == -1)
    assert f["attrs"]["step"] == 40 and f["attrs"]["source_kind"] == "snapshot"
    # info and plot understand the file
    assert main(["info", str(out)]) == 0
    assert "mfpde-dropout" in capsys.readouterr().out
    fig = tmp_path / "p.png"
    assert main(["plot", str(out), "-o", str(fig)]) == 0 and fig.stat().st_size > 0


def test_dropout_snapshot_choice(runs, tmp_path):
    net0, _, s0 = read_network(runs["a"], 0)
    net1, _, s1 = read_network(runs["a"])
    netc, _, sc = read_network(runs["a"], "checkpoint")
    assert (s0["step"], s1["step"], sc["source"]) == (0, 40, "checkpoint")
    np.testing.assert_array_equal(net1.params, netc.params)
    assert not np.array_equal(net0.params, net1.params)
    assert main(["dropout", str(runs["a"]), "-o", str(tmp_path / "d0.h5"), "--snapshot", "0",
                 "--subsets", "10", "-q"]) == 0
    assert read_analysis(tmp_path / "d0.h5")["attrs"]["step"] == 0


def test_subsampled_snapshot_is_refused(runs, tmp_path, capsys):
    out = tmp_path / "x.h5"
    msg = _one_line_error(capsys, "dropout", str(runs["sub"]), "-o", str(out))
    assert "snapshot_particles" in msg and "16 of the N = 64" in msg
    assert not out.exists() and not out.with_suffix(".png").exists()
    # the checkpoint holds the whole network
    assert main(["dropout", str(runs["sub"]), "-o", str(out), "--snapshot", "checkpoint",
                 "--subsets", "10", "-q"]) == 0


@pytest.mark.parametrize("argv,needle", [
    (["--snapshot", "7"], "out of range"),
    (["--snapshot", "last"], "snapshot index"),
    (["--M", "100"], "[1, N = 64]"),
    (["--M", "x"], "--M"),
    (["--subsets", "1"], "--subsets"),
])
def test_dropout_bad_input(runs, tmp_path, capsys, argv, needle):
    out = tmp_path / "bad.h5"
    msg = _one_line_error(capsys, "dropout", str(runs["a"]), "-o", str(out), *argv)
    assert needle in msg
    assert not out.exists()


def test_dropout_missing_or_foreign_file(tmp_path, capsys):
    assert "no such file" in _one_line_error(capsys, "dropout", str(tmp_path / "none.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    _one_line_error(capsys, "dropout", str(bad), "-o", str(tmp_path / "o.h5"))


def test_connect_command(runs, tmp_path, capsys):
    out = tmp_path / "c.h5"
    assert main(["connect", str(runs["a"]), str(runs["b"]), "-o", str(out), "--points", "12"]) == 0
    assert "barrier" in capsys.readouterr().out
    assert out.exists() and out.with_suffix(".png").exists()
    f = read_analysis(out)
    a = f["attrs"]
    assert f["format"] == "mfpde-connect" and a["kind"] == "five_segment"
    assert a["holds"] and a["applies"] and a["barrier"] <= a["bound"] + a["tol"]
    assert f["path"]["loss"].shape == (5 * 11 + 1,)
    assert a["segments"] == ["P1", "P2", "P3", "P4", "P5"]
    res, _, _ = connect_runs(runs["a"], runs["b"], points=12)
    np.testing.assert_array_equal(f["path"]["loss"], res.loss)
    assert load(out).status == "complete"
    assert main(["info", str(out)]) == 0
    assert "mfpde-connect" in capsys.readouterr().out
    assert main(["plot", str(out), "-o", str(tmp_path / "c2.png")]) == 0


def test_connect_refuses_incomparable_runs(runs, tmp_path, capsys):
    out = tmp_path / "x.h5"
    msg = _one_line_error(capsys, "connect", str(runs["a"]), str(runs["other_data"]), "-o",
                          str(out))
    assert "not comparable" in msg and "data.seed" in msg
    msg = _one_line_error(capsys, "connect", str(runs["a"]), str(runs["wide"]), "-o", str(out))
    assert "not comparable" in msg and "widths 64 vs 66" in msg
    msg = _one_line_error(capsys, "connect", str(runs["a"]), str(runs["b"]), "-o", str(out),
                          "--points", "1")
    assert "--points" in msg
    assert not out.exists()


def test_connect_nc_needs_a_shared_W(tmp_path, capsys):
    sets = ["dynamics.N=32", "dynamics.steps=10", "observe.snapshot_every=10",
            "observe.snapshot_particles=0",
            "data.seed=5", "output.overwrite=true"]
    paths = []
    for seed in (1, 2):
        out = tmp_path / f"nc{seed}.h5"
        args = ["run", str(EXAMPLES / "example_nc.toml"), "-o", str(out), "-q"]
        for s in [*sets, f"dynamics.seed={seed}"]:
            args += ["--set", s]
        assert main(args) == 0
        paths.append(out)
    msg = _one_line_error(capsys, "connect", *map(str, paths), "-o", str(tmp_path / "x.h5"))
    assert "share W" in msg
    assert main(["dropout", str(paths[0]), "-o", str(tmp_path / "d.h5"), "--subsets", "10",
                 "-q"]) == 0


def test_pham_nguyen_runs(tmp_path, capsys):
    a = _run(tmp_path, "pa.h5", "dynamics.seed=1", config=PN)
    b = _run(tmp_path, "pb.h5", "dynamics.seed=2", config=PN)
    out = tmp_path / "pd.h5"
    assert main(["dropout", str(a), "-o", str(out), "--M", "10", "20x10", "--subsets", "20",
                 "-q"]) == 0
    g = read_analysis(out)["dropout"]
    np.testing.assert_array_equal(g["M"], [[40, 10], [20, 10]])
    assert np.isfinite(g["exact"][0]) and np.isnan(g["exact"][1])
    assert "worst_subset1" in g and "worst_subset2" in g
    out = tmp_path / "pc.h5"
    assert main(["connect", str(a), str(b), "-o", str(out), "--points", "5", "-q"]) == 0
    f = read_analysis(out)
    assert f["attrs"]["kind"] == "pn_nine_segment" and f["attrs"]["holds"]
    assert f["attrs"]["n1"] == 40 and f["attrs"]["n2"] == 30
    assert main(["plot", str(out), "-o", str(tmp_path / "pc.png")]) == 0

r"""Sparse-recovery experiments: a ``[sparse]`` TOML table -> runs x methods -> results.

The specification (theory/sparse.md §4) of the published synthetic experiment is the default:
Setup A, ``d = 128``, ``n = 256``, ``k* = 16``, ``k = 64``, ``X_ij ~ N(0, 1/n)``, noiseless,
dense ``U(-1/√d, 1/√d)`` initialisation, 750 steps, 20 runs from seed 1234, Topk-I-OBS against
k-IHT with the published step scaling. Every field is validated by :func:`parse_spec` before any
work starts; an error is a :class:`mfpde.config.ConfigError` whose one-line message names
``sparse.<field>``.

Randomness [choice]: run ``r`` uses ``numpy.random.default_rng(SeedSequence(seed).spawn(runs)[r])``
and draws, in this order, the design ``X``, the target ``θ*`` (support then values, or the
image), the label noise and the initial iterate. All methods of a run share the instance.

========================  ======================================================================
field                     meaning (default)
========================  ======================================================================
``name``                  label ("sparse recovery")
``problem``               ``regression`` (``f = (1/(2n))||Xθ - y||²``) or ``logistic``
``prior``                 ``gaussian`` (support uniform, ``N(0, 1)`` values), ``digits``
                          (scikit-learn 8×8 digit, ``d = 64``), ``images`` (rows of a file)
``images``                ``.npy`` / ``.npz`` file of images for ``prior = "images"``
``threshold``             digits prior: pixels below it are set to 0 (12.0)
``d``, ``n``              dimension (128; digits 64; images: from the file), samples (256;
                          image priors ``2d``)
``k_star``                gaussian prior: non-zeros of ``θ*`` (16)
``k``, ``k_factor``       kept non-zeros: ``k`` (64), or ``k = round(k_factor·k*)`` per run
                          (image priors: ``k_factor = 2``)
``noise``                 standard deviation of the label noise (0.0; regression only)
``design``                variance of ``X_ij``: ``"1/n"`` (default), ``"1/d"``, ``"1"``
``labels``, ``lam``       logistic: ``soft`` (``y = s(Xθ*)``, realisable) or ``bernoulli``;
                          ridge ``λ`` (0.0)
``init``                  ``uniform`` (``U(-1/√d, 1/√d)``) or ``zero``
``steps``, ``runs``       iterations per run (750), independent runs (20)
``seed``                  base seed (1234)
``methods``               list of :data:`mfpde.sparse.driver.METHODS` (["topk_iobs", "iht"])
``eta``                   step rule or number ("paper", see :func:`~mfpde.sparse.driver.resolve_eta`)
``damping``               ``"auto"``, ``"none"`` or a relative damping ``>= 0`` ("auto")
``curvature``             ``hessian`` or ``fisher`` (empirical Fisher, WoodFisher inverse)
``fisher_block``          block size of the WoodFisher inverse (0: one block)
``loss``                  recorded loss: ``half`` (``f``) or ``mse`` (``(1/n)||Xθ - y||² = 2f``,
                          the published code's)
``figure``                write a figure next to the output file (true)
``options.<method>``      per-method ``eta``, ``damping``, ``curvature``, ``fisher_block``
========================  ======================================================================
"""
from __future__ import annotations

import difflib
import math
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TextIO

import numpy as np

from .._blas import blas_threads
from ..errors import ConfigError
from .driver import CURVATURES, ETA_RULES, METHODS, SparseDivergence, SparseDriver
from .problems import (LogisticRegression, QuadraticProblem, _sigmoid, digits_target,
                       gaussian_design, gaussian_target, image_target, load_images, uniform_init)

__all__ = ["SparseSpec", "parse_spec", "load_spec", "spec_to_toml", "make_instance", "Instance",
           "run_experiment", "PAPER_SETUP_A"]

PROBLEMS = ("regression", "logistic")
PRIORS = ("gaussian", "digits", "images")
DESIGNS = ("1/n", "1/d", "1")
INITS = ("uniform", "zero")
LOSSES = ("half", "mse")
LABELS = ("soft", "bernoulli")
OPTION_KEYS = ("eta", "damping", "curvature", "fisher_block")

#: reported results of Setup A (sparse.md §4, mean ± std over 20 runs; loss = (1/n)||Xθ - y||²)
PAPER_SETUP_A = {
    "steps": [0, 100, 300, 500, 749],
    "topk_iobs": {"loss": [0.0585, 2.53e-2, 6.65e-3, 4.65e-4, 1.01e-5],
                  "dist": [3.78, 2.47, 1.28, 0.340, 0.0502],
                  "final_loss_std": 2.6e-6, "final_dist_std": 0.0069},
    "iht": {"loss": [0.0583, 3.35e-2, 1.07e-2, 4.53e-3, 2.06e-3],
            "dist": [3.79, 3.10, 2.07, 1.53, 1.140],
            "final_loss_std": 8.1e-4, "final_dist_std": 0.259},
}


@dataclass
class SparseSpec:
    """A validated ``[sparse]`` table (fields: module docstring)."""

    name: str = "sparse recovery"
    problem: str = "regression"
    prior: str = "gaussian"
    images: str = ""
    threshold: float = 12.0
    d: int | None = None
    n: int | None = 256
    k_star: int = 16
    k: int | None = None
    k_factor: float | None = None
    noise: float = 0.0
    design: str = "1/n"
    labels: str = "soft"
    lam: float = 0.0
    init: str = "uniform"
    steps: int = 750
    runs: int = 20
    seed: int = 1234
    methods: list[str] = field(default_factory=lambda: ["topk_iobs", "iht"])
    eta: Any = "paper"
    damping: Any = "auto"
    curvature: str = "hessian"
    fisher_block: int = 0
    loss: str = "half"
    figure: bool = True
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def method_options(self, method: str) -> dict[str, Any]:
        """``eta``, ``damping`` (driver form), ``curvature``, ``fisher_block`` of ``method``."""
        o = {"eta": self.eta, "damping": self.damping, "curvature": self.curvature,
             "fisher_block": self.fisher_block}
        o.update(self.options.get(method, {}))
        o["damping"] = None if o["damping"] == "none" else o["damping"]
        o["fisher_block"] = int(o["fisher_block"]) or None
        return o

    def to_dict(self) -> dict[str, Any]:
        """The fields that apply to this problem and prior (a valid ``[sparse]`` table)."""
        skip = set()
        if self.problem != "logistic":
            skip |= {"labels", "lam"}
        if self.prior != "images":
            skip.add("images")
        if self.prior != "digits":
            skip.add("threshold")
        if self.prior != "gaussian":
            skip.add("k_star")
        out: dict[str, Any] = {}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            if v is None or f in skip:
                continue
            out[f] = {m: dict(o) for m, o in v.items()} if f == "options" else \
                (list(v) if isinstance(v, list) else v)
        return out


_FIELDS = SparseSpec.__dataclass_fields__


def _err(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"sparse.{name} = {_fmt(value)}: expected {expected}")


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _hint(word: str, candidates) -> str:
    m = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _int(name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(name, v, "an integer" + (f" >= {lo}" if lo is not None else ""))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise _err(name, v, f"an integer {rng}")
    return int(v)


def _float(name, v, lo=None, strict=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(name, v, "a finite number")
    if lo is not None and (v <= lo if strict else v < lo):
        raise _err(name, v, f"a number {'>' if strict else '>='} {lo}")
    return float(v)


def _choice(name, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(f"sparse.{name} = {_fmt(v)}: expected one of "
                          f"{', '.join(map(repr, choices))}{_hint(v, choices)}")
    return v


def _eta(name, v):
    if isinstance(v, str):
        if v not in ETA_RULES:
            raise ConfigError(f"sparse.{name} = {_fmt(v)}: expected a number > 0 or one of "
                              f"{', '.join(map(repr, ETA_RULES))}{_hint(v, ETA_RULES)}")
        return v
    return _float(name, v, 0.0, strict=True)


def _damping(name, v):
    if isinstance(v, str):
        return _choice(name, v, ("auto", "none"))
    return _float(name, v, 0.0)


def parse_spec(raw: Mapping[str, Any]) -> SparseSpec:
    """Validate a ``[sparse]`` table (or a whole config dict holding one) into a
    :class:`SparseSpec`; raises :class:`~mfpde.config.ConfigError` naming the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a table with a [sparse] section")
    if "sparse" in raw:
        others = [k for k in raw if k != "sparse"]
        if others:
            raise ConfigError(f"unknown section [{others[0]}]{_hint(others[0], ['sparse'])}; "
                              f"a sparse-recovery file has only [sparse]")
        raw = raw["sparse"]
        if not isinstance(raw, Mapping):
            raise ConfigError("sparse must be a table ([sparse])")
    for key in raw:
        if key not in _FIELDS:
            raise ConfigError(f"unknown key sparse.{key}{_hint(key, _FIELDS)}; allowed: "
                              f"{', '.join(_FIELDS)}")
    s = SparseSpec()
    v = dict(raw)
    if "name" in v:
        if not isinstance(v["name"], str):
            raise _err("name", v["name"], "a string")
        s.name = v["name"]
    s.problem = _choice("problem", v.get("problem", s.problem), PROBLEMS)
    s.prior = _choice("prior", v.get("prior", s.prior), PRIORS)
    if s.problem == "logistic" and s.prior != "gaussian":
        raise ConfigError(f"sparse.prior = {s.prior!r}: the logistic problem uses the gaussian prior")
    s.images = v.get("images", "")
    if not isinstance(s.images, str):
        raise _err("images", s.images, "a file path (string)")
    if s.prior == "images" and not s.images:
        raise ConfigError("sparse.images is required for prior = 'images' (a .npy/.npz array of "
                          "images, e.g. MNIST raw 0-255)")
    if s.prior != "images" and s.images:
        raise ConfigError(f"sparse.images = {_fmt(s.images)}: only used with prior = 'images'")
    s.threshold = _float("threshold", v.get("threshold", s.threshold))
    if "n" in v or s.prior == "gaussian":
        s.n = _int("n", v.get("n", 256), 1)
    else:
        s.n = None                        # image priors: n = 2d (sparse.md §4)
    s.noise = _float("noise", v.get("noise", s.noise), 0.0)
    if s.problem == "logistic" and s.noise:
        raise ConfigError(f"sparse.noise = {s.noise}: label noise applies to regression; use "
                          f"labels = 'bernoulli' for the logistic problem")
    s.design = _choice("design", v.get("design", s.design), DESIGNS)
    s.labels = _choice("labels", v.get("labels", s.labels), LABELS)
    s.lam = _float("lam", v.get("lam", s.lam), 0.0)
    if s.problem != "logistic" and ("labels" in v or "lam" in v):
        key = "labels" if "labels" in v else "lam"
        raise ConfigError(f"sparse.{key}: only used with problem = 'logistic'")
    s.init = _choice("init", v.get("init", s.init), INITS)
    s.steps = _int("steps", v.get("steps", s.steps), 1)
    s.runs = _int("runs", v.get("runs", s.runs), 1)
    s.seed = _int("seed", v.get("seed", s.seed), 0)
    methods = v.get("methods", s.methods)
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise _err("methods", methods, f"a non-empty list of method names ({', '.join(METHODS)})")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"sparse.methods: unknown method {m!r}{_hint(m, METHODS)}; allowed: "
                              f"{', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise _err("methods", methods, "distinct method names")
    s.methods = list(methods)
    s.eta = _eta("eta", v.get("eta", s.eta))
    s.damping = _damping("damping", v.get("damping", s.damping))
    s.curvature = _choice("curvature", v.get("curvature", s.curvature), CURVATURES)
    s.fisher_block = _int("fisher_block", v.get("fisher_block", s.fisher_block), 0)
    s.loss = _choice("loss", v.get("loss", s.loss), LOSSES)
    if s.problem == "logistic" and s.loss == "mse":
        raise ConfigError("sparse.loss = 'mse': the logistic problem records its own loss; use 'half'")
    fig = v.get("figure", s.figure)
    if not isinstance(fig, bool):
        raise _err("figure", fig, "true or false")
    s.figure = fig
    # dimensions and sparsity
    if s.prior == "digits":
        if "d" in v and v["d"] != 64:
            raise _err("d", v["d"], "64 for the digits prior (8x8 images) or no value")
        s.d = 64
    elif s.prior == "images":
        if "d" in v:
            raise ConfigError("sparse.d: the images prior takes d from the image file; remove d")
        s.d = None
    else:
        s.d = _int("d", v.get("d", 128), 1)
    image_prior = s.prior != "gaussian"
    if image_prior and "k_star" in v:
        raise ConfigError(f"sparse.k_star: the {s.prior} prior sets k* from each image; remove k_star")
    if not image_prior:
        s.k_star = _int("k_star", v.get("k_star", s.k_star), 1, s.d)
    if "k" in v and "k_factor" in v:
        raise ConfigError("sparse.k and sparse.k_factor exclude each other; give one")
    if "k" in v:
        s.k = _int("k", v["k"], 1)
        s.k_factor = None
    elif "k_factor" in v or image_prior:
        s.k_factor = _float("k_factor", v.get("k_factor", 2.0), 0.0, strict=True)
        s.k = None
    else:
        s.k = 64
    if s.k is not None and s.d is not None and not (s.k <= s.d and (image_prior or s.k >= s.k_star)):
        lo = 1 if image_prior else s.k_star
        raise _err("k", s.k, f"an integer in [k_star = {lo}, d = {s.d}]")
    if s.k_factor is not None and not image_prior and s.k_factor * s.k_star > s.d:
        raise _err("k_factor", s.k_factor, f"k_factor * k_star <= d = {s.d}")
    if not image_prior and s.k_factor is not None and round(s.k_factor * s.k_star) < 1:
        raise _err("k_factor", s.k_factor, "k_factor * k_star >= 1")
    # per-method options
    opts = v.get("options", {})
    if not isinstance(opts, Mapping):
        raise _err("options", opts, "a table of per-method tables ([sparse.options.<method>])")
    s.options = {}
    for m, o in opts.items():
        if m not in s.methods:
            raise ConfigError(f"sparse.options.{m}: {m!r} is not in sparse.methods "
                              f"({', '.join(s.methods)}){_hint(m, s.methods)}")
        if not isinstance(o, Mapping):
            raise _err(f"options.{m}", o, "a table")
        clean = {}
        for key, val in o.items():
            where = f"options.{m}.{key}"
            if key not in OPTION_KEYS:
                raise ConfigError(f"unknown key sparse.{where}{_hint(key, OPTION_KEYS)}; allowed: "
                                  f"{', '.join(OPTION_KEYS)}")
            clean[key] = {"eta": _eta, "damping": _damping}.get(key, None)(where, val) \
                if key in ("eta", "damping") else (
                _choice(where, val, CURVATURES) if key == "curvature" else _int(where, val, 0))
        s.options[m] = clean
    for m in s.methods:
        o = s.method_options(m)
        if o["curvature"] == "fisher" and m == "iht":
            raise ConfigError(f"sparse.curvature = 'fisher' does not apply to iht; set it in "
                              f"[sparse.options.<method>] of the second-order methods")
        if m == "iobs_exact" and s.d is not None:
            k = s.k if s.k is not None else max(1, round(s.k_factor * s.k_star))
            count = math.comb(s.d, k)
            from .linalg import ENUMERATION_LIMIT
            if count > ENUMERATION_LIMIT:
                raise ConfigError(f"sparse.methods: iobs_exact enumerates C(d = {s.d}, k = {k}) = "
                                  f"{count} supports (limit {ENUMERATION_LIMIT}); use a smaller d, k")
    if s.prior == "images":
        p = Path(s.images)
        if not p.is_file():
            raise ConfigError(f"sparse.images = {_fmt(s.images)}: no such file")
    return s


def load_spec(path, overrides=()) -> SparseSpec:
    """Read a TOML file with a ``[sparse]`` table, apply ``--set sparse.key=value`` overrides
    and validate it."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    for text in overrides:
        _apply_override(raw, text)
    return parse_spec(raw)


def _apply_override(raw: dict, text: str) -> None:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected sparse.key=value")
    key, _, value = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if len(parts) < 2 or parts[0] != "sparse" or not all(parts):
        raise ConfigError(f"--set {text!r}: expected sparse.key=value")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    t = raw.setdefault("sparse", {})
    for p in parts[1:-1]:
        t = t.setdefault(p, {})
        if not isinstance(t, dict):
            raise ConfigError(f"--set {text!r}: {p} is not a table")
    t[parts[-1]] = parsed


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def spec_to_toml(spec: SparseSpec) -> str:
    """The resolved specification as TOML text (re-runnable as is)."""
    d = spec.to_dict()
    opts = d.pop("options", {})
    lines = ["[sparse]"] + [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    for m, o in opts.items():
        lines += ["", f"[sparse.options.{m}]"] + [f"{k} = {_toml_value(v)}" for k, v in o.items()]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- instances
@dataclass
class Instance:
    """One random instance: ``problem`` (with ``theta_star``), ``theta0`` (d,), ``k``."""

    problem: Any
    theta0: np.ndarray
    k: int
    k_star: int


def make_instance(spec: SparseSpec, rng: np.random.Generator, images=None) -> Instance:
    """Draw one instance of ``spec`` (order: ``X``, ``θ*``, noise, ``θ_0``; module docstring)."""
    if spec.prior == "images":
        d = images.shape[1]
    else:
        d = spec.d
    n = spec.n if spec.n is not None else 2 * d
    X = gaussian_design(n, d, rng, spec.design)
    if spec.prior == "gaussian":
        ts = gaussian_target(d, spec.k_star, rng)
    elif spec.prior == "digits":
        ts = digits_target(rng, spec.threshold)
    else:
        ts = image_target(images, rng)
    k_star = int(np.count_nonzero(ts))
    k = spec.k if spec.k is not None else int(min(d, max(1, round(spec.k_factor * k_star))))
    if spec.problem == "logistic":
        p = _sigmoid(X @ ts)
        y = p if spec.labels == "soft" else (rng.random(n) < p).astype(np.float64)
        problem = LogisticRegression(X, y, ts, lam=spec.lam)
    else:
        y = X @ ts
        if spec.noise:
            y = y + spec.noise * rng.standard_normal(n)
        problem = QuadraticProblem(X, y, ts)
    theta0 = uniform_init(d, rng) if spec.init == "uniform" else np.zeros(d)
    return Instance(problem, theta0, k, k_star)


# -------------------------------------------------------------------------------- running
def run_experiment(spec: SparseSpec | Mapping[str, Any], *, quiet: bool = True,
                   stream: TextIO | None = None):
    """Run every method on ``runs`` instances for ``steps`` iterations.

    Returns a :class:`mfpde.sparse.results.SparseResult` (arrays of shape (runs, steps) per
    method; see there). A diverging run (non-finite iterate) is marked in ``diverged`` and the rest
    of its trace is ``inf``.
    """
    from .results import MethodResult, SparseResult
    if not isinstance(spec, SparseSpec):
        spec = parse_spec(spec)
    out = stream if stream is not None else sys.stdout
    images = load_images(spec.images) if spec.prior == "images" else None
    t_start = time.perf_counter()
    seqs = np.random.SeedSequence(spec.seed).spawn(spec.runs)
    R, S = spec.runs, spec.steps
    arrays: dict[str, dict[str, np.ndarray]] = {}
    d = images.shape[1] if images is not None else spec.d
    targets = np.zeros((R, d))
    theta0s = np.zeros((R, d))
    k_star = np.zeros(R, dtype=np.int64)
    ks = np.zeros(R, dtype=np.int64)
    scale = 2.0 if spec.loss == "mse" else 1.0
    for m in spec.methods:
        arrays[m] = {q: np.full((R, S), np.nan) for q in
                     ("loss", "dist", "rel_dist", "precision", "recall", "time")}
        arrays[m]["x_final"] = np.zeros((R, d))
        arrays[m]["eta"] = np.zeros(R)
        arrays[m]["diverged"] = np.zeros(R, dtype=bool)
    n_madds = d * d * (spec.n or 2 * d)
    for r, ss in enumerate(seqs):
        with blas_threads(n_madds):               # small products: one BLAS thread
            inst = make_instance(spec, np.random.default_rng(ss), images)
        targets[r], theta0s[r] = inst.problem.theta_star, inst.theta0
        k_star[r], ks[r] = inst.k_star, inst.k
        for m in spec.methods:
            o = spec.method_options(m)
            drv = SparseDriver(inst.problem, m, inst.k, eta=o["eta"], damping=o["damping"],
                               curvature=o["curvature"], fisher_block=o["fisher_block"],
                               theta0=inst.theta0, loss_scale=scale)
            a = arrays[m]
            try:
                drv.step(S)
            except SparseDivergence:
                a["diverged"][r] = True
            h = drv.history()
            m_done = h["loss"].size
            for q in ("loss", "dist", "rel_dist", "precision", "recall", "time"):
                a[q][r, :m_done] = h[q]
                if m_done < S and q != "time":
                    a[q][r, m_done:] = np.inf if q in ("loss", "dist", "rel_dist") else np.nan
            a["x_final"][r] = drv.theta
            a["eta"][r] = drv.eta
        if not quiet:
            parts = [f"{m} dist {arrays[m]['dist'][r, -1]:.3g}" for m in spec.methods]
            print(f"run {r + 1}/{R}: k* = {k_star[r]}, k = {ks[r]}; " + ", ".join(parts),
                  file=out, flush=True)
    methods = {}
    for m in spec.methods:
        o = spec.method_options(m)
        a = arrays[m]
        methods[m] = MethodResult(method=m, loss=a["loss"], dist=a["dist"], rel_dist=a["rel_dist"],
                                  precision=a["precision"], recall=a["recall"], time=a["time"],
                                  x_final=a["x_final"], eta=a["eta"], diverged=a["diverged"],
                                  eta_rule=str(o["eta"]), damping=str(o["damping"]),
                                  curvature=o["curvature"])
    return SparseResult(spec=spec, methods=methods, theta_star=targets, theta0=theta0s,
                        k_star=k_star, k=ks, seconds=time.perf_counter() - t_start)


def with_fields(spec: SparseSpec, **changes) -> SparseSpec:
    """A re-validated copy of ``spec`` with some fields changed (``k`` and ``k_factor`` replace
    each other)."""
    raw = spec.to_dict()
    if "k" in changes:
        raw.pop("k_factor", None)
    if "k_factor" in changes:
        raw.pop("k", None)
    raw.update(changes)
    return parse_spec(raw)

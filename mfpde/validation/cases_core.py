"""Validation cases of the core engine: model forces, Langevin known answers, NC stationarity.

Each experiment is a plain function returning its measurements (used by the test suite too); the
registered cases turn them into :class:`~mfpde.validation.Check` rows and figures.

Cases (theory/validation.md section in brackets):

- ``core.fd_gradients`` [§U]: every model's force and ``W`` gradient against central finite
  differences of the width-N objective.
- ``core.linear_gibbs`` [§K1]: linear neuron, Gaussian law ``N(m(t), C(t))`` at ``t = 1`` and the
  Gibbs state at ``t = 8``; mean and covariance within 3 standard errors.
- ``core.teacher_fit`` [§V12, §V4b]: noiseless full-batch flow on a realizable teacher; the
  regularised loss never increases and falls below 1e-3.
- ``core.nc_stationary`` [§V5, §V6]: NC model with ``W`` trained; Lemma 4.5 residual of the
  time-averaged ``lam E[aa^T] - lam_W W W^T`` at most 10% of ``1/beta``; NC1 falls >= 100x.
- ``core.erf_kernel`` [§K5]: Monte Carlo kernel ``K = E[erf(X u) erf(u^T X)]`` of the particles
  against the closed form (Williams 1997); duplicated input gives ``lambda_min = 0``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg import expm

from ..data import gaussian_mixture, linear_gaussian, teacher_student
from ..dynamics import LangevinSolver
from ..metrics.collapse import nc1
from ..models import make_model
from . import Check, register


# --------------------------------------------------------------------------- experiments
def fd_gradient_errors(seed: int = 0) -> dict[str, float]:
    """Max relative error of ``model.gradient`` against central differences of ``J_N`` (N-rescaled).

    Returns ``{case name: error}`` for two-layer (trainable/fixed output, bias, weight decay) and NC
    models with several activations.
    """
    cases = {
        "two_layer/tanh": ("two_layer", dict(q=2, bias=True, lam=0.3, activation="tanh")),
        "two_layer/fixed/sigmoid": ("two_layer", dict(output="fixed", lam=0.1, activation="sigmoid")),
        "two_layer/erf": ("two_layer", dict(q=1, activation="erf")),
        "nc/tanh": ("nc", dict(q=3, p=4, Gamma=2.0, lam=0.05, lam_W=0.1, activation="tanh")),
        "nc/softplus/bias": ("nc", dict(q=2, p=3, Gamma=0.7, bias=True, activation="softplus")),
    }
    out = {}
    rng = np.random.default_rng(seed)
    for name, (kind, kw) in cases.items():
        m = make_model(kind, d=3, **kw)
        X, Y = rng.standard_normal((9, 3)) / math.sqrt(3), rng.standard_normal((9, m.q))
        th, W = m.init_particles(6, rng), m.init_W(rng)
        g = m.gradient(th, X, Y, W)

        def J(t, w):
            return m.risk(t, X, Y, w) + m.penalty(t, w)

        h, err = 1e-6, 0.0
        fd = np.zeros_like(th)
        for idx in np.ndindex(*th.shape):
            e = np.zeros_like(th)
            e[idx] = h
            fd[idx] = th.shape[0] * (J(th + e, W) - J(th - e, W)) / (2 * h)
        err = np.abs(fd - g.theta).max() / np.abs(g.theta).max()
        if W is not None:
            fdW = np.zeros_like(W)
            for idx in np.ndindex(*W.shape):
                e = np.zeros_like(W)
                e[idx] = h
                fdW[idx] = (J(th, W + e) - J(th, W - e)) / (2 * h)
            err = max(err, np.abs(fdW - g.W).max() / np.abs(g.W).max())
        out[name] = float(err)
    return out


def linear_gibbs(N: int = 4000, beta: float = 10.0, lam: float = 0.5, dt: float = 0.01,
                 times=(1.0, 8.0), seed: int = 3) -> dict:
    """Linear neuron (dynamics.md §2.4): particle moments against ``N(m(t), C(t))``.

    Returns per time: mean, covariance, their closed forms, and z-scores
    ``|estimate - exact| / SE`` (SE of the mean from the exact stationary law of the N-particle
    mean, ``Cov(m_N) = (Sigma + lam I)^{-1}/(beta N)``; SE of the covariance from the Gaussian
    sample covariance).
    """
    data = linear_gaussian(n=20, d=3, Sigma=np.array([1.0, 0.5, 0.25]),
                           b=np.array([0.5, -0.3, 0.2]), noise=0.1, seed=0)
    model = make_model("two_layer", d=3, q=1, activation="identity", output="fixed", lam=lam)
    X, y = data.X, data.Y[:, 0]
    Sigma, b = X.T @ X / len(y), X.T @ y / len(y)
    solver = LangevinSolver(model, data, N=N, dt=dt, beta=beta, seed=seed)
    m0, C0 = solver.theta.mean(0), np.cov(solver.theta.T)
    Mlin = Sigma + lam * np.eye(3)
    m_inf = np.linalg.solve(Mlin, b)
    se_mean = np.sqrt(np.diag(np.linalg.inv(Mlin)) / (beta * N))
    rows = []
    for T in times:
        solver.step(int(round(T / dt)) - solver.k)
        t = solver.t
        m_t = m_inf + expm(-Mlin * t) @ (m0 - m_inf)
        C_t = np.exp(-2 * lam * t) * C0 + (1 - np.exp(-2 * lam * t)) / (beta * lam) * np.eye(3)
        m_hat, C_hat = solver.theta.mean(0), np.cov(solver.theta.T)
        dg = np.sqrt(np.outer(np.diag(C_t), np.diag(C_t)))
        se_cov = np.sqrt((dg**2 + C_t**2) / (N - 1))
        rows.append(dict(t=t, mean=m_hat, mean_exact=m_t, cov=C_hat, cov_exact=C_t,
                         z_mean=float(np.max(np.abs(m_hat - m_t) / se_mean)),
                         z_cov=float(np.max(np.abs(C_hat - C_t) / se_cov))))
    return dict(rows=rows, theta=solver.theta.copy(), m_inf=m_inf, var_inf=1 / (beta * lam))


def teacher_fit(N: int = 1000, n: int = 200, dt: float = 1.0, steps: int = 300, lam: float = 0.0,
                seed: int = 0) -> dict:
    """Noiseless full-batch flow on a realizable tanh teacher (d = 5, k* = 3).

    Returns the regularised-loss path (one value per step) and the final risk.
    """
    data = teacher_student(n=n, d=5, k_star=3, activation="tanh", seed=seed)
    model = make_model("two_layer", d=5, q=1, activation="tanh", lam=lam)
    solver = LangevinSolver(model, data, N=N, dt=dt, seed=seed)
    path = [model.regularized_risk(solver.theta, data.X, data.Y)]
    for _ in range(steps):
        solver.step()
        path.append(model.regularized_risk(solver.theta, data.X, data.Y))
    path = np.array(path)
    return dict(t=np.arange(steps + 1) * dt, reg_loss=path,
                risk=model.risk(solver.theta, data.X, data.Y),
                max_increase=float(np.max(np.diff(path) / np.abs(path[1:]))))


def nc_stationary(N: int = 4000, beta: float = 200.0, Gamma: float = 3.0, dt: float = 0.05,
                  steps: int = 10_000, every: int = 100, seed: int = 0) -> dict:
    """NC model with ``W`` trained, ``lam = lam_W = 1/beta`` (validation.md §V5–§V6).

    Data: 3 Gaussian classes (m = 4, d = 4, sep 1, std 0.8) normalised to ``|x| <= 1`` plus the
    distinct coordinate of Assumption 2. Records NC1 and the Lemma 4.5 matrix
    ``M = lam A^T A/N - lam_W W W^T`` every ``every`` steps; the residual is that of the time average
    of ``M`` over the second half.
    """
    p, lam = 4, 1.0 / beta
    data = gaussian_mixture(q=3, m=4, d=4, sep=1.0, std=0.8, seed=0).normalized(0.99)
    data = data.with_extra_coordinate(seed=1)
    model = make_model("nc", d=5, q=3, p=p, Gamma=Gamma, lam=lam, lam_W=lam)
    solver = LangevinSolver(model, data, N=N, dt=dt, beta=beta, seed=seed)
    t, nc1s, res, risks, Ms = [0.0], [nc1(model.features(solver.theta, data.X), data.labels)], [], [], []
    A = solver.theta[:, :p]
    M = lam * A.T @ A / N - lam * solver.W @ solver.W.T
    res.append(np.linalg.norm(M - np.eye(p) / beta, 2))
    risks.append(model.risk(solver.theta, data.X, data.Y, solver.W))
    for k in range(steps // every):
        solver.step(every)
        A = solver.theta[:, :p]
        M = lam * A.T @ A / N - lam * solver.W @ solver.W.T
        t.append(solver.t)
        nc1s.append(nc1(model.features(solver.theta, data.X), data.labels))
        res.append(np.linalg.norm(M - np.eye(p) / beta, 2))
        risks.append(model.risk(solver.theta, data.X, data.Y, solver.W))
        if k >= steps // every // 2:
            Ms.append(M)
    avg_res = float(np.linalg.norm(np.mean(Ms, 0) - np.eye(p) / beta, 2))
    return dict(t=np.array(t), nc1=np.array(nc1s), residual=np.array(res), risk=np.array(risks),
                avg_residual=avg_res, beta=beta, nc1_ratio=nc1s[0] / nc1s[-1])


def erf_kernel(N: int = 200_000, seed: int = 0) -> dict:
    """Kernel of the erf features at initialisation, ``K = E_u[erf(X u) erf(u^T X)]``, u ~ N(0, I_d):
    Monte Carlo over particles (via the model's features with ``a = e_i``) against the closed form
    ``(2/pi) arcsin(2 x^T x' / sqrt((1 + 2|x|^2)(1 + 2|x'|^2)))`` (models.md §4)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((6, 3)) / 2
    model = make_model("two_layer", d=3, q=1, activation="erf", output="fixed")
    U = rng.standard_normal((N, 3))
    from ..activations import evaluate
    S = evaluate("erf", X @ U.T)                       # (n, N): the particles' features
    K_mc = S @ S.T / N
    nrm = 1 + 2 * np.sum(X**2, 1)
    K = 2 / np.pi * np.arcsin(2 * X @ X.T / np.sqrt(np.outer(nrm, nrm)))
    Xdup = np.vstack([X, X[:1]])
    Sdup = evaluate("erf", Xdup @ U[:5000].T)
    lam_min_dup = float(np.linalg.eigvalsh(Sdup @ Sdup.T / 5000)[0])
    return dict(err=float(np.abs(K_mc - K).max()), se=float(np.sqrt(1.0 / N)),
                lam_min=float(np.linalg.eigvalsh(K)[0]), lam_min_dup=lam_min_dup,
                f_check=float(np.abs(model.forward(U[:1000], X)[:, 0] - S[:, :1000].mean(1)).max()))


# --------------------------------------------------------------------------- cases
@register("core.fd_gradients", quick=True)
def case_fd(ctx):
    errs = fd_gradient_errors(ctx.seed)
    return [Check("core.fd_gradients", f"rel. error {k}", v, "< 1e-6", v < 1e-6) for k, v in errs.items()]


@register("core.linear_gibbs", quick=True)
def case_linear_gibbs(ctx):
    N = 4000 if ctx.quick else 40_000
    r = linear_gibbs(N=N, seed=ctx.seed + 3)
    checks = []
    for row in r["rows"]:
        checks.append(Check("core.linear_gibbs", f"mean z-score at t={row['t']:g}", row["z_mean"],
                            "< 3 (standard errors)", row["z_mean"] < 3))
        checks.append(Check("core.linear_gibbs", f"covariance z-score at t={row['t']:g}", row["z_cov"],
                            "< 3 (standard errors)", row["z_cov"] < 3))
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for i, ax in enumerate(axes):
        x = r["theta"][:, i]
        ax.hist(x, bins=60, density=True, alpha=0.6, label="particles")
        g = np.linspace(x.min(), x.max(), 200)
        s2 = r["var_inf"]
        ax.plot(g, np.exp(-(g - r["m_inf"][i])**2 / (2 * s2)) / np.sqrt(2 * np.pi * s2), "k-",
                label="Gibbs N(m_inf, 1/(beta lam))")
        ax.set_xlabel(f"theta_{i}")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Linear neuron, N={N}: particle marginals at t=8 vs the Gibbs law")
    ctx.save(fig, "linear_gibbs", dpi=100)
    return checks


@register("core.teacher_fit", quick=True)
def case_teacher_fit(ctx):
    r = teacher_fit(seed=ctx.seed)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(r["t"][1:], r["reg_loss"][1:])
    ax.set_xlabel("t")
    ax.set_ylabel("regularised loss")
    ax.set_title("Noiseless flow, realizable teacher, N=1000")
    ctx.save(fig, "teacher_fit", dpi=100)
    return [
        Check("core.teacher_fit", "final risk", r["risk"], "< 1e-3", r["risk"] < 1e-3),
        Check("core.teacher_fit", "max relative increase of reg. loss per step", r["max_increase"],
              "<= 1e-13 (non-increasing)", r["max_increase"] <= 1e-13),
    ]


@register("core.nc_stationary", quick=True)
def case_nc(ctx):
    r = nc_stationary(seed=ctx.seed)
    rel = r["avg_residual"] * r["beta"]
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(r["t"], r["nc1"], label="NC1 (Wu–Mondelli)")
    ax.semilogy(r["t"], r["residual"] * r["beta"], label="Lemma 4.5 residual x beta (snapshot)")
    ax.semilogy(r["t"], r["risk"], label="risk")
    ax.axhline(0.1, color="k", ls=":", lw=0.8)
    ax.set_xlabel("t")
    ax.legend(fontsize=7)
    ax.set_title("NC model, beta=200, Gamma=3, N=4000")
    ctx.save(fig, "nc_stationary", dpi=100)
    return [
        Check("core.nc_stationary", "Lemma 4.5 residual (time average) x beta", rel, "<= 0.1", rel <= 0.1),
        Check("core.nc_stationary", "NC1(0) / NC1(T)", r["nc1_ratio"], ">= 100", r["nc1_ratio"] >= 100),
    ]


@register("core.erf_kernel", quick=True)
def case_erf(ctx):
    r = erf_kernel(seed=ctx.seed)
    return [
        Check("core.erf_kernel", "max |K_MC - K_closed|", r["err"], f"< 5 x 1/sqrt(N) = {5 * r['se']:.1e}",
              r["err"] < 5 * r["se"]),
        Check("core.erf_kernel", "lambda_min(K) distinct inputs", r["lam_min"], "> 0", r["lam_min"] > 0),
        Check("core.erf_kernel", "lambda_min(K_MC) duplicated input", r["lam_min_dup"], "~ 0 (< 1e-12)",
              abs(r["lam_min_dup"]) < 1e-12),
        Check("core.erf_kernel", "model forward = mean feature", r["f_check"], "< 1e-14", r["f_check"] < 1e-14),
    ]

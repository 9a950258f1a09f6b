"""The mixed-effects estimator (immunopd.nlme) against NONMEM 7.5.1 on its phenobarbital run.

NONMEM's numbers are read from the shipped run files (data/pheno/, from the pharmpy-core 2.1.1
wheel): the final estimates, OFV and standard errors from pheno.ext, the per-subject OBJ and
EBEs from pheno.phi, PRED/CIPREDI/CWRES from pheno.tab, shrinkage from pheno.lst.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from immunopd import nlme
from immunopd.errors import InputError, ParameterError

PHENO = Path(__file__).resolve().parents[1] / "data" / "pheno"
#: NONMEM's .ext column -> our parameter name
EXT_NAMES = {"THETA1": "POP_CL", "THETA2": "POP_VC", "THETA3": "COVAPGR", "OMEGA(1,1)": "OMEGA(CL,CL)",
             "OMEGA(2,2)": "OMEGA(V,V)", "SIGMA(1,1)": "SIGMA(proportional)"}


def nonmem_ext():
    ext = nlme.read_nonmem_table(PHENO / "pheno.ext").set_index("ITERATION")
    return ext.loc[-1000000000], ext.loc[-1000000001]


@pytest.fixture(scope="module")
def pheno_data():
    return nlme.read_nonmem_table(PHENO / "pheno.dta")


@pytest.fixture(scope="module")
def pheno():
    """One model object for the module: compiled functions are cached per model object."""
    return nlme.pheno_model()


@pytest.fixture(scope="module")
def pheno_fit(pheno, pheno_data):
    return nlme.fit(pheno, pheno_data)


def test_model_matches_the_control_stream():
    text = (PHENO / "pheno.mod").read_text()
    for line in ("TVCL = THETA(1)*WGT", "TVV = THETA(2)*WGT", "IF(APGR.LT.5) TVV = TVV*(1 + THETA(3))",
                 "CL = TVCL*EXP(ETA_CL)", "VC = TVV*EXP(ETA_VC)", "Y = F + F*EPS(1)",
                 "$ESTIMATION METHOD=1 INTERACTION", "$COVARIANCE UNCONDITIONAL"):
        assert line in text
    assert "MATRIX" not in text  # so the covariance step is NONMEM's default sandwich R^-1 S R^-1
    m = nlme.pheno_model()
    inits = dict(zip(m.parameter_names(), [t.initial for t in m.thetas] + list(m.omega) + list(m.sigma)))
    for col, value in nlme.read_nonmem_table(PHENO / "pheno.ext").set_index("ITERATION").loc[0].items():
        if col in EXT_NAMES:
            assert inits[EXT_NAMES[col]] == pytest.approx(value, rel=1e-5)


def test_pheno_reproduces_nonmem(pheno_fit):
    final, se = nonmem_ext()
    fit = pheno_fit
    assert fit.status == "converged", fit.report()
    assert fit.ofv == pytest.approx(final["OBJ"], abs=0.1)
    est, ses = fit.estimates(), fit.standard_errors()
    for col, name in EXT_NAMES.items():
        assert est[name] == pytest.approx(final[col], rel=0.01), name
        assert ses[name] == pytest.approx(se[col], rel=0.05), name
    # tighter than the issue asks: what the run actually achieves
    assert fit.ofv == pytest.approx(final["OBJ"], abs=1e-3)
    for col, name in EXT_NAMES.items():
        assert est[name] == pytest.approx(final[col], rel=2e-3), name
        assert ses[name] == pytest.approx(se[col], rel=5e-3), name


def test_covariance_matrix_matches_nonmem(pheno_fit):
    cov = nlme.read_nonmem_table(PHENO / "pheno.cov").set_index("NAME")
    ours = pheno_fit.dataset.covariance
    for a, na in EXT_NAMES.items():
        for b, nb in EXT_NAMES.items():
            ref = cov.loc[a, b]
            scale = np.sqrt(cov.loc[a, a] * cov.loc[b, b])
            assert float(ours.sel(parameter=na, parameter_2=nb)) == pytest.approx(ref, abs=0.02 * scale), (a, b)
    # R and S are kept, and the covariance is the sandwich R^-1 S R^-1 of exactly those
    r, s = pheno_fit.dataset.r_matrix.values, pheno_fit.dataset.s_matrix.values
    rinv = np.linalg.inv(r)
    np.testing.assert_allclose(rinv @ s @ rinv, ours.values, rtol=1e-8, atol=1e-10 * np.max(np.abs(ours.values)))


def test_subjects_ebes_and_residuals_match_nonmem(pheno_fit):
    ds = pheno_fit.dataset
    phi = nlme.read_nonmem_table(PHENO / "pheno.phi")
    assert list(ds.subject.values) == list(phi.ID)
    # EBEs and OBJ at our estimates (NONMEM's agree to ~1e-4 relative): per subject
    np.testing.assert_allclose(ds.ebe.values, phi[["ETA(1)", "ETA(2)"]].values, atol=2e-3)
    np.testing.assert_allclose(ds.subject_ofv.values, phi.OBJ.values, atol=5e-3)
    np.testing.assert_allclose(ds.ebe_covariance.values[:, 0, 0], phi["ETC(1,1)"].values, rtol=0.02)
    tab = nlme.read_nonmem_table(PHENO / "pheno.tab").iloc[ds.observation.values]
    np.testing.assert_allclose(ds.DV.values, tab.DV.values)
    np.testing.assert_allclose(ds.PRED.values, tab.PRED.values, rtol=2e-4)
    np.testing.assert_allclose(ds.IPRED.values, tab.CIPREDI.values, rtol=2e-4)
    np.testing.assert_allclose(ds.CWRES.values, tab.CWRES.values, atol=2e-3)
    lst = (PHENO / "pheno.lst").read_text()
    etashr = [float(x) for x in re.search(r"ETASHRINKSD\(%\)\s+(\S+)\s+(\S+)", lst).groups()]
    epsshr = float(re.search(r"EPSSHRINKSD\(%\)\s+(\S+)", lst).group(1))
    np.testing.assert_allclose(ds.eta_shrinkage_sd.values, etashr, atol=0.1)
    assert float(ds.eps_shrinkage_sd) == pytest.approx(epsshr, abs=0.1)
    assert ds.PRED.attrs["units"] == "mg/L" and ds.TIME.attrs["units"] == "h"


def test_report_reads_like_nonmem(pheno_fit):
    text = pheno_fit.report()
    assert "OBJECTIVE FUNCTION VALUE WITHOUT CONSTANT: 586.276" in text
    assert "status: converged" in text and "FOCE-I" in text
    for name in ("POP_CL", "POP_VC", "COVAPGR", "OMEGA(CL,CL)", "OMEGA(V,V)", "SIGMA(proportional)"):
        assert name in text
    assert "ETA shrinkage (SD): CL 47.6%, V 13.6%" in text


def test_pheno_is_fast_when_warm(pheno, pheno_fit, pheno_data):
    again = nlme.fit(pheno, pheno_data)  # compiled by the first fit
    assert again.ofv == pytest.approx(pheno_fit.ofv, abs=1e-6)
    assert again.dataset.attrs["elapsed_s"] < 5.0  # measured ~0.25 s on the 2-core development machine


def test_pk_predictor_matches_closed_form_and_two_compartments():
    import jax.numpy as jnp

    from immunopd.pkmodels import LinearPK

    one = nlme.pk_predictor()
    t = jnp.array([1.0, 5.0, 30.0])
    doses_t, doses_a = jnp.array([0.0, 4.0, 0.0]), jnp.array([10.0, 5.0, 0.0])  # last: padding
    c = one({"clearance": 0.5, "central_volume": 2.0}, doses_t, doses_a, t)
    k = 0.25
    expected = 10 / 2 * np.exp(-k * np.array([1, 5, 30])) + np.where(t >= 4, 5 / 2 * np.exp(-k * (np.asarray(t) - 4)), 0)
    np.testing.assert_allclose(c, expected, rtol=1e-12)
    two = nlme.pk_predictor(LinearPK(compartments=2, allows_bolus=True))
    v = {"clearance": 0.5, "central_volume": 2.0, "intercompartmental_clearance": 1e-9, "peripheral_volume": 3.0}
    np.testing.assert_allclose(two(v, doses_t, doses_a, t), expected, rtol=1e-6)


def simulate_population(seed=3, n=40):
    """A pheno-like population from known parameters: (data, truth, the variances of the drawn etas)."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    model = nlme.pheno_model()
    truth = {"POP_CL": 0.005, "POP_VC": 1.0, "COVAPGR": 0.2, "OMEGA(CL,CL)": 0.04, "OMEGA(V,V)": 0.03,
             "SIGMA(proportional)": 0.01}
    times = np.array([2.0, 12.0, 24.0, 48.0, 96.0, 144.0, 192.0])
    rows, etas = [], []
    for i in range(1, n + 1):
        wgt, apgr = rng.uniform(0.8, 3.0), int(rng.integers(1, 11))
        eta = rng.normal(0, np.sqrt([truth["OMEGA(CL,CL)"], truth["OMEGA(V,V)"]]))
        etas.append(eta)
        cl = truth["POP_CL"] * wgt * np.exp(eta[0])
        v = truth["POP_VC"] * wgt * (1 + truth["COVAPGR"] * (apgr < 5)) * np.exp(eta[1])
        f = np.asarray(model.predict({"CL": cl, "V": v}, jnp.array([0.0, 72.0]), jnp.array([20.0 * wgt, 5.0 * wgt]),
                                     jnp.asarray(times)))
        y = f * (1 + rng.normal(0, np.sqrt(truth["SIGMA(proportional)"]), f.shape))
        rows.append((i, 0.0, 20.0 * wgt, wgt, apgr, 0.0))
        rows.append((i, 72.0, 5.0 * wgt, wgt, apgr, 0.0))
        rows += [(i, t, 0.0, wgt, apgr, yy) for t, yy in zip(times, y)]
    data = pd.DataFrame(rows, columns=["ID", "TIME", "AMT", "WGT", "APGR", "DV"]).sort_values(["ID", "TIME"], kind="stable")
    drawn = dict(zip(["OMEGA(CL,CL)", "OMEGA(V,V)"], np.var(etas, axis=0)))
    return data.reset_index(drop=True), truth, drawn


@pytest.fixture(scope="module")
def simulated():
    return simulate_population()


@pytest.fixture(scope="module")
def simulated_fit(pheno, simulated):
    return nlme.fit(pheno, simulated[0])


def test_simulated_population_is_recovered(simulated, simulated_fit):
    data, truth, drawn = simulated
    fit = simulated_fit
    assert fit.status == "converged", fit.report()
    est, se = fit.estimates(), fit.standard_errors()
    # every estimate within 3 standard errors of what generated the data: THETA and SIGMA the
    # truth, OMEGA the variance of the 40 etas actually drawn (0.020 and 0.017 here, for 0.04 and
    # 0.03: with 40 subjects the sample, not the population, is what the data can show)
    for name, value in {**truth, **drawn}.items():
        assert abs(est[name] - value) < 3 * se[name], (name, est[name], value, se[name])
    for name in ("POP_CL", "POP_VC"):
        assert est[name] == pytest.approx(truth[name], rel=0.10)


def test_full_omega_and_combined_error(pheno, simulated, simulated_fit):
    data, truth, drawn = simulated
    m = nlme.NLMEModel(name="pheno, full OMEGA, combined error", thetas=pheno.thetas, parameters=pheno.parameters,
                       typical=pheno.typical, predict=pheno.predict, etas=pheno.etas,
                       omega=((0.03, 0.005), (0.005, 0.03)), omega_structure="full", sigma=(0.01, 0.05),
                       error="combined", covariates=pheno.covariates, units=pheno.units)
    fit = nlme.fit(m, data)
    assert fit.status == "converged", fit.report()
    assert fit.model.parameter_names() == ["POP_CL", "POP_VC", "COVAPGR", "OMEGA(CL,CL)", "OMEGA(V,CL)", "OMEGA(V,V)",
                                           "SIGMA(proportional)", "SIGMA(additive)"]
    # the proportional, diagonal model is nested in this one: its OFV cannot be lower
    assert fit.ofv <= simulated_fit.ofv + 1e-4
    est, se = fit.estimates(), fit.standard_errors()
    for name, value in {**truth, **drawn, "OMEGA(V,CL)": 0.0, "SIGMA(additive)": 0.0}.items():
        assert abs(est[name] - value) < 3 * se[name], (name, est[name], value, se[name])


def test_non_convergence_and_singular_covariance_are_statuses(pheno, pheno_data):
    stopped = nlme.fit(pheno, pheno_data, maxiter=1)
    assert stopped.status.startswith("not converged: largest |gradient|")
    assert not stopped.converged
    base = nlme.pheno_model()
    # a THETA the predictions do not depend on: the R matrix is singular
    ghost = nlme.NLMEModel(name="pheno with an unused THETA", thetas=(*base.thetas, nlme.Theta("UNUSED", 1.0, 0.0)),
                           parameters=base.parameters, typical=base.typical, predict=base.predict, etas=base.etas,
                           omega=base.omega, sigma=base.sigma, error=base.error, covariates=base.covariates,
                           units=base.units)
    fit = nlme.fit(ghost, pheno_data)
    assert fit.covariance_status.startswith("covariance step failed: R matrix")
    assert fit.covariance_status.endswith("the objective does not depend on UNUSED")
    assert fit.status == fit.covariance_status or fit.status.startswith("not converged")
    assert np.isnan(fit.dataset.se.values).all() and "n/a" in fit.report()


def test_covariance_step_names_why_its_matrix_is_singular():
    """A parameter the OFV does not depend on is told apart from one that is merely negligible
    beside a huge curvature (a badly scaled R, as one lesion on a cliff of its prediction gives)."""
    names, rel = ["A", "B", "C"], np.ones(3)
    assert nlme._matrix_problem("R", np.diag([2.0, 3.0, 0.0]), names, rel) == (
        "R matrix singular: the objective does not depend on C")
    assert nlme._matrix_problem("R", np.diag([1e13, 5.0, 2.0]), names, rel) == (
        "R matrix singular: its diagonal along B, C (5, 2, for relative changes) is below 1e-9 of that along A (1e+13)")
    # the diagonal is read for relative changes: 4e6 per unit of a parameter of scale 1e-3 is 4
    m = np.diag([1e12, 4e6])
    assert nlme._matrix_problem("S", m, ["A", "B"], np.array([1.0, 1e-3])) == (
        "S matrix singular: its diagonal along B (4, for relative changes) is below 1e-9 of that along A (1e+12)")
    assert nlme._matrix_problem("S", m, ["A", "B"], np.ones(2)) is None
    assert nlme._matrix_problem("R", np.array([[1.0, 2.0], [2.0, 1.0]]), ["A", "B"], np.ones(2)).startswith(
        "R matrix not positive definite (eigenvalues of its correlation form -1 to 3;")
    assert nlme._matrix_problem("R", np.eye(3), names, rel) is None
    # negative curvature (R at a point that is not a minimum) is not called singular
    assert nlme._matrix_problem("R", np.diag([1.0, -0.5]), ["A", "B"], np.ones(2)) == (
        "R matrix not positive definite: negative curvature along B (-0.5, for relative changes)")
    assert nlme._matrix_problem("R", np.diag([1e13, 0.0, -3.0, 5.0]), ["A", "B", "C", "D"], np.ones(4)) == (
        "R matrix not positive definite: the objective does not depend on B; negative curvature along C (-3, for"
        " relative changes); its diagonal along D (5, for relative changes) is below 1e-9 of that along A (1e+13)")


def test_bad_input_is_named():
    base = nlme.pheno_model()
    with pytest.raises(ParameterError) as err:
        nlme.NLMEModel(name="x", thetas=base.thetas, parameters=base.parameters, typical=base.typical,
                       predict=base.predict, etas=("CL", "KA"), omega=(0.1, 0.1), sigma=(0.01,))
    assert str(err.value) == ("NLMEModel.etas[1] = 'KA' is not allowed; allowed: one of the individual parameters"
                              " ['CL', 'V']")
    data = pd.DataFrame({"ID": [1, 1, 2], "TIME": [0.0, 2.0, 0.0], "AMT": [10.0, 0.0, 10.0], "DV": [0.0, 5.0, 0.0],
                         "WGT": [1.0, 1.0, 2.0], "APGR": [5, 5, 7]})
    with pytest.raises(InputError) as err:
        nlme.fit(base, data)
    assert str(err.value) == ("subject ID 2 = 'no observations' is not allowed; allowed: at least one observation"
                              " record (EVID=0/MDV=0, or AMT=0 when there is no EVID column) per subject")
    data.loc[2, ["TIME", "AMT"]] = [3.0, 0.0]
    data.loc[1, "DV"] = 0.0
    with pytest.raises(InputError) as err:
        nlme.fit(base, data)
    assert str(err.value) == ("subject ID 1 DV at TIME 2 = 0.0 is not allowed; allowed: positive observations with the"
                              " proportional error model (a zero concentration is usually below the limit of"
                              " quantification: drop it or use 'combined')")
    with pytest.raises(ParameterError) as err:
        nlme.fit(base, data.assign(DV=1.0), initial={"THETA9": 1.0})
    assert str(err.value).startswith("initial['THETA9'] = 1.0 is not allowed; allowed: one of the model's parameters")
    with pytest.raises(InputError) as err:
        nlme.fit(base, data.drop(columns="WGT"))
    assert "columns including ['WGT']" in str(err.value)
    twice = pd.concat([data.assign(DV=1.0), data.assign(ID=data.ID + 2, DV=1.0)])  # concat keeps each frame's labels
    with pytest.raises(InputError) as err:
        nlme.fit(base, twice)
    assert str(err.value) == ("data index = 'repeated labels [0, 1, 2]' is not allowed; allowed: one label per row (the"
                              " results name each observation by its row label): data.reset_index(drop=True), or"
                              " pd.concat(..., ignore_index=True)")


def test_progress_reports_iterations_and_the_objective(capsys):
    """fit(progress=True) shows the BFGS iterations with the current OFV (a long fit says where it is, #18)."""
    res = nlme.fit(nlme.pheno_model(), nlme.read_nonmem_table(PHENO / "pheno.dta"), covariance=None, progress=True)
    err = capsys.readouterr().err
    assert "FOCE-I" in err and "OFV=586.276" in err
    assert res.estimation_status == "converged"


def test_map_estimates_at_nonmems_estimates_are_its_ebes(pheno, pheno_data):
    """POSTHOC at NONMEM's final estimates gives NONMEM's EBEs (pheno.phi), and the individual
    predictions at them NONMEM's CIPREDI (pheno.tab)."""
    final, _ = nonmem_ext()
    est = {ours: float(final[col]) for col, ours in EXT_NAMES.items()}
    post = nlme.map_estimates(pheno, pheno_data, est)
    phi = nlme.read_nonmem_table(PHENO / "pheno.phi")
    assert list(post.subject.values) == list(phi.ID) and bool(post.map_found.all())
    np.testing.assert_allclose(post.ebe.values, phi[["ETA(1)", "ETA(2)"]].values, atol=1e-4)
    np.testing.assert_allclose(post.ebe_covariance.values[:, 1, 1], phi["ETC(2,2)"].values, rtol=0.02)
    obs = pheno_data[pheno_data.AMT == 0]
    dose = pheno_data[pheno_data.AMT > 0]
    first = obs.groupby("ID").TIME.apply(list)
    width = max(map(len, first))
    times = np.array([t + [t[-1]] * (width - len(t)) for t in first])
    dts = dose.groupby("ID").TIME.apply(list)
    das = dose.groupby("ID").AMT.apply(list)
    dwidth = max(map(len, dts))
    pad = lambda rows: np.array([r + [0.0] * (dwidth - len(r)) for r in rows])  # noqa: E731
    pred = nlme.predict_individuals(pheno, post.individual.values, times, pad(list(dts)), pad(list(das)))
    tab = nlme.read_nonmem_table(PHENO / "pheno.tab")
    tab = tab[pheno_data.AMT.values == 0]
    ours = np.concatenate([pred[i, :len(t)] for i, t in enumerate(first)])
    np.testing.assert_allclose(ours, tab.CIPREDI.values, rtol=2e-4)
    with pytest.raises(ParameterError, match=r"missing \['SIGMA\(proportional\)'\]"):
        nlme.map_estimates(pheno, pheno_data, {k: v for k, v in est.items() if k != "SIGMA(proportional)"})


def test_chunks_ordered_by_follow_up_find_the_same_modes(pheno, pheno_data, monkeypatch):
    """The inner problem in chunks of subjects ordered by last observation (how many lesions are
    solved) gives the same conditional modes as one vmap over everyone, and NONMEM's EBEs."""
    final, _ = nonmem_ext()
    est = {ours: float(final[col]) for col, ours in EXT_NAMES.items()}
    monkeypatch.setattr(nlme, "_SORTED_CHUNK", 0)
    one_vmap = nlme.map_estimates(pheno, pheno_data, est)
    monkeypatch.setattr(nlme, "_SORTED_CHUNK", 7)  # 59 subjects: 9 chunks, the last one padded
    chunked = nlme.map_estimates(pheno, pheno_data, est)
    assert list(chunked.subject.values) == list(one_vmap.subject.values) and bool(chunked.map_found.all())
    np.testing.assert_allclose(chunked.ebe.values, one_vmap.ebe.values, atol=1e-9)
    phi = nlme.read_nonmem_table(PHENO / "pheno.phi")
    np.testing.assert_allclose(chunked.ebe.values, phi[["ETA(1)", "ETA(2)"]].values, atol=1e-4)
    # the local quadratic models behind FOCE-I's OFV and its gradient come back in subject order too
    import jax.numpy as jnp

    d, eng = nlme._prepare(pheno, pheno_data), nlme._engine(pheno)
    jd = nlme._device_data(d)
    p = jnp.asarray([est[n] for n in pheno.parameter_names()])
    runs = {}
    for chunk in (0, 7):
        monkeypatch.setattr(nlme, "_SORTED_CHUNK", chunk)
        eta, _, local, found = nlme._conditional_modes(eng, p, jnp.zeros((len(d.ids), 2)), jd)
        vals, jac = eng.values_and_jacobian(p, eta, local, jd)
        runs[chunk] = (np.asarray(vals), np.asarray(jac), [np.asarray(x) for x in local])
    np.testing.assert_allclose(runs[7][0], runs[0][0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(runs[7][1], runs[0][1], rtol=1e-7, atol=1e-7)
    for a, b in zip(runs[7][2], runs[0][2]):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_inner_expansion_along_the_etas_only_gives_the_full_objective_and_gradient(pheno_data, monkeypatch):
    """With an eta on CL only, the inner Newton steps expand the prediction along CL alone; the
    modes, the per-subject OFV and its gradient in every THETA (V's included, which needs the
    full expansion at the mode) are those of expanding along every parameter throughout."""
    import dataclasses

    import jax.numpy as jnp

    model = dataclasses.replace(nlme.pheno_model(), etas=("CL",), omega=(0.0309626,))
    d = nlme._prepare(model, pheno_data)
    jd = nlme._device_data(d)
    p = jnp.asarray([0.0047, 1.0, 0.15, 0.03, 0.013])  # POP_CL, POP_VC, COVAPGR, OMEGA(CL), SIGMA
    runs = {}
    for eta_only in (True, False):
        monkeypatch.setattr(nlme, "_EXPAND_ETA_DIRECTIONS_ONLY", eta_only)
        eng = nlme._Engine(model)
        eta, _, local, found = nlme._conditional_modes(eng, p, jnp.zeros((len(d.ids), 1)), jd)
        vals, jac = eng.values_and_jacobian(p, eta, local, jd)
        assert bool(np.all(found))
        runs[eta_only] = (np.asarray(eta), np.asarray(vals), np.asarray(jac))
    np.testing.assert_allclose(runs[True][0], runs[False][0], atol=1e-9)
    np.testing.assert_allclose(runs[True][1], runs[False][1], rtol=1e-10)
    np.testing.assert_allclose(runs[True][2], runs[False][2], rtol=1e-7, atol=1e-9)
    assert np.abs(runs[True][2][:, 1]).max() > 1.0  # the gradient in POP_VC is not trivially zero


def test_a_covariate_read_by_the_prediction_gives_nonmems_pheno_fit(pheno_data):
    """Predictor covariates (data items the prediction reads, as NONMEM's $PK reads WGT): pheno
    with weight applied inside the prediction instead of in the typical values has the same
    likelihood, so the fit must land on NONMEM's minimum (pheno.ext: OFV 586.276) with the same
    estimates; predict_individuals needs the weights and is refused without them."""
    import dataclasses

    import jax.numpy as jnp

    base = nlme.pheno_model()
    per_kg = nlme.pk_predictor(roles={"clearance": "CL", "central_volume": "V"})

    def typical(theta, cov):  # per kg: the weight is applied by the prediction
        return {"CL": theta["POP_CL"], "V": jnp.where(cov["APGR"] < 5, theta["POP_VC"] * (1 + theta["COVAPGR"]), theta["POP_VC"])}

    def predict(p, dose_t, dose_a, obs_t):
        return per_kg({"CL": p["CL"] * p["WGT"], "V": p["V"] * p["WGT"]}, dose_t, dose_a, obs_t)

    model = dataclasses.replace(base, typical=typical, predict=predict, predictor_covariates=("WGT",))
    fit = nlme.fit(model, pheno_data)
    final, _ = nonmem_ext()
    assert fit.ofv == pytest.approx(final["OBJ"], abs=0.1)
    est = fit.estimates()
    for col, name in EXT_NAMES.items():
        assert est[name] == pytest.approx(final[col], rel=0.01), name
    individual = np.array([[est["POP_CL"], est["POP_VC"]]])
    times = np.array([[0.0, 2.0, 12.0]])
    with pytest.raises(InputError) as exc:
        nlme.predict_individuals(model, individual, times, np.zeros((1, 1)), np.full((1, 1), 25.0))
    assert str(exc.value) == ("covariates = [] is not allowed; allowed: a value per subject for each of ['WGT'] (the"
                              " covariates the model's prediction reads)")
    f = nlme.predict_individuals(model, individual, times, np.zeros((1, 1)), np.full((1, 1), 25.0), covariates={"WGT": [1.4]})
    cl, v = est["POP_CL"] * 1.4, est["POP_VC"] * 1.4  # one bolus of 25 mg at time 0: closed form
    np.testing.assert_allclose(f[0], 25.0 / v * np.exp(-cl / v * times[0]), rtol=1e-12)
    with pytest.raises(InputError) as exc:
        dataclasses.replace(base, predictor_covariates=("BSA",))
    assert str(exc.value) == ("NLMEModel.predictor_covariates[0] = 'BSA' is not allowed; allowed: one of the model's"
                              " covariates ['WGT', 'APGR']")


def _spy_on_conditional_modes(monkeypatch):
    """Record (starting etas, modes found) of every inner-problem solve."""
    calls = []
    real = nlme._conditional_modes

    def spy(eng, p, eta0, jd):
        out = real(eng, p, eta0, jd)
        calls.append((np.asarray(eta0).copy(), np.asarray(out[0]).copy()))
        return out

    monkeypatch.setattr(nlme, "_conditional_modes", spy)
    return calls


def test_the_final_evaluation_starts_from_the_accepted_points_modes(pheno, pheno_data, monkeypatch):
    """The estimate is the optimizer's accepted point; its OFV, gradient and etas are re-evaluated
    from the conditional modes found there, not from those of the last point tried (a rejected
    line-search step, where a subject with two modes may have moved to the other). An optimizer
    that tries a far point and then returns its first shows which modes the last pass starts from."""
    import scipy.optimize
    from scipy.optimize import OptimizeResult

    calls = _spy_on_conditional_modes(monkeypatch)
    def rejecting(fun, u0, jac=True, **kws):
        fun(u0)
        fun(u0 + 0.5)  # a trial point, rejected
        return OptimizeResult(x=u0, nit=1, message="returned the first point")

    monkeypatch.setattr(scipy.optimize, "minimize", rejecting)
    fit = nlme.fit(pheno, pheno_data, covariance=None)
    (_, at_first), (_, at_trial), (start_of_last, _) = calls[0], calls[1], calls[-1]
    assert len(calls) == 3 and np.abs(at_trial - at_first).max() > 0.01
    np.testing.assert_array_equal(start_of_last, at_first)
    assert "returned the first point" in fit.estimation_status


def test_anchored_optimizer_reproduces_nonmem(pheno, pheno_data):
    """The anchored quasi-Newton lands on NONMEM's pheno minimum as scipy's BFGS does."""
    final, se = nonmem_ext()
    fit = nlme.fit(pheno, pheno_data, optimizer="anchored")
    assert fit.status == "converged", fit.report()
    assert fit.ofv == pytest.approx(final["OBJ"], abs=1e-3)
    est, ses = fit.estimates(), fit.standard_errors()
    for col, name in EXT_NAMES.items():
        assert est[name] == pytest.approx(final[col], rel=2e-3), name
        assert ses[name] == pytest.approx(se[col], rel=0.05), name
    assert fit.dataset.attrs["optimizer"].startswith(nlme.OPTIMIZERS["anchored"])


def _tagged(objective):
    """An evaluate() for _anchored_bfgs that records (point, etas it started from) and leaves a tag
    of the point as the etas it "found"."""
    state, calls = {"eta": "start"}, []

    def evaluate(u, eta_start):
        calls.append((np.array(u), eta_start))
        state["eta"] = ("etas at", tuple(u))
        out = objective(np.asarray(u))
        state["ofv"] = float(out[0])  # as fit's evaluate does
        return out

    return state, calls, evaluate


def _one_iteration(points, max_step=5.0):
    """One iteration from u = 0 on a 1-D objective given as {u: (value, slope)} at the points tried."""
    state, calls, evaluate = _tagged(lambda u: (points[float(u[0])][0], np.array([points[float(u[0])][1]])))
    res = nlme._anchored_bfgs(evaluate, state, np.array([0.0]), gtol=1e-12, maxiter=1, max_step=max_step)
    return res, state, [float(u[0]) for u, _ in calls]


def _check_anchoring(calls, accepted, max_step):
    """Every evaluation after the first starts from the latest accepted point's etas, moves no
    coordinate more than max_step from it, and no point is evaluated twice for one anchor."""
    assert calls[0][1] == "start"
    i, seen = 0, set()
    for u, eta_start in calls[1:]:
        while eta_start != ("etas at", tuple(accepted[i])):  # the next accepted point became the anchor
            i += 1
            seen = set()
        assert np.max(np.abs(u - accepted[i])) <= max_step * (1 + 1e-12)
        assert u.tobytes() not in seen
        seen.add(u.tobytes())


def test_anchored_trial_points_start_from_the_accepted_points_etas():
    """On Rosenbrock's function (minimum at (1, 1), closed form) every trial point starts from the
    last accepted point's etas and stays within max_step of it."""
    def rosenbrock(u):
        x, y = u
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2, np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    state, calls, evaluate = _tagged(rosenbrock)
    accepted = [np.array([-1.2, 1.0])]
    res = nlme._anchored_bfgs(evaluate, state, accepted[0], gtol=1e-8, maxiter=500, max_step=0.3,
                              callback=lambda u: accepted.append(np.array(u)))
    assert res.success and res.message == "gradient below gtol"
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-7)
    assert res.eta == ("etas at", tuple(res.x)) == state["eta"]
    assert res.nit == len(accepted) - 1
    _check_anchoring(calls, accepted, 0.3)
    assert state["ofv"] == res.fun


def test_anchored_ends_on_the_accepted_points_etas_after_a_rejected_trial():
    """A slope that ends in a floor (f = max(-u, -2.5)) while its gradient says it falls on (-1):
    steps of max_step 1 are taken to u = 3, then every trial is rejected, and the result (point,
    value, etas, iterations) is the last accepted one's."""
    def floor(u):
        return max(-float(u[0]), -2.5), np.array([-1.0])

    state, calls, evaluate = _tagged(floor)
    accepted = [np.array([0.0])]
    res = nlme._anchored_bfgs(evaluate, state, accepted[0], gtol=1e-12, maxiter=50, max_step=1.0,
                              callback=lambda u: accepted.append(np.array(u)))
    assert not res.success and res.message == "line search found no sufficient decrease of the OFV in 12 step reductions"
    np.testing.assert_allclose(np.concatenate(accepted), [0.0, 1.0, 2.0, 3.0])
    assert calls[-1][0].tobytes() != res.x.tobytes()  # the last evaluation was a rejected trial
    assert res.eta == ("etas at", tuple(res.x)) == state["eta"]
    assert res.nit == 3 and res.fun == -2.5 and state["ofv"] == -2.5
    _check_anchoring(calls, accepted, 1.0)
    for maxiter in (0, 2):
        state, calls, evaluate = _tagged(floor)
        res = nlme._anchored_bfgs(evaluate, state, np.array([0.0]), gtol=1e-12, maxiter=maxiter, max_step=1.0)
        assert res.nit == maxiter and res.message == f"maximum number of iterations ({maxiter}) reached"
        assert res.x[0] == maxiter and res.eta == ("etas at", (float(maxiter),))


def test_anchored_extends_a_short_first_step_up_to_the_cap():
    """A slope the cap binds on (f = -u + 1e-6 u^2 / 2, max_step 5): the unit step is accepted with
    the slope still as steep, so it is doubled up to the cap: 1, 2, 4, then 5."""
    state, calls, evaluate = _tagged(lambda u: (float(-u[0] + 0.5e-6 * u[0] ** 2), np.array([-1 + 1e-6 * u[0]])))
    res = nlme._anchored_bfgs(evaluate, state, np.array([0.0]), gtol=1e-12, maxiter=1, max_step=5.0)
    np.testing.assert_allclose(res.x, [5.0])
    np.testing.assert_allclose([u[0] for u, _ in calls], [0.0, 1.0, 2.0, 4.0, 5.0])
    assert res.eta == ("etas at", (5.0,))


def test_anchored_line_search_cases():
    """Doubling stops at a higher point and keeps the lower one's etas; a doubled point needs
    sufficient decrease; no doubling once the slope has flattened or after a backtrack; a step lost
    to rounding is no decrease; the OFV left in the state is the accepted one's."""
    res, state, xs = _one_iteration({0.0: (0, -1), 1.0: (-1, -1), 2.0: (-0.5, 1)})
    assert xs == [0, 1, 2] and res.x[0] == 1 and res.fun == -1 and res.jac[0] == -1
    assert res.eta == state["eta"] == ("etas at", (1.0,)) and state["ofv"] == -1
    res, state, xs = _one_iteration({0.0: (0, -1), 1.0: (-1e-4, -1), 2.0: (-1.5e-4, -1)})
    assert xs == [0, 1, 2] and res.x[0] == 1 and res.eta == ("etas at", (1.0,))
    res, state, xs = _one_iteration({0.0: (0, -1), 1.0: (-0.6, -0.5)})
    assert xs == [0, 1] and res.x[0] == 1
    res, state, xs = _one_iteration({0.0: (0, -1), 1.0: (5, 10), 0.1: (-0.1, -1)})
    assert xs == [0, 1, 0.1] and res.x[0] == 0.1
    state, calls, evaluate = _tagged(lambda u: (0.0 if u[0] == 3.0 else 1.0, np.array([-1e-4])))
    res = nlme._anchored_bfgs(evaluate, state, np.array([3.0]), gtol=1e-5, maxiter=20, max_step=1.0)
    assert not res.success and res.nit == 0 and len(calls) == 14
    assert res.message == "line search found no sufficient decrease of the OFV in 12 step reductions"
    state, calls, evaluate = _tagged(lambda u: (max(-float(u[0]), -2.5) + (0.5 if u[0] > 3 else 0), np.array([-1.0])))
    res = nlme._anchored_bfgs(evaluate, state, np.array([0.0]), gtol=1e-12, maxiter=50, max_step=1.0)
    assert res.x[0] == 3 and state["ofv"] == res.fun == -2.5 and calls[-1][0][0] != 3


def test_fit_starts_its_final_evaluation_from_the_anchored_results_etas(pheno, pheno_data, monkeypatch):
    """fit() re-evaluates the estimate from the etas _anchored_bfgs returns (the accepted point's),
    not from those of the last point evaluated."""
    calls = _spy_on_conditional_modes(monkeypatch)
    def rejecting(evaluate, state, u0, **kws):
        from scipy.optimize import OptimizeResult

        evaluate(u0, state["eta"])
        first = state["eta"]
        evaluate(u0 + 0.5, first)  # a trial point, rejected
        return OptimizeResult(x=u0, nit=0, eta=first, message="returned the first point")

    monkeypatch.setattr(nlme, "_anchored_bfgs", rejecting)
    fit = nlme.fit(pheno, pheno_data, covariance=None, optimizer="anchored", max_step=0.7)
    (_, at_first), (_, at_trial), (start_of_last, _) = calls[0], calls[1], calls[-1]
    assert len(calls) == 3 and np.abs(at_trial - at_first).max() > 0.01
    np.testing.assert_array_equal(start_of_last, at_first)
    assert fit.dataset.attrs["max_step"] == 0.7


def test_optimizer_arguments_are_checked(pheno, pheno_data):
    with pytest.raises(InputError) as exc:
        nlme.fit(pheno, pheno_data, optimizer="newton")
    assert str(exc.value) == "optimizer = 'newton' is not allowed; allowed: one of ['bfgs', 'anchored']"
    with pytest.raises(InputError) as exc:
        nlme.fit(pheno, pheno_data, optimizer="anchored", max_step=0)
    assert str(exc.value) == "max_step = 0 is not allowed; allowed: a finite number > 0 (unconstrained scale)"
    with pytest.raises(InputError) as exc:
        nlme.fit(pheno, pheno_data, optimizer=["bfgs"])
    assert str(exc.value) == "optimizer = ['bfgs'] is not allowed; allowed: one of ['bfgs', 'anchored']"
    with pytest.raises(InputError) as exc:
        nlme.fit(pheno, pheno_data, maxiter=10.0)
    assert str(exc.value) == "maxiter = 10.0 is not allowed; allowed: an integer >= 0"
    nlme.check_optimizer("anchored", np.float32(0.5))  # numpy numbers are numbers

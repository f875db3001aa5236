"""Planners: optimum of a known quadratic cost, bounds, warm start, presets, batching."""

from __future__ import annotations

import pytest
import torch
from agents_toy_models import LinearBelief, LinearWorldModel, optimal_plan

from worldmodels.agents.costs import QuadraticCost, rollout_objective
from worldmodels.agents.planners import (
    CEM,
    ICEM,
    MPPI,
    PRESETS,
    CategoricalCEM,
    CategoricalCEMConfig,
    CEMConfig,
    GradCEM,
    GradCEMConfig,
    ICEMConfig,
    MPPIConfig,
    RandomShooting,
    RandomShootingConfig,
    colored_noise,
    make_planner,
)

GOAL = torch.tensor([0.5, 0.0])
C_ACT = 0.05


def linear_problem(H: int, B: int = 3, seed: int = 0):
    model = LinearWorldModel()
    z0 = torch.rand(B, 2, generator=torch.Generator().manual_seed(seed)) - 0.5
    belief = LinearBelief(z0)
    objective = rollout_objective(model, belief, QuadraticCost(GOAL, action_weight=C_ACT))
    a_star, j_star = optimal_plan(model, z0, GOAL, H, C_ACT)
    assert a_star.abs().max() < 2.8  # the optimum lies inside the +-3 box used below
    return model, objective, a_star, j_star


def eval_plan(objective, actions):
    with torch.no_grad():
        return objective(actions[:, None])[:, 0]


# (planner, horizon, relative tolerance on the optimal return). Bounds +-3 keep the
# unconstrained optimum (|a*| < 3 for these starts) inside the box.
PLANNERS = [
    (CEM(CEMConfig(horizon=6, population=300, num_elites=30, iterations=8), -3, 3), 6, 0.02),
    (ICEM(ICEMConfig(horizon=6, population=200, num_elites=20, iterations=6, noise_beta=1.0), -3, 3), 6, 0.02),
    (MPPI(MPPIConfig(horizon=6, population=400, iterations=8, temperature=0.05), -3, 3), 6, 0.05),
    (GradCEM(GradCEMConfig(horizon=6, population=30, num_elites=5, iterations=3, grad_steps=6,
                           lr=0.1), -3, 3), 6, 0.02),
    (RandomShooting(RandomShootingConfig(horizon=2, population=4000), -3, 3), 2, 0.05),
]


@pytest.mark.parametrize("planner,H,tol", PLANNERS, ids=lambda p: type(p).__name__ if hasattr(p, "config") else "")
def test_planner_finds_quadratic_optimum(planner, H, tol):
    model, objective, a_star, j_star = linear_problem(H)
    result = planner.optimize(objective, 3, generator=torch.Generator().manual_seed(1))
    assert result.actions.shape == (3, H, 1)
    j = eval_plan(objective, result.actions)
    # returns are negative: the plan is within tol of the optimum, and no better than it
    assert torch.all(j <= j_star + 1e-4)
    assert torch.all(j_star - j <= tol * j_star.abs() + 1e-3), (j, j_star)
    # the first action (the one executed) is close to the optimal first action
    assert torch.allclose(result.actions[:, 0], a_star[:, 0], atol=0.35 if H > 2 else 0.2)


def test_categorical_cem_finds_discrete_optimum():
    B, H, A = 4, 5, 4
    scores = torch.randn(B, H, A, generator=torch.Generator().manual_seed(0))

    def objective(actions):  # [B, N, H, A] one-hot -> [B, N]
        return (actions * scores[:, None]).sum((-1, -2))

    planner = CategoricalCEM(CategoricalCEMConfig(horizon=H, population=300, num_elites=30, iterations=6), A)
    res = planner.optimize(objective, B, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.actions.argmax(-1), scores.argmax(-1))
    assert torch.all(res.actions.sum(-1) == 1) and torch.all((res.actions == 0) | (res.actions == 1))
    assert torch.allclose(res.mean.sum(-1), torch.ones(B, H))


ALL = [
    lambda lo, hi: CEM(CEMConfig(horizon=4, population=50, num_elites=5, iterations=3), lo, hi),
    lambda lo, hi: ICEM(ICEMConfig(horizon=4, population=50, num_elites=5, iterations=3), lo, hi),
    lambda lo, hi: MPPI(MPPIConfig(horizon=4, population=50, iterations=3), lo, hi),
    lambda lo, hi: RandomShooting(RandomShootingConfig(horizon=4, population=50), lo, hi),
    lambda lo, hi: GradCEM(GradCEMConfig(horizon=4, population=20, num_elites=5, iterations=2), lo, hi),
]


@pytest.mark.parametrize("make", ALL)
def test_actions_stay_in_bounds(make):
    low, high = torch.tensor([-0.5, 1.0]), torch.tensor([0.25, 3.0])
    planner = make(low, high)
    seen = []

    def objective(actions):  # pushes far outside the box, in opposite directions per dim
        seen.append(actions.detach())
        return 100 * (actions[..., 0] - actions[..., 1]).sum(-1)

    res = planner.optimize(objective, 2, generator=torch.Generator().manual_seed(0))
    for a in seen + [res.actions]:
        assert torch.all(a >= low - 1e-6) and torch.all(a <= high + 1e-6)
    # and the optimiser did better than the centre of the box
    centre = ((low + high) / 2).expand(2, 1, 4, 2)
    assert torch.all(objective(res.actions[:, None])[:, 0] > objective(centre)[:, 0])


def test_warm_start_shifts_plan():
    model, objective, a_star, j_star = linear_problem(H=6)
    cem = CEM(CEMConfig(horizon=6, population=300, num_elites=30, iterations=8), -3, 3)
    res = cem.optimize(objective, 3, generator=torch.Generator().manual_seed(0))
    sh = res.shifted(2)
    assert torch.equal(sh.mean[:, :4], res.mean[:, 2:]) and torch.all(sh.mean[:, 4:] == 0)
    assert torch.equal(sh.actions[:, :4], res.actions[:, 2:])
    assert sh.num_padded == 2 and sh.shifted(1).num_padded == 3
    assert torch.equal(sh.elites[:, :, :4], res.elites[:, :, 2:])
    # a warm-started planner starts from the shifted mean: with one iteration and a tiny std it
    # returns (nearly) that mean, while a cold start stays near the box centre
    one = CEM(CEMConfig(horizon=6, population=20, num_elites=5, iterations=1, init_std=1e-4), -3, 3)
    warm = one.optimize(objective, 3, warm_start=sh, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(one.to_normalised(warm.actions), sh.mean, atol=1e-3)
    cold = one.optimize(objective, 3, generator=torch.Generator().manual_seed(0))
    assert cold.actions.abs().max() < 1e-2
    # categorical plans pad with uniform probabilities
    cat = CategoricalCEM(CategoricalCEMConfig(horizon=3, population=10, num_elites=2, iterations=1), 4)
    r = cat.optimize(lambda a: a[..., 0].sum(-1), 1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(r.shifted(1).mean[:, -1], torch.full((1, 4), 0.25))


def test_icem_reuses_shifted_elites():
    model, objective, a_star, j_star = linear_problem(H=6)
    icem = ICEM(ICEMConfig(horizon=6, population=100, num_elites=10, iterations=3), -3, 3)
    assert icem.population_sizes() == [100, 80, 64]
    res = icem.optimize(objective, 3, generator=torch.Generator().manual_seed(0))
    sizes = []

    def counting(actions):
        sizes.append(actions.shape[1])
        return objective(actions)

    icem.optimize(counting, 3, warm_start=res.shifted(1), generator=torch.Generator().manual_seed(0))
    keep = round(0.3 * 10)
    # iteration 0 carries the shifted elites, later ones the previous elites, the last the mean
    assert sizes == [100 + keep, 80 + keep, 64 + keep + 1]


def test_planners_batch_environments_in_one_call():
    calls = []

    def objective(actions):
        calls.append(tuple(actions.shape))
        return -(actions ** 2).sum((-1, -2))

    planner = make_planner("planet", -1, 1)
    planner.optimize(objective, 16, generator=torch.Generator().manual_seed(0))
    assert calls == [(16, 1000, 12, 1)] * 10


def test_presets_and_factory():
    name, cfg = PRESETS["planet"]
    assert name == "cem" and (cfg.horizon, cfg.population, cfg.num_elites, cfg.iterations) == (12, 1000, 100, 10)
    p = make_planner("icem", [-2.0], [2.0], horizon=20)
    assert isinstance(p, ICEM) and p.config.horizon == 20
    assert isinstance(make_planner("categorical", num_actions=4), CategoricalCEM)
    with pytest.raises(ValueError, match="name"):
        make_planner("nope", -1, 1)
    with pytest.raises(ValueError, match="overrides"):
        make_planner("cem", -1, 1, not_a_field=3)
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(population=10, num_elites=20)
    with pytest.raises(ValueError, match="action_high"):
        CEM(CEMConfig(), [1.0], [0.0])


def test_objective_shape_is_checked():
    planner = make_planner("cem_fast", -1, 1)
    with pytest.raises(ValueError, match="objective"):
        planner.optimize(lambda a: a.sum(-1), 2)


def test_gradient_refinement_improves_candidates():
    model, objective, a_star, j_star = linear_problem(H=6)
    planner = GradCEM(GradCEMConfig(horizon=6, grad_steps=20, lr=0.05), -3, 3)
    u = torch.rand(3, 8, 6, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
    before = objective(planner.to_env(u))
    after = objective(planner.to_env(planner.refine(objective, u)))
    assert torch.all(after > before)


def test_nan_returns_are_never_chosen():
    def objective(actions):
        r = -(actions - 0.5).pow(2).sum((-1, -2))
        return torch.where(actions[..., 0, 0] > 0.6, torch.full_like(r, float("nan")), r)

    res = make_planner("cem_fast", -1, 1).optimize(objective, 2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.value).all() and torch.all(res.actions[:, 0, 0] <= 0.6)


def test_colored_noise_is_smoother_for_larger_beta():
    g = torch.Generator().manual_seed(0)
    white = colored_noise(0.0, (4000, 16, 1), generator=g)
    red = colored_noise(2.0, (4000, 16, 1), generator=g)

    def lag1(x):
        return float((x[:, 1:] * x[:, :-1]).mean() / (x ** 2).mean())

    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.5
    assert 0.8 < float(red.std()) < 1.4 and abs(float(red.mean())) < 0.1

"""flow_matching.py against exact answers: the closed-form marginal velocity of the ring
drives the sampler to the target, Heun converges at second order and Euler at first, and
the conditional flow matching target averages to that velocity at a fixed (x_t, t)."""
import numpy as np
import pytest
import torch
from conftest import load

fm = load("flow_matching.py")


def per_mode(x):
    """Share and spread (largest per-axis std) of the samples nearest each mode."""
    k = torch.cdist(x, fm.MU).argmin(1)
    share = np.array([(k == j).float().mean().item() for j in range(len(fm.MU))])
    spread = np.array([(x[k == j] - fm.MU[j]).std(0).max().item() for j in range(len(fm.MU))])
    return share, spread


@pytest.mark.parametrize("seed", range(4))
def test_exact_velocity_with_heun_reproduces_the_ring(seed):
    x = fm.sample(fm.exact_velocity, 2000, seed, steps=16, solver="heun")[-1]
    share, spread = per_mode(x)
    assert np.abs(share - 1 / len(fm.MU)).max() < 0.04, share
    assert np.abs(spread / fm.STD - 1).max() < 0.25, spread
    assert fm.w1_ratio(x) < 1.4


def test_trajectory_starts_at_noise_and_has_one_level_per_step():
    traj = fm.sample(fm.exact_velocity, 3000, seed=5, steps=7, solver="euler")
    assert traj.shape == (8, 3000, 2)
    assert torch.equal(traj[0], torch.randn(3000, 2, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(traj, fm.sample(fm.exact_velocity, 3000, seed=5, steps=7, solver="euler"))


def test_heun_error_shrinks_as_k_squared_and_euler_as_k():
    """Distance of each endpoint to a fine solution from the same noise: doubling K divides
    Euler's error by about 2 (first order) and Heun's by about 4 (second order)."""
    fine = fm.sample(fm.exact_velocity, 2000, 0, steps=512, solver="heun")[-1]
    err = {s: [(fm.sample(fm.exact_velocity, 2000, 0, k, s)[-1] - fine).norm(dim=1).mean().item()
               for k in (16, 32)] for s in ("euler", "heun")}
    assert 1.6 < err["euler"][0] / err["euler"][1] < 2.4, err
    assert err["heun"][0] / err["heun"][1] > 3.0, err
    assert err["heun"][1] < err["euler"][1] / 5, err


def test_k_at_which_each_solver_reaches_w1_floor_1_5():
    """The README's figures: with the exact velocity, mean W1/floor over seeds 0-5 reaches
    1.5 at K = 4 with Heun (8 evaluations) and at K = 8 with Euler (8 evaluations)."""
    def ratio(k, solver):
        return np.mean([fm.w1_ratio(fm.sample(fm.exact_velocity, 2000, s, k, solver)[-1])
                        for s in range(6)])
    assert ratio(2, "heun") > 1.5 >= ratio(4, "heun")
    assert ratio(4, "euler") > 1.5 >= ratio(8, "euler")


@pytest.mark.parametrize("t", [0.3, 0.6, 0.9])
def test_regression_target_averages_to_the_exact_velocity(t):
    """The loss's minimiser is E[x1 - x0 | x_t]. At a fixed x_t, x0 = (x_t - t x1) / (1 - t)
    is fixed by x1, so the average of x1 - x0 over data x1, weighted by the noise density at
    that x0 (Monte Carlo), is the conditional mean: it must match the closed form."""
    x1 = fm.target_sample(400_000, torch.Generator().manual_seed(0)).double()
    for z, mode in [((0.0, 0.0), 0), ((0.8, -0.5), 0), ((0.8, -0.5), 3), ((-0.6, 1.0), 5)]:
        xt = (1 - t) * torch.tensor(z, dtype=torch.float64) + t * fm.MU[mode].double()
        x0 = (xt - t * x1) / (1 - t)
        w = torch.softmax(-(x0**2).sum(1) / 2, 0)[:, None]  # N(x0; 0, I), normalised
        exact = fm.exact_velocity(xt[None], torch.tensor([t], dtype=torch.float64))[0]
        assert ((w * (x1 - x0)).sum(0) - exact).norm() < 0.02, (xt, exact)

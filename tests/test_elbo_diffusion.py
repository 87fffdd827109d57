"""Math checks of elbo_diffusion.py: the forward process, the bound (Ho et al. eq. 3) and
the sampler, against hand-computed and closed-form answers."""
import math

import pytest
import torch
from torch.distributions import Normal
from conftest import load

m = load("elbo_diffusion.py")


def test_bound_matches_a_hand_computed_tiny_case():
    # T = 2, two trajectories, a reverse model with constant mean and std
    traj = torch.tensor([[[1.0], [-2.0]], [[0.8], [-1.5]], [[0.3], [-0.9]]])
    mu, s, b = 0.25, 0.7, m.BETA
    model = lambda x, t: (torch.full_like(x, mu), torch.full_like(x, s))
    a = math.sqrt(1 - b)
    expected = []
    for i in range(2):
        x0, x1, x2 = (traj[k, i, 0] for k in range(3))
        nll = (-Normal(0.0, 1.0).log_prob(x2)
               - Normal(mu, s).log_prob(x1) + Normal(a * x1, math.sqrt(b)).log_prob(x2)
               - Normal(mu, s).log_prob(x0) + Normal(a * x0, math.sqrt(b)).log_prob(x1))
        expected.append(nll)
    assert m.bound(traj, model).item() == pytest.approx(torch.stack(expected).mean().item(),
                                                        rel=1e-5)


def test_training_and_sampling_feed_the_same_t_over_T():
    seen = {"bound": [], "sample": []}

    def recorder(key):
        def model(x, t):
            seen[key].append(t.reshape(-1)[0].item() if key == "sample" else t.unique())
            return x, torch.ones_like(x)
        return model

    m.bound(m.diffuse(torch.zeros(3, 1)), recorder("bound"))
    m.sample(recorder("sample"), 3)
    in_bound = sorted(seen["bound"][0].tolist())
    assert in_bound == pytest.approx(sorted(seen["sample"]))
    assert in_bound == pytest.approx([t / m.T for t in range(1, m.T + 1)])


def test_forward_steps_are_the_gaussian_of_eq_2():
    traj = m.diffuse(torch.full((20000, 1), 4.0))
    assert traj.shape == (m.T + 1, 20000, 1)
    step = (traj[1:] - math.sqrt(1 - m.BETA) * traj[:-1]) / math.sqrt(m.BETA)
    assert abs(step.mean().item()) < 0.01 and abs(step.std().item() - 1) < 0.01
    alpha_bar_T = (1 - m.BETA) ** m.T
    assert traj[-1].mean().item() == pytest.approx(4 * math.sqrt(alpha_bar_T), abs=0.03)
    assert traj[-1].std().item() == pytest.approx(math.sqrt(1 - alpha_bar_T), abs=0.02)


def test_exact_reverse_of_a_stationary_chain_makes_the_bound_tight():
    # data N(0, 1) is left unchanged by q, whose exact reverse is N(sqrt(1 - beta) x_t, beta):
    # then p(x_{0:T}) = q(x_{0:T}), so the bound equals -log q(x_0) on every trajectory
    exact = lambda x, t: (math.sqrt(1 - m.BETA) * x, torch.full_like(x, math.sqrt(m.BETA)))
    x0 = torch.randn(500, 1)
    nll = -Normal(0.0, 1.0).log_prob(x0).mean()
    assert m.bound(m.diffuse(x0), exact).item() == pytest.approx(nll.item(), abs=1e-3)
    x = m.sample(exact, 20000, seed=1)
    assert x.shape == (m.T + 1, 20000, 1)
    assert abs(x[-1].mean().item()) < 0.03 and abs(x[-1].std().item() - 1) < 0.02


def test_target_sample_is_the_1_to_2_mixture():
    x = m.target_sample(60000, torch.Generator().manual_seed(0))[:, 0]
    assert (x > 0).float().mean().item() == pytest.approx(2 / 3, abs=0.01)
    assert x[x > 0].mean().item() == pytest.approx(4, abs=0.02)
    assert x[x < 0].mean().item() == pytest.approx(-4, abs=0.03)


def test_short_training_lowers_the_bound():
    _, losses = m.train(steps=60, seed=0)
    assert sum(losses[-10:]) < sum(losses[:10])

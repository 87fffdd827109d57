"""Math checks of the DDPM scripts: the schedule, the forward process in closed form, and
the sampler (Ho et al. 2020, Algorithm 2) driven by the exact noise prediction."""
import numpy as np
import pytest
import torch
from conftest import load

GAUSSIAN = ["single_DDPM.py", "simple_DDPM.py", "detailed_DDPM.py"]


def exact_eps(m):
    """E[eps | x_t] for data N(MU, S^2): sqrt(1 - ab)(x - sqrt(ab) MU) / (ab S^2 + 1 - ab)."""
    ab = m.schedule()[1]
    slope = ((1 - ab).sqrt() / (ab * m.S**2 + 1 - ab)).float()
    centre = (ab.sqrt() * m.MU).float()
    return lambda x, t: slope[t, None] * (x - centre[t, None])


def w1_ratio(x, target_sample, draws=20):
    """W1(x, fresh target) / mean W1(two fresh targets), 1D samples of equal size."""
    g = torch.Generator().manual_seed(99)
    w1 = lambda a, b: (a.sort(0).values - b.sort(0).values).abs().mean().item()
    floor = np.mean([w1(target_sample(len(x), g), target_sample(len(x), g)) for _ in range(draws)])
    return w1(x, target_sample(len(x), g)) / floor


@pytest.mark.parametrize("script", GAUSSIAN)
def test_schedule_first_step_is_far_below_the_data_spread(script):
    m = load(script)
    beta, alpha_bar = m.schedule()
    assert beta.shape == alpha_bar.shape == (m.T + 1,)
    assert torch.all((beta[1:] > 0) & (beta[1:] < 1))
    assert torch.allclose(alpha_bar[1:], torch.cumprod(1 - beta[1:], 0), rtol=1e-9)
    # one step of noise must not blur a spread of S: beta_1 <= S^2 / 100
    assert beta[1] <= m.S**2 / 100


@pytest.mark.parametrize("script", GAUSSIAN)
def test_last_level_is_close_enough_to_the_N01_prior(script):
    """q(x_T) = N(sqrt(ab_T) MU, ab_T S^2 + 1 - ab_T). Bound: ab_T <= 1e-3, which keeps
    KL(q(x_T) || N(0, 1)) ~ ab_T MU^2 / 2 <= 5e-4; the mean offset sqrt(ab_T) MU <= 0.032
    of x_T shrinks by a factor ~S on its way to x_0, far inside the 0.002 tolerance."""
    m = load(script)
    ab = m.schedule()[1][-1].item()
    mean, var = np.sqrt(ab) * m.MU, ab * m.S**2 + 1 - ab
    kl = 0.5 * (var + mean**2 - 1 - np.log(var))
    assert ab <= 1e-3 and kl <= 5e-4


@pytest.mark.parametrize("script", GAUSSIAN)
def test_closed_form_forward_matches_stepping_one_level_at_a_time(script):
    """q(x_t | x_0) (Ho eq. 4) against applying q(x_t | x_{t-1}) (eq. 2) t times."""
    m = load(script)
    beta, alpha_bar = m.schedule()
    g = torch.Generator().manual_seed(0)
    x0 = m.target_sample(20000, g).double()
    x, mean, var = x0, m.MU, m.S**2
    for t in range(1, m.T + 1):
        x = (1 - beta[t]).sqrt() * x + beta[t].sqrt() * torch.randn(x.shape, generator=g,
                                                                     dtype=torch.float64)
        mean, var = (1 - beta[t]).sqrt() * mean, (1 - beta[t]) * var + beta[t]
        ab = alpha_bar[t]
        assert mean == pytest.approx((ab.sqrt() * m.MU).item(), rel=1e-9)
        assert var == pytest.approx((ab * m.S**2 + 1 - ab).item(), rel=1e-9)
        if t in (1, m.T // 10, m.T // 2, m.T):
            std = (ab * m.S**2 + 1 - ab).sqrt().item()
            assert abs(x.mean().item() - mean) < 4 * std / np.sqrt(len(x))
            assert x.std().item() == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("script", GAUSSIAN)
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_noise_prediction_reproduces_the_target(script, seed):
    m = load(script)
    traj = m.sample(exact_eps(m), 4000, seed=seed)
    assert traj.shape == (m.T + 1, 4000, m.DIM)
    x = traj[-1]
    assert abs(x.mean().item() - m.MU) < 0.002
    assert abs(x.std().item() / m.S - 1) < 0.1  # the network gets the rest of the 20%
    assert w1_ratio(x, m.target_sample) < 2


@pytest.mark.parametrize("script", GAUSSIAN)
def test_noise_is_added_at_every_step_but_the_last(script):
    m = load(script)
    beta, alpha_bar = m.schedule()
    eps = exact_eps(m)
    traj = m.sample(eps, 500, seed=0)

    def mean_step(x, t):  # x_{t-1} without the added noise
        return (x - beta[t] / (1 - alpha_bar[t]).sqrt() * eps(x, torch.full((len(x),), t))) / (
            1 - beta[t]).sqrt()

    assert torch.allclose(traj[-1], mean_step(traj[-2], 1).float(), atol=1e-6)
    assert not torch.allclose(traj[-2], mean_step(traj[-3], 2).float(), atol=1e-6)


def test_short_training_lands_near_the_target():
    m = load("single_DDPM.py")
    model, losses = m.train(steps=800, seed=0)
    x = m.sample(model, 2000, seed=0)[-1]
    assert abs(x.mean().item() - m.MU) < 0.01
    assert 0.5 * m.S < x.std().item() < 2 * m.S
    assert np.mean(losses[-50:]) < np.mean(losses[:50])


def exact_eps_spikes(m):
    """E[eps | x_t] for the four-spike mixture: each spike's answer, weighted by how likely
    x_t came from it (a softmax over spikes)."""
    ab = m.schedule()[1].float()

    def eps(x, t):
        a = ab[t][:, None, None]  # (n, 1, 1)
        var = a * m.S**2 + 1 - a
        d = x[:, None, :] - a.sqrt() * m.CENTERS  # (n, spikes, DIM)
        w = torch.softmax(-(d**2).sum(-1, keepdim=True) / (2 * var), dim=1)
        return (w * d).sum(1) * (1 - a[:, 0]).sqrt() / var[:, 0]
    return eps


def test_multimodal_last_level_is_close_enough_to_the_N01_prior():
    """q(x_T) mixes N(sqrt(ab_T) c, (ab_T S^2 + 1 - ab_T) I); KL is convex, so its KL to
    N(0, I) is at most the mean of the components' KLs, ~ ab_T |c|^2 / 2 = ab_T."""
    m = load("multimodal_DDPM.py")
    ab = m.schedule()[1][-1].item()
    var = ab * m.S**2 + 1 - ab
    kl = 0.5 * (m.DIM * (var - 1 - np.log(var)) + ab * (m.CENTERS**2).sum(1).mean().item())
    assert ab <= 0.01 and kl <= 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_multimodal_exact_noise_prediction_reproduces_the_spikes(seed):
    m = load("multimodal_DDPM.py")
    beta = m.schedule()[0]
    assert beta[1] <= m.S**2 / 100
    x = m.sample(exact_eps_spikes(m), 4000, seed=seed)[-1]
    k, dist = m.nearest(x)
    share = torch.bincount(k, minlength=4) / len(x)
    assert torch.all((share - 0.25).abs() < 0.03)
    for j in range(4):
        assert torch.all((x[k == j].std(0) / m.S - 1).abs() < 0.1)
    assert dist.max() < 0.1
    g = torch.Generator().manual_seed(7)
    floor = np.mean([m.sliced_w1(m.target_sample(4000, g), m.target_sample(4000, g))
                     for _ in range(5)])
    assert m.sliced_w1(x, m.target_sample(4000, g)) < 2 * floor


def test_detailed_reverse_process_with_the_exact_denoiser_matches_q_xt_at_every_level():
    """What detailed_DDPM draws: with the exact eps, x_t of the reverse process follows the
    exact marginal q(x_t) at every level, not just at the end."""
    m = load("detailed_DDPM.py")
    n = 4000
    traj = m.sample(exact_eps(m), n, seed=0).numpy()
    for t in range(0, m.T + 1, 50):
        mean, std = m.marginal(t)
        xt = traj[m.T - t, :, 0]
        assert abs(xt.mean() - mean) < 5 * std / np.sqrt(n) + 1e-4, t
        assert abs(xt.std() / std - 1) < 0.06, t
        assert m.w1_to_exact(xt, t) < 0.06 * std, t
    x = m.forward_sample(n, 300, torch.Generator().manual_seed(0)).numpy()
    assert m.w1_to_exact(x, 300) < 0.06 * m.marginal(300)[1]

"""Math checks of the DDPM scripts: the schedule, the forward process in closed form, and
the sampler (Ho et al. 2020, Algorithm 2) driven by the exact noise prediction."""
import numpy as np
import pytest
import torch
from conftest import load

GAUSSIAN = ["single_DDPM.py", "simple_DDPM.py", "detailed_DDPM.py"]


def exact_eps(m):
    """E[eps | x_t] for data N(MU, STD^2): sqrt(1 - ab)(x - sqrt(ab) MU) / (ab STD^2 + 1 - ab),
    with the signature of the script's network (simple_DDPM's takes (L, n, 1) and (L,))."""
    ab = m.schedule()[1]
    slope = ((1 - ab).sqrt() / (ab * m.STD**2 + 1 - ab)).float()
    centre = (ab.sqrt() * m.MU).float()
    if m.__name__ == "simple_DDPM":
        return lambda x, t: slope[t, None, None] * (x - centre[t, None, None])
    return lambda x, t: slope[t, None] * (x - centre[t, None])


def exact_eps_spikes(m):
    """E[eps | x_t] for the four-spike mixture: each spike's answer, weighted by how likely
    x_t came from it (a softmax over spikes)."""
    ab = m.schedule()[1].float()

    def eps(x, t):
        a = ab[t][:, None, None]  # (n, 1, 1)
        var = a * m.STD**2 + 1 - a
        d = x[:, None, :] - a.sqrt() * m.CENTERS  # (n, spikes, 2)
        w = torch.softmax(-(d**2).sum(-1, keepdim=True) / (2 * var), dim=1)
        return (w * d).sum(1) * (1 - a[:, 0]).sqrt() / var[:, 0]
    return eps


def w1(a, b):
    """1-Wasserstein distance between equal-size samples (n, dim); sliced over 64 directions
    in 2D."""
    u = torch.randn(a.shape[1], 64, generator=torch.Generator().manual_seed(0)) if a.shape[1] > 1 \
        else torch.ones(1, 1)
    u = u / u.norm(dim=0)
    return ((a @ u).sort(0).values - (b @ u).sort(0).values).abs().mean().item()


def w1_ratio(x, target_sample, draws=20):
    """W1(x, fresh target) / mean W1(two fresh targets)."""
    g = torch.Generator().manual_seed(99)
    floor = np.mean([w1(target_sample(len(x), g), target_sample(len(x), g)) for _ in range(draws)])
    return w1(x, target_sample(len(x), g)) / floor


@pytest.mark.parametrize("script", GAUSSIAN + ["multimodal_DDPM.py"])
def test_schedule_first_step_is_far_below_the_data_spread(script):
    m = load(script)
    beta, alpha_bar = m.schedule()
    assert beta.shape == alpha_bar.shape == (m.T + 1,)
    assert beta[0] == 0 and torch.all((beta[1:] > 0) & (beta[1:] < 1))
    assert torch.allclose(alpha_bar[1:], torch.cumprod(1 - beta[1:], 0), rtol=1e-9)
    # one step of noise must not blur a spread of STD: beta_1 <= STD^2 / 100
    assert beta[1] <= m.STD**2 / 100


@pytest.mark.parametrize("script", GAUSSIAN)
def test_last_level_is_close_enough_to_the_N01_prior(script):
    """q(x_T) = N(sqrt(ab_T) MU, ab_T STD^2 + 1 - ab_T). Bound: ab_T <= 1e-3, which keeps
    KL(q(x_T) || N(0, 1)) ~ ab_T MU^2 / 2 <= 5e-4; the mean offset sqrt(ab_T) MU <= 0.032
    of x_T shrinks by a factor ~STD on its way to x_0, far inside the 0.002 tolerance."""
    m = load(script)
    ab = m.schedule()[1][-1].item()
    mean, var = np.sqrt(ab) * m.MU, ab * m.STD**2 + 1 - ab
    kl = 0.5 * (var + mean**2 - 1 - np.log(var))
    assert ab <= 1e-3 and kl <= 5e-4


def test_multimodal_last_level_is_close_enough_to_the_N01_prior():
    """q(x_T) mixes N(sqrt(ab_T) c, (ab_T STD^2 + 1 - ab_T) I); KL is convex, so its KL to
    N(0, I) is at most the mean of the components' KLs, ~ ab_T |c|^2 / 2 = ab_T."""
    m = load("multimodal_DDPM.py")
    ab = m.schedule()[1][-1].item()
    var = ab * m.STD**2 + 1 - ab
    kl = 0.5 * (2 * (var - 1 - np.log(var)) + ab * (m.CENTERS**2).sum(1).mean().item())
    assert ab <= 0.01 and kl <= 0.01


@pytest.mark.parametrize("script", GAUSSIAN)
def test_closed_form_forward_matches_stepping_one_level_at_a_time(script):
    """q(x_t | x_0) (Ho eq. 4) against applying q(x_t | x_{t-1}) (eq. 2) t times."""
    m = load(script)
    beta, alpha_bar = m.schedule()
    g = torch.Generator().manual_seed(0)
    x = m.target_sample(20000, g).double()
    mean, var = m.MU, m.STD**2
    for t in range(1, m.T + 1):
        x = (1 - beta[t]).sqrt() * x + beta[t].sqrt() * torch.randn(x.shape, generator=g,
                                                                     dtype=torch.float64)
        mean, var = (1 - beta[t]).sqrt() * mean, (1 - beta[t]) * var + beta[t]
        ab = alpha_bar[t]
        assert mean == pytest.approx((ab.sqrt() * m.MU).item(), rel=1e-9)
        assert var == pytest.approx((ab * m.STD**2 + 1 - ab).item(), rel=1e-9)
        if t in (1, m.T // 10, m.T // 2, m.T):
            std = (ab * m.STD**2 + 1 - ab).sqrt().item()
            assert abs(x.mean().item() - mean) < 4 * std / np.sqrt(len(x))
            assert x.std().item() == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("script", GAUSSIAN)
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_noise_prediction_reproduces_the_target(script, seed):
    m = load(script)
    traj = m.sample(exact_eps(m), 4000, seed=seed)
    assert traj.shape == (m.T + 1, 4000, 1)
    assert traj[0].std().item() == pytest.approx(1, abs=0.05)  # x_T ~ N(0, 1)
    x = traj[-1]
    assert abs(x.mean().item() - m.MU) < 0.002
    assert abs(x.std().item() / m.STD - 1) < 0.1  # the network gets the rest of the 20%
    assert w1_ratio(x, m.target_sample) < 2


@pytest.mark.parametrize("script", GAUSSIAN)
def test_noise_is_added_at_every_step_but_the_last(script):
    m = load(script)
    beta, alpha_bar = m.schedule()
    eps = exact_eps(m)
    traj = m.sample(eps, 500, seed=0)

    def mean_step(x, t):  # x_{t-1} without the added noise
        e = eps(x[None], torch.tensor([t]))[0] if m.__name__ == "simple_DDPM" else \
            eps(x, torch.full((len(x),), t))
        return (x - beta[t] / (1 - alpha_bar[t]).sqrt() * e) / (1 - beta[t]).sqrt()

    assert torch.allclose(traj[-1], mean_step(traj[-2], 1).float(), atol=1e-6)
    assert not torch.allclose(traj[-2], mean_step(traj[-3], 2).float(), atol=1e-6)


def test_sampler_is_seeded():
    m = load("single_DDPM.py")
    eps = exact_eps(m)
    assert torch.equal(m.sample(eps, 100, seed=3), m.sample(eps, 100, seed=3))
    assert not torch.equal(m.sample(eps, 100, seed=3)[0], m.sample(eps, 100, seed=4)[0])


def test_short_training_lands_near_the_target():
    m = load("single_DDPM.py")
    model, losses = m.train(steps=800, seed=0)
    x = m.sample(model, 2000, seed=0)[-1]
    assert abs(x.mean().item() - m.MU) < 0.01
    assert 0.5 * m.STD < x.std().item() < 2 * m.STD
    assert np.mean(losses[-50:]) < np.mean(losses[:50])


@pytest.mark.parametrize("seed", [0, 1])
def test_multimodal_exact_noise_prediction_reproduces_the_spikes(seed):
    m = load("multimodal_DDPM.py")
    x = m.sample(exact_eps_spikes(m), 4000, seed=seed)[-1]
    spike = torch.cdist(x, m.CENTERS).argmin(1)
    offset = x - m.CENTERS[spike]
    share = torch.bincount(spike, minlength=4) / len(x)
    assert torch.all((share - 0.25).abs() < 0.03)
    for j in range(4):
        assert torch.all((offset[spike == j].std(0) / m.STD - 1).abs() < 0.1)
    assert offset.norm(dim=1).max() < 0.1
    assert w1_ratio(x, m.target_sample) < 2


def test_multimodal_resampling_leaves_no_sample_between_the_spikes():
    """Where the noise splits, the net's eps falls short in the noise's tails, so now and then
    Algorithm 2 alone leaves a sample between two spikes: with RESAMPLE = (0, 0), this net
    (seed 10) and sampling seed 5010 leave 2 of 20,000 samples over 0.1 away, one 0.85 away.
    Taking the split's levels twice pulls every sample to a spike."""
    m = load("multimodal_DDPM.py")
    model, _ = m.train(seed=10)
    x = m.sample(model, 20000, seed=5010)[-1]
    assert torch.cdist(x, m.CENTERS).min(1).values.max() < 0.1


def test_detailed_reverse_process_with_the_exact_denoiser_matches_q_xt_at_every_level():
    """What detailed_DDPM draws: with the exact eps, x_t of the reverse process follows the
    exact marginal q(x_t) at every level, not just at the end."""
    m = load("detailed_DDPM.py")
    n = 4000
    traj = m.sample(exact_eps(m), n, seed=0)
    z = torch.special.ndtri((torch.arange(n) + 0.5) / n)  # quantiles of N(0, 1)
    for t in range(0, m.T + 1, 50):
        mean, std = m.marginal(t)
        xt = traj[m.T - t, :, 0].double()
        assert abs(xt.mean().item() - mean) < 5 * std / np.sqrt(n) + 1e-4, t
        assert abs(xt.std().item() / std - 1) < 0.06, t
        assert (xt.sort().values - (mean + std * z)).abs().mean() < 0.06 * std, t  # W1 to q(x_t)

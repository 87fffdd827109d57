"""Math checks of the "remove one noise level at a time" scripts: the ladder, and the sampler
with the exact denoiser plugged in, at the noise level that 2000 random samples carry."""
import numpy as np
import pytest
import torch
from benchmark import TARGETS, fidelity
from conftest import load

LADDERS = ["simple_1Diffusion.py", "simple_2Diffusion.py", "simple_multimodal.py"]
GAUSSIANS = ["simple_1Diffusion.py", "simple_2Diffusion.py"]


def exact_eps(m):
    """E[eps | x] for x = y + sigma eps, y ~ N(MU, STD^2 I): sigma (x - MU) / (STD^2 + sigma^2)."""
    mu = torch.as_tensor(m.MU)
    return lambda x, sigma: sigma * (x - mu) / (m.STD**2 + sigma**2)


@pytest.mark.parametrize("script", LADDERS)
def test_ladder_decreases_and_hits_its_ends(script):
    m = load(script)
    sigma = m.noise_ladder()
    assert len(sigma) == m.LEVELS + 1
    assert torch.all(sigma[1:] < sigma[:-1])
    assert sigma[0].item() == pytest.approx(m.SIGMA_MAX, rel=1e-5)
    assert sigma[-2].item() == pytest.approx(m.SIGMA_MIN, rel=1e-4)
    assert sigma[-1].item() == 0


@pytest.mark.parametrize("script", LADDERS)
def test_walk_starts_from_seeded_pure_noise(script):
    m = load(script)
    no_noise = lambda x, sigma: torch.zeros_like(x)
    traj = m.sample(no_noise, 20000, seed=1)
    assert traj.shape == (m.LEVELS + 1, 20000, m.DIM)
    z = traj[0] / m.SIGMA_MAX  # N(0, I): 4.5 standard errors of 20000 draws
    assert torch.all(z.mean(0).abs() < 4.5 / 20000**0.5)
    assert torch.all((z.std(0) - 1).abs() < 4.5 / 40000**0.5)
    assert torch.equal(traj, m.sample(no_noise, 20000, seed=1))
    assert not torch.equal(traj[0], m.sample(no_noise, 20000, seed=2)[0])


@pytest.mark.parametrize("script", GAUSSIANS)
def test_exact_denoiser_reproduces_the_target(script):
    m = load(script)
    x = m.sample(exact_eps(m), 20000, seed=3)[-1]
    assert torch.all((x.mean(0) - torch.as_tensor(m.MU)).abs() < 0.002)
    assert torch.all((x.std(0) / m.STD - 1).abs() < 0.2)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_exact_denoiser_keeps_the_spread_to_2_percent(script):
    """The Euler steps shrink the std by ~1.4% at 400 levels, the last step (SIGMA_MIN -> 0)
    by SIGMA_MIN^2 / (2 STD^2): 0.1% at 0.0005, but 2% at 0.002, which would fail here."""
    m = load(script)
    x = m.sample(exact_eps(m), 200000, seed=0)[-1].double()
    assert torch.all((x.std(0) / m.STD - 1).abs() < 0.02)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_exact_denoiser_at_2000_samples_is_off_by_sampling_noise_only(script):
    """Seeds 0-23, 2000 samples each: every mean within 4.5 standard errors (STD / sqrt(2000))
    of MU, every std within 4.5 standard errors (1 / sqrt(2 * 2000)) of the Euler steps' 1.4%
    shrink, the mean over all seeds within 4.5 of its standard errors of MU (1 - STD / SIGMA_MAX)
    (the offset of starting at mean 0), and the benchmark's W1/floor at most 1.2 in the median:
    the sampler adds nothing beyond the luck of the start."""
    m = load(script)
    mu = torch.as_tensor(m.MU, dtype=torch.float64)
    means, ratios = [], []
    for seed in range(24):
        x = m.sample(exact_eps(m), 2000, seed=seed)[-1].double()
        assert torch.all((x.mean(0) - mu).abs() < 4.5 * m.STD / 2000**0.5)
        assert torch.all((x.std(0) / m.STD - 0.986).abs() < 4.5 / 4000**0.5)
        means.append(x.mean(0))
        ratios.append(fidelity(x.numpy(), TARGETS[script.removesuffix(".py")][0], seed))
    offset = mu * m.STD / m.SIGMA_MAX
    assert torch.all((torch.stack(means).mean(0) - (mu - offset)).abs() < 4.5 * m.STD / 48000**0.5)
    assert np.median(ratios) < 1.2


@pytest.mark.parametrize("script", GAUSSIANS)
def test_target_sample_has_the_stated_mean_and_std(script):
    m = load(script)
    y = m.target_sample(20000, torch.Generator().manual_seed(0))
    assert y.shape == (20000, m.DIM)
    assert torch.all((y.mean(0) - torch.as_tensor(m.MU)).abs() < 0.0005)
    assert torch.all((y.std(0) / m.STD - 1).abs() < 0.03)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_report_sees_a_shift_and_a_blur(script):
    m = load(script)
    y = m.target_sample(2000, torch.Generator().manual_seed(1))
    good, bad = m.report(y), m.report(2 * y - m.MU + 0.01)  # twice as far from MU, shifted
    mu = np.asarray(m.MU)
    assert np.allclose(bad["mean"], 2 * np.array(good["mean"]) - mu + 0.01, atol=1e-5)
    assert np.allclose(bad["std"], 2 * np.array(good["std"]), rtol=1e-4)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_short_training_lands_near_the_target(script):
    m = load(script)
    model, losses = m.train(steps=800, seed=0)
    x = m.sample(model, 2000, seed=0)[-1]
    assert torch.all((x.mean(0) - torch.as_tensor(m.MU)).abs() < 0.01)
    assert torch.all((0.5 * m.STD < x.std(0)) & (x.std(0) < 2 * m.STD))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("script", LADDERS)
def test_training_follows_the_seed(script):
    m = load(script)
    assert m.train(steps=30, seed=4)[1] == m.train(steps=30, seed=4)[1]
    assert m.train(steps=30, seed=4)[1] != m.train(steps=30, seed=5)[1]

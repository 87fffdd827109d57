"""Math checks of the "remove one noise level at a time" scripts."""
import pytest
import torch
from conftest import load

LADDERS = ["simple_1Diffusion.py", "simple_2Diffusion.py", "simple_multimodal.py"]
GAUSSIANS = ["simple_1Diffusion.py", "simple_2Diffusion.py"]


def exact_eps(mu, s):
    """E[eps | x] for x = y + sigma * eps, y ~ N(mu, s^2): sigma (x - mu) / (s^2 + sigma^2)."""
    return lambda x, sigma: sigma * (x - mu) / (s**2 + sigma**2)


@pytest.mark.parametrize("script", LADDERS)
def test_ladder_decreases_and_hits_its_ends(script):
    m = load(script)
    sigma = m.noise_ladder()
    assert len(sigma) == m.LEVELS + 1
    assert torch.all(sigma[1:] < sigma[:-1])
    assert sigma[0].item() == pytest.approx(m.SIGMA_MAX, rel=1e-5)
    assert sigma[-2].item() == pytest.approx(m.SIGMA_MIN, rel=1e-4)
    assert sigma[-1].item() == 0


@pytest.mark.parametrize("script", GAUSSIANS)
def test_exact_denoiser_reproduces_the_target(script):
    m = load(script)
    traj = m.sample(exact_eps(torch.as_tensor(m.MU), m.S), 20000, seed=3)
    assert traj.shape == (m.LEVELS + 1, 20000, m.DIM)
    x = traj[-1]
    assert torch.all((x.mean(0) - torch.as_tensor(m.MU)).abs() < 0.002)
    assert torch.all((x.std(0) / m.S - 1).abs() < 0.2)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_exact_denoiser_keeps_the_spread_to_2_percent(script):
    """The Euler steps shrink the std by ~1.4% at 400 levels, the last step (SIGMA_MIN -> 0)
    by SIGMA_MIN^2 / (2 S^2): 0.1% at 0.0005, but 2% at 0.002, which would fail here."""
    m = load(script)
    x = m.sample(exact_eps(torch.as_tensor(m.MU), m.S), 200000, seed=0)[-1].double()
    assert torch.all((x.std(0) / m.S - 1).abs() < 0.02)


@pytest.mark.parametrize("script", LADDERS)
def test_start_is_quasi_random_normal_and_follows_the_seed(script):
    m = load(script)
    no_noise = lambda x, sigma: torch.zeros_like(x)
    start = lambda seed: m.sample(no_noise, 20000, seed)[0] / m.SIGMA_MAX
    z = start(1)
    assert torch.all(z.mean(0).abs() < 0.001) and torch.all((z.std(0) - 1).abs() < 0.002)
    assert (z < -1.96).float().mean().item() == pytest.approx(0.025, abs=0.001)  # a normal tail
    assert torch.equal(z, start(1)) and not torch.equal(z, start(2))


@pytest.mark.parametrize("script", GAUSSIANS)
def test_quasi_random_start_leaves_only_the_start_offset_in_the_mean(script):
    """With the exact denoiser each sample is its start pushed through a fixed map, so the mean
    of 2000 misses MU by the offset of starting at 0, MU * S / sigma_0, and by no luck of the
    draw (random starts add about S / sqrt(2000) = 0.0002)."""
    m = load(script)
    mu = torch.as_tensor(m.MU, dtype=torch.float64)
    for seed in range(4):
        x = m.sample(exact_eps(mu.float(), m.S), 2000, seed=seed)[-1].double()
        assert torch.allclose(x.mean(0), mu * (1 - m.S / m.SIGMA_MAX), rtol=0, atol=1e-5)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_target_sample_has_the_stated_mean_and_std(script):
    m = load(script)
    y = m.target_sample(20000, torch.Generator().manual_seed(0))
    assert y.shape == (20000, m.DIM)
    assert torch.all((y.mean(0) - torch.as_tensor(m.MU)).abs() < 0.0005)
    assert torch.all((y.std(0) / m.S - 1).abs() < 0.03)


def test_report_of_2d_sees_a_shift():
    m = load("simple_2Diffusion.py")
    good = m.report(m.target_sample(2000, torch.Generator().manual_seed(1)))
    bad = m.report(m.target_sample(2000, torch.Generator().manual_seed(1)) + torch.tensor([0.01, 0]))
    assert good["w1"] < 2 * good["w1_floor"] < bad["w1"]
    assert bad["mean"][0] == pytest.approx(good["mean"][0] + 0.01, abs=1e-6)


@pytest.mark.parametrize("script", GAUSSIANS)
def test_short_training_lands_near_the_target(script):
    m = load(script)
    model, losses = m.train(steps=800, seed=0)
    x = m.sample(model, 2000, seed=0)[-1]
    assert torch.all((x.mean(0) - torch.as_tensor(m.MU)).abs() < 0.01)
    assert torch.all((0.5 * m.S < x.std(0)) & (x.std(0) < 2 * m.S))
    assert losses[-1] < losses[0]

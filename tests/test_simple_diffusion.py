"""Math checks of the "remove one noise level at a time" scripts."""
import pytest
import torch
from conftest import load


def exact_eps(mu, s):
    """E[eps | x] for x = y + sigma * eps, y ~ N(mu, s^2): sigma (x - mu) / (s^2 + sigma^2)."""
    return lambda x, sigma: sigma * (x - mu) / (s**2 + sigma**2)


@pytest.mark.parametrize("script", ["simple_1Diffusion.py"])
def test_ladder_decreases_and_hits_its_ends(script):
    m = load(script)
    sigma = m.noise_ladder()
    assert len(sigma) == m.LEVELS + 1
    assert torch.all(sigma[1:] < sigma[:-1])
    assert sigma[0].item() == pytest.approx(m.SIGMA_MAX, rel=1e-5)
    assert sigma[-2].item() == pytest.approx(m.SIGMA_MIN, rel=1e-4)
    assert sigma[-1].item() == 0


@pytest.mark.parametrize("script", ["simple_1Diffusion.py"])
def test_exact_denoiser_reproduces_the_target(script):
    m = load(script)
    traj = m.sample(exact_eps(torch.tensor(m.MU), m.S), 20000, seed=3)
    assert traj.shape == (m.LEVELS + 1, 20000, m.DIM)
    x = traj[-1]
    assert torch.all((x.mean(0) - torch.tensor(m.MU)).abs() < 0.002)
    assert torch.all((x.std(0) / m.S - 1).abs() < 0.2)


def test_short_training_lands_near_the_target():
    m = load("simple_1Diffusion.py")
    model, losses = m.train(steps=800, seed=0)
    x = m.sample(model, 2000, seed=0)[-1]
    assert abs(x.mean().item() - m.MU) < 0.01
    assert 0.5 * m.S < x.std().item() < 2 * m.S
    assert losses[-1] < losses[0]

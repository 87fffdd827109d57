"""Checks of swiss_roll_DDPM.py: the data, the schedule's end point, and the sampler with
the exact noise predictor of Gaussian data plugged in."""
import math

import pytest
import torch
from conftest import load

m = load("swiss_roll_DDPM.py")


def test_noise_free_roll_is_sklearns_spiral(monkeypatch):
    monkeypatch.setattr(m, "NOISE", 0.0)
    x = m.target_sample(5000, torch.Generator().manual_seed(0)) * m.SCALE
    s = x.norm(dim=1)  # on the spiral, the radius is the curve parameter s
    assert s.min() >= 1.5 * math.pi - 1e-3 and s.max() <= 4.5 * math.pi + 1e-3
    angle = torch.atan2(x[:, 1], x[:, 0])
    assert torch.allclose(torch.cos(angle - s), torch.ones_like(s), atol=1e-3)


def test_roll_noise_has_std_noise_over_scale():
    g = torch.Generator().manual_seed(0)
    with_noise = m.target_sample(20000, g)
    g = torch.Generator().manual_seed(0)
    m_noise, m.NOISE = m.NOISE, 0.0
    try:
        clean = m.target_sample(20000, g)
    finally:
        m.NOISE = m_noise
    assert (with_noise - clean).std().item() == pytest.approx(m.NOISE / m.SCALE, rel=0.02)


def test_schedule_ends_close_enough_to_noise_for_an_N01_start():
    beta, alpha, alpha_bar = m.schedule()
    assert len(beta) == m.T and torch.all(beta[1:] > beta[:-1])
    assert torch.all((beta > 0) & (beta < 1))
    assert torch.allclose(alpha_bar, torch.cumprod(1 - beta, 0))
    # x_T = sqrt(alpha_bar_T) x_0 + sqrt(1 - alpha_bar_T) eps: the bound stated in the script
    assert alpha_bar[-1] < 1e-4
    x0_max = m.target_sample(100000, torch.Generator().manual_seed(0)).norm(dim=1).max()
    assert alpha_bar[-1].sqrt() * x0_max < 0.01
    kl_max = 0.5 * alpha_bar[-1] * x0_max**2  # KL(q(x_T | x_0) || N(0, I)) to first order
    assert kl_max < 1e-4


def test_exact_eps_of_gaussian_data_reproduces_it():
    mu, s = torch.tensor([0.5, -0.3]), 0.2
    _, _, alpha_bar = m.schedule()

    def exact_eps(x, t):  # E[eps | x_t] for x_0 ~ N(mu, s^2 I)
        ab = alpha_bar[t].unsqueeze(1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)

    traj = m.sample(exact_eps, 20000, seed=0)
    assert traj.shape == (m.T + 1, 20000, 2)
    x = traj[-1]
    assert torch.all((x.mean(0) - mu).abs() < 0.01)
    assert torch.all((x.std(0) / s - 1).abs() < 0.03)


def test_report_sees_a_blurred_roll():
    x = m.target_sample(2000, torch.Generator().manual_seed(0))
    sharp = m.report(x)
    assert sharp["generated"] == pytest.approx(sharp["target"], rel=0.05)
    blurred = m.report(x + 0.1 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)))
    assert blurred["generated"] > 1.3 * blurred["target"]

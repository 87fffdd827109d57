"""Math checks of simple_multimodal: the four spikes, their exact denoiser, the report."""
import numpy as np
import pytest
import torch
from benchmark import TARGETS, fidelity, figures
from conftest import load

m = load("simple_multimodal.py")
TARGET = TARGETS["simple_multimodal"][0]
SHARE_SE = (0.25 * 0.75 / 2000) ** 0.5  # binomial standard error of a share of 2000 samples


def mixture_eps(x, sigma):
    """E[eps | x] for x = y + sigma * eps, y from the four spikes N(c, STD^2 I), equal weights:
    (x - E[y | x]) / sigma, E[y | x] = sum_c w_c (STD^2 x + sigma^2 c) / (STD^2 + sigma^2),
    w_c = the responsibility of spike c, softmax of -|x - c|^2 / (2 (STD^2 + sigma^2))."""
    var = m.STD**2 + sigma**2
    w = torch.softmax(-torch.cdist(x, m.CENTERS) ** 2 / (2 * var), dim=1)
    return (x - (m.STD**2 * x + sigma**2 * (w @ m.CENTERS)) / var) / sigma


def test_mixture_eps_is_the_gaussian_one_near_a_spike_and_the_mean_one_far_up():
    x = torch.tensor([[0.9, 1.2]])
    sigma = torch.tensor([[0.05]])  # only the spike at (1, 1) can have made x
    gauss = sigma * (x - torch.tensor([1.0, 1.0])) / (m.STD**2 + sigma**2)
    assert torch.allclose(mixture_eps(x, sigma), gauss, rtol=1e-5)
    sigma = torch.tensor([[1e3]])  # every spike equally likely: E[y | x] = data mean 0
    assert torch.allclose(mixture_eps(x, sigma), x / sigma, rtol=1e-4)


def test_target_sample_has_four_equal_spikes_of_width_std():
    y = m.target_sample(20000, torch.Generator().manual_seed(0))
    r = m.report(y)
    assert all(abs(share - 0.25) < 0.015 for share in r["share"])
    assert all(abs(spread / m.STD - 1) < 0.05 for spread in r["spread"])
    assert r["max_dist"] < 6 * m.STD


def test_exact_denoiser_splits_the_noise_into_the_four_spikes():
    traj = m.sample(mixture_eps, 20000, seed=3)
    assert traj.shape == (m.LEVELS + 1, 20000, 2)
    r = m.report(traj[-1])
    assert all(abs(share - 0.25) < 4.5 * SHARE_SE / 10**0.5 for share in r["share"])
    assert all(abs(spread / m.STD - 1) < 0.1 for spread in r["spread"])
    assert r["max_dist"] < 0.1
    # 20000 samples have a floor sqrt(10) below 2000's, so the spread's 3% shrink (Euler steps,
    # and the last step from SIGMA_MIN = 0.002) shows: W1/floor 1.37 here, 1.02 on 2000 of them
    assert fidelity(traj[-1].numpy(), TARGET, 3) < 1.6
    assert fidelity(traj[-1, :2000].numpy(), TARGET, 3) < 1.2


def test_exact_sampler_keeps_each_sample_in_its_start_quadrant():
    """The data is mirror symmetric, so the exact flow never crosses an axis, and churn's fresh
    noise (sigma <= CHURN_RANGE[1]) is far too small to: each sample ends in the spike of the
    quadrant it starts in, and the shares are those of the start, binomial."""
    traj = m.sample(mixture_eps, 2000, seed=5)
    start, end = torch.sign(traj[0]), m.CENTERS[m.nearest(traj[-1]).indices]
    assert torch.equal(start, end)


def test_exact_denoiser_at_2000_samples_is_off_by_binomial_noise_only():
    """Seeds 0-23, 2000 samples each: every share within 4.5 binomial standard errors of 1/4,
    the pooled shares within 4.5 of theirs, every sample within 0.1 of a spike, and the
    benchmark's W1/floor at most 1.2 in the median."""
    counts, ratios = np.zeros(4), []
    for seed in range(24):
        x = m.sample(mixture_eps, 2000, seed=seed)[-1]
        r = figures(x.numpy(), TARGET, "spikes")
        assert r["share err"] < 4.5 * SHARE_SE and r["max dist"] < 0.1
        counts += np.bincount(m.nearest(x).indices.numpy(), minlength=4)
        ratios.append(fidelity(x.numpy(), TARGET, seed))
    assert np.abs(counts / counts.sum() - 0.25).max() < 4.5 * SHARE_SE / 24**0.5
    assert np.median(ratios) < 1.2


def test_report_sees_a_lost_spike_and_a_straggler():
    y = m.target_sample(2000, torch.Generator().manual_seed(1))
    y[:, 0] = y[:, 0].abs()  # the two left spikes folded onto the right ones
    y[0] = torch.tensor([0.0, 1.0])  # one sample stuck half way between two spikes
    r = m.report(y)
    assert r["share"][1] == 0 and r["share"][2] == 0
    assert r["share"][0] + r["share"][3] == pytest.approx(1)
    assert r["max_dist"] == pytest.approx(1.0, abs=1e-6)


def test_short_training_splits_the_noise_evenly_and_churn_rescues_the_stragglers(monkeypatch):
    """Half the default training already splits the noise four ways: the shares of 20000
    samples (binomial standard error 0.003) sit within 0.02 of 1/4 and every sample is within
    0.1 of a spike. The same net without churn strands samples between spikes (seed 2: 165 of
    20000 farther than 0.1, the farthest 1.0 away; with churn none, the farthest 0.05)."""
    model, losses = m.train(steps=800, seed=2)
    x = m.sample(model, 20000, seed=2)[-1]
    r = m.report(x)
    assert all(abs(share - 0.25) < 0.02 for share in r["share"])
    assert r["max_dist"] < 0.1 and m.nearest(x).values.median() < 0.05
    assert losses[-1] < losses[0]
    monkeypatch.setattr(m, "CHURN", 0.0)
    stranded = m.nearest(m.sample(model, 20000, seed=2)[-1]).values > 0.1
    assert stranded.sum() > 20

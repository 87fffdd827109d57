"""Math checks of simple_multimodal: the four spikes, their exact denoiser, the report."""
import pytest
import torch
from benchmark import TARGETS, fidelity, figures
from conftest import load

m = load("simple_multimodal.py")


def mixture_eps(x, sigma):
    """E[eps | x] for x = y + sigma * eps, y from the four spikes N(c, S^2 I), equal weights:
    (x - E[y | x]) / sigma, E[y | x] = sum_c w_c (S^2 x + sigma^2 c) / (S^2 + sigma^2),
    w_c = the responsibility of spike c, softmax of -|x - c|^2 / (2 (S^2 + sigma^2))."""
    var = m.S**2 + sigma**2
    w = torch.softmax(-torch.cdist(x, m.CENTERS) ** 2 / (2 * var), dim=1)
    return (x - (m.S**2 * x + sigma**2 * (w @ m.CENTERS)) / var) / sigma


def test_mixture_eps_is_the_gaussian_one_near_a_spike_and_the_mean_one_far_up():
    x = torch.tensor([[0.9, 1.2]])
    sigma = torch.tensor([[0.05]])  # only the spike at (1, 1) can have made x
    gauss = sigma * (x - torch.tensor([1.0, 1.0])) / (m.S**2 + sigma**2)
    assert torch.allclose(mixture_eps(x, sigma), gauss, rtol=1e-5)
    sigma = torch.tensor([[1e3]])  # every spike equally likely: E[y | x] = data mean 0
    assert torch.allclose(mixture_eps(x, sigma), x / sigma, rtol=1e-4)


def test_target_sample_has_four_equal_spikes_of_width_s():
    y = m.target_sample(20000, torch.Generator().manual_seed(0))
    r = m.report(y)
    assert all(abs(share - 0.25) < 0.015 for share in r["share"])
    assert all(abs(s / m.S - 1) < 0.05 for spread in r["spread"] for s in spread)
    assert r["max_dist"] < 6 * m.S


def test_exact_denoiser_splits_the_noise_into_the_four_spikes():
    traj = m.sample(mixture_eps, 20000, seed=3)
    assert traj.shape == (m.LEVELS + 1, 20000, 2)
    r = m.report(traj[-1])
    assert all(abs(share - 0.25) < 0.03 for share in r["share"])
    assert all(abs(s / m.S - 1) < 0.25 for spread in r["spread"] for s in spread)
    assert r["max_dist"] < 0.1
    assert r["w1"] < 2 * r["w1_floor"]


def test_report_sees_a_lost_spike_and_a_straggler():
    y = m.target_sample(2000, torch.Generator().manual_seed(1))
    y[:, 0] = y[:, 0].abs()  # the two left spikes folded onto the right ones
    y[0] = torch.tensor([0.0, 1.0])  # one sample stuck half way between two spikes
    r = m.report(y)
    assert r["share"][1] == 0 and r["share"][2] == 0
    assert r["max_dist"] == pytest.approx(1.0, abs=1e-6)
    assert r["w1"] > 10 * r["w1_floor"]


def test_short_training_splits_the_noise_evenly():
    """Each draw trains with its mirror images, so no batch tilts the net towards a spike:
    with 20000 samples (share noise sd 0.003) the shares sit within 0.015 of 1/4. Without
    the mirror images this seed gave 0.030 (0.007-0.030 over seeds 0-2; with: 0.006-0.010)."""
    model, losses = m.train(steps=800, seed=2)
    x = m.sample(model, 20000, seed=2)[-1]
    r = m.report(x)
    assert all(abs(share - 0.25) < 0.015 for share in r["share"])
    assert m.nearest(x)[1].median() < 0.05


def test_the_worst_seed_is_lopsided_for_the_exact_denoiser_too():
    """The README's worst run, seed 11 (share err 0.0315, W1 2.10 x the floor, trained net):
    with the same 2000 starting draws the exact denoiser is at 0.0295 and 1.92 x itself,
    so the draws, not the net, are lopsided there."""
    x = m.sample(mixture_eps, 2000, seed=11)[-1].numpy()
    target = TARGETS["simple_multimodal"][0]
    assert figures(x, target, "spikes")["share err"] == pytest.approx(0.0295, abs=0.001)
    assert fidelity(x, target, 11) == pytest.approx(1.92, abs=0.02)

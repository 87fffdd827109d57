"""Remove one noise level at a time, on four spikes: the noise must split four ways.

The data is four equal spikes N(c, STD^2 I), c in CENTERS = (+-1, +-1). As in simple_2Diffusion,
an MLP learns eps_theta(x, sigma) ~ E[eps | x] for x = y + sigma * eps on the ladder of Karras
et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (eq. 5), and
sampling walks down from x_0 ~ N(0, sigma_0^2 I) by Euler steps of dx/dsigma = eps (eq. 4),
    x_{i+1} = x_i - (sigma_i - sigma_{i+1}) * eps_theta(x_i, sigma_i),
low on the ladder first adding fresh noise up to (1 + CHURN) sigma_i ("churn", Algorithm 2).

Run:    python codes/simple_multimodal.py
Writes: outputs/simple_multimodal.png (loss, process, result), outputs/simple_multimodal_samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

# data
CENTERS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # the spikes
STD = 0.01  # std of each spike, in each coordinate
DIM = 2  # dimension of a data point
# schedule (Karras et al. 2022, eq. 5)
SIGMA_MAX = 80.0  # sigma_0: swamps the data, so pure noise N(0, sigma_0^2 I) is where we start
SIGMA_MIN = 0.002  # last level before 0
RHO = 7.0  # ladder curvature: levels crowd near SIGMA_MIN
LEVELS = 400  # levels from SIGMA_MAX down to SIGMA_MIN, then one step to 0
# model
WIDTH = 64  # width of the MLP
SIGMA_IN = 0.3  # net input x / sqrt(SIGMA_IN^2 + sigma^2): the split (sigma ~ 0.3) at unit size
# training
STEPS = 1600  # Adam steps
BATCH = 1024  # noisy data points per step
LR = 2e-2  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate
CHURN = 0.2  # churn: raise sigma_i to (1 + CHURN) sigma_i with fresh noise ...
CHURN_RANGE = (0.02, 0.2)  # ... for sigma_i in this range, where samples settle into a spike


def target_sample(n, generator=None):
    """n data points, shape (n, DIM): a random spike, then its noise."""
    spike = torch.randint(len(CENTERS), (n,), generator=generator)
    return CENTERS[spike] + STD * torch.randn(n, DIM, generator=generator)


def noise_ladder():
    """sigma_0 = SIGMA_MAX > ... > sigma_{LEVELS-1} = SIGMA_MIN, then 0 (Karras et al. eq. 5)."""
    hi, lo = SIGMA_MAX ** (1 / RHO), SIGMA_MIN ** (1 / RHO)
    return torch.cat([(hi + torch.linspace(0, 1, LEVELS) * (lo - hi)) ** RHO, torch.zeros(1)])


class Denoiser(nn.Sequential):
    """eps_theta(x, sigma), the noise in x at level sigma; x: (n, DIM), sigma: (n, 1)."""

    def __init__(self):
        super().__init__(nn.Linear(DIM + 1, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
                         nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, DIM))

    def forward(self, x, sigma):
        x_in = x / (SIGMA_IN**2 + sigma**2).sqrt()  # Karras et al. c_in
        # skip term: the exact eps for data N(0, I) (the spikes' mean and covariance), right far
        # up the ladder, where the net alone errs on rare large x; the net adds the rest
        return sigma * x / (1 + sigma**2) + super().forward(torch.cat([x_in, sigma.log() / 4], 1))


def train(steps=STEPS, seed=0):
    """Fit eps_theta at levels log-uniform in [SIGMA_MIN, SIGMA_MAX]; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Denoiser(), []
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    for _ in range(steps):
        sigma = SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** torch.rand(BATCH, 1)
        eps = torch.randn(BATCH, DIM)
        loss = ((model(target_sample(BATCH) + sigma * eps, sigma) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Walk from N(0, sigma_0^2 I) down the ladder; returns (LEVELS + 1, n, DIM), noise first."""
    sigma, g = noise_ladder(), torch.Generator().manual_seed(seed)
    xs = [sigma[0] * torch.randn(n, DIM, generator=g)]
    for i in range(LEVELS):
        s = sigma[i] * (1 + CHURN) if CHURN_RANGE[0] <= sigma[i] <= CHURN_RANGE[1] else sigma[i]
        # churn (Karras et al. Algorithm 2): fresh noise up to level s (none where s = sigma_i)
        x = xs[-1] + (s**2 - sigma[i] ** 2).sqrt() * torch.randn(n, DIM, generator=g)
        xs.append(x - (s - sigma[i + 1]) * model(x, s.expand(n, 1)))  # Euler, dx/dsigma = eps
    return torch.stack(xs)


def nearest(x):
    """The distance from each x (n, DIM) to its nearest spike, and that spike's index."""
    return torch.cdist(x, CENTERS).min(1)  # (values, indices)


def report(x):
    """Share per spike, spread (root mean square offset from its spike, the larger axis: the
    target's STD) and the farthest sample, printed and as a dict."""
    dist, spike = nearest(x)
    share = [(spike == j).float().mean().item() for j in range(len(CENTERS))]
    spread = [(x[spike == j] - c).pow(2).mean(0).sqrt().max().item() for j, c in enumerate(CENTERS)]
    print(f"generated shares {' '.join(f'{p:.3f}' for p in share)} (target 0.250 each), spreads "
          f"{' '.join(f'{s:.4f}' for s in spread)} (target {STD:.4f}), farthest {dist.max():.3f}")
    return {"share": share, "spread": spread, "max_dist": dist.max().item()}


def plot(losses, traj, path, show=False):
    """Loss, the walk down the ladder, the result against the target; traj: a tensor."""
    scale = (1 + noise_ladder() ** 2).sqrt()[:, None, None]  # unit size at every level
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
    a.plot(losses, lw=0.5)
    a.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    b.plot(*(traj[:, :200] / scale).permute(2, 0, 1), lw=0.4, alpha=0.5)
    b.set(title="200 walks down the ladder into the spikes", aspect="equal", xlim=(-3, 3),
          ylim=(-3, 3), xlabel="x1 / sqrt(1 + sigma_i^2)", ylabel="x2 / sqrt(1 + sigma_i^2)")
    for y, colour, what in [(target_sample(len(traj[-1]), torch.Generator().manual_seed(1)), "k",
                             "target"), (traj[-1], "C1", f"generated, {len(traj[-1])} samples")]:
        c.scatter(*(y - CENTERS[nearest(y).indices]).T, s=3, alpha=0.4, c=colour, label=what)
    c.set(title="result against the target: x - its nearest spike c", xlabel="x1 - c1",
          ylabel="x2 - c2", aspect="equal", xlim=(-5 * STD, 5 * STD), ylim=(-5 * STD, 5 * STD))
    c.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=100)
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to generate")
    p.add_argument("--seed", type=int, default=0, help="seed of training and sampling")
    p.add_argument("--out", default="outputs", help="folder for the files")
    p.add_argument("--show", action="store_true", help="open the figure")
    args = p.parse_args(argv)
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    if min(args.steps, args.samples) < 1 or not os.access(args.out, os.W_OK):
        p.error("--steps and --samples must be positive, --out writable")
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    r = report(traj[-1])
    png, npy = (os.path.join(args.out, f"simple_multimodal{f}") for f in (".png", "_samples.npy"))
    np.save(npy, traj[-1].numpy())
    plot(losses, traj, png, args.show)
    print(f"wrote {png}, {npy}")
    return r


if __name__ == "__main__":
    main()

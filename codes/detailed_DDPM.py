"""DDPM (Ho et al. 2020) with the exact pdf of every marginal q(x_t) beside the reverse process.

single_DDPM.py's setting: data N(1, 0.01^2), T = 1000 levels with sigma_t = sqrt((1 - alpha_bar_t)
/ alpha_bar_t) geometric from 1e-3 to 100, one network eps_theta(x_t, t) trained by Algorithm 1,
ancestral sampling by Algorithm 2 with the posterior variance beta~_t (eq. 7). For Gaussian data
every marginal of the forward process is known in closed form (from eq. 4):
    q(x_t) = N(sqrt(alpha_bar_t) MU, alpha_bar_t STD^2 + 1 - alpha_bar_t),
and the reverse process, started at x_T ~ N(0, 1), must follow it at EVERY level down to t = 0.

Run:    python codes/detailed_DDPM.py  (flags: --steps --samples --seed --out --show)
Writes: outputs/detailed_DDPM.png (loss, std and pdfs per level), outputs/detailed_DDPM_samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

# data
MU = 1.0  # mean of the data N(MU, STD^2)
STD = 0.01  # std of the data
# schedule
T = 1000  # noise levels
SIGMA_MIN = 1e-3  # sigma_1, where sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
SIGMA_MAX = 100.0  # sigma_T, so alpha_bar_T = 1 / (1 + SIGMA_MAX^2)
# model
WIDTH = 32  # width of the MLP
# training
STEPS = 2000  # Adam steps
BATCH = 512  # (x_0, t, eps) draws per step
LR = 5e-3  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate
PDF_LEVELS = [800, 650, 550, 450, 300, 0]  # levels whose pdfs are drawn and printed


def target_sample(n, g=None):
    return MU + STD * torch.randn(n, 1, generator=g)


def schedule():
    """beta_t and alpha_bar_t for t = 0..T, float64 (t = 0 is the data: beta_0 = 0)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), T, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    return 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]]), alpha_bar


def marginal(t):
    """Mean and std of the exact q(x_t) (Ho et al. eq. 4), for t an int or a tensor of ints."""
    alpha_bar = schedule()[1][t]
    return alpha_bar.sqrt() * MU, (alpha_bar * STD**2 + 1 - alpha_bar).sqrt()


class Denoiser(nn.Sequential):
    """eps_theta(x_t, t) for x_t: (n, 1) and t: (n,) ints in 1..T: an MLP of x_t standardized by
    the exact q(x_t), and of t / T (sigma_t is geometric in t: t / T is log sigma_t rescaled)."""

    def __init__(self):
        super().__init__(nn.Linear(2, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
                         nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, 1))
        self.mean, self.std = marginal(torch.arange(T + 1)[:, None])  # of q(x_t), t = 0..T

    def forward(self, xt, t):
        z = (xt - self.mean[t]) / self.std[t]  # x_t in stds of q(x_t) from its mean
        return super().forward(torch.cat([z.float(), t[:, None] / T], 1))


def train(steps=STEPS, seed=0):
    """Algorithm 1 of Ho et al.; returns (model, losses)."""
    torch.manual_seed(seed)
    model, ab, losses = Denoiser(), schedule()[1][:, None], []
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    for _ in range(steps):
        t, eps = torch.randint(1, T + 1, (BATCH,)), torch.randn(BATCH, 1)
        xt = (ab[t].sqrt() * target_sample(BATCH) + (1 - ab[t]).sqrt() * eps).float()  # Ho eq. 4
        loss = ((model(xt, t) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_schedule.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 of Ho et al. from x_T ~ N(0, 1); returns x_T, ..., x_0 as (T + 1, n, 1)."""
    beta, alpha_bar = (v.tolist() for v in schedule())
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 1, generator=g)]
    for t in range(T, 0, -1):
        eps = model(xs[-1], torch.full((n,), t))
        x = (xs[-1] - beta[t] / (1 - alpha_bar[t]) ** 0.5 * eps) / (1 - beta[t]) ** 0.5
        var = beta[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])  # beta~_t, Ho et al. eq. 7
        xs.append(x + var**0.5 * torch.randn(n, 1, generator=g))
    return torch.stack(xs)


def report(traj):
    for t in PDF_LEVELS:  # t = 0 is the data: the target
        (mean, std), x = marginal(t), traj[T - t]
        print(f"t = {t}: exact {mean:.4f} +- {std:.4f}, generated {x.mean():.4f} +- {x.std():.4f}")
    return {"mean": traj[-1].mean().item(), "std": traj[-1].std().item()}


def plot(losses, traj, path, show):
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), layout="constrained")
    axes[0, 0].semilogy(losses, lw=0.5)
    axes[0, 0].set(title="training loss (Algorithm 1)", xlabel="step", ylabel="MSE on eps")
    # traj[i] is at levels[i]; z is x_t in stds of q(x_t) from its mean
    levels, z = torch.arange(T, -1, -1), torch.linspace(-4, 4, 161, dtype=torch.float64)
    axes[0, 1].semilogy(levels, traj[:, :, 0].std(1), levels, marginal(levels)[1], "k--")
    axes[0, 1].set(title="std of x_t (dashed: q(x_t))", xlabel="level t", ylabel="std", xlim=(T, 0))
    for ax, t, mean, std in zip(axes.flat[2:], PDF_LEVELS, *marginal(PDF_LEVELS)):
        ax.hist(traj[T - t, :, 0], mean + std * z[::4], density=True, alpha=0.6)
        ax.plot(mean + std * z, (-z**2 / 2).exp() / (2 * np.pi) ** 0.5 / std, "k")
        ax.set(title=f"t = {t}: reverse vs exact q(x_t)", xlabel="x_t", ylabel="pdf")
    fig.savefig(path, dpi=90)
    if show:
        plt.show()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--steps", STEPS), ("--samples", SAMPLES), ("--seed", 0)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--out", default="outputs", help="folder for the figure and the samples")
    p.add_argument("--show", action="store_true", help="open the figure")
    args = p.parse_args(argv)
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    if min(args.steps, args.samples) < 1 or not os.access(args.out, os.W_OK):
        p.error("--steps and --samples must be positive, --out writable")
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed).numpy()
    np.save(f"{args.out}/detailed_DDPM_samples.npy", traj[-1])
    plot(losses, traj, f"{args.out}/detailed_DDPM.png", args.show)
    print(f"wrote {args.out}/detailed_DDPM.png, {args.out}/detailed_DDPM_samples.npy")
    return report(traj)


if __name__ == "__main__":
    main()

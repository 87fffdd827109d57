"""DDPM (Ho et al. 2020) on 1D data N(1, 0.01^2), with one network eps_theta(x_t, t) for all levels.

Forward process (Ho et al. eq. 4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
Algorithm 1 fits eps_theta(x_t, t) to eps; Algorithm 2 starts from x_T ~ N(0, 1) and steps
    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z
with sigma_t^2 = beta~_t, the posterior variance (eq. 7), which is 0 at t = 1. The schedule
makes sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) geometric from 1e-3 to 100: beta_1 = 1e-6
lies far below the data variance 1e-4, and alpha_bar_T = 1e-4 makes q(x_T) almost N(0, 1).

Run:    python codes/single_DDPM.py  (flags: --steps --samples --seed --out --show)
Writes: outputs/single_DDPM.png (loss, process, result), outputs/single_DDPM_samples.npy
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


def target_sample(n, g=None):
    return MU + STD * torch.randn(n, 1, generator=g)


def schedule():
    """beta_t and alpha_bar_t for t = 0..T, float64 (t = 0 is the data: beta_0 = 0)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), T, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    return 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]]), alpha_bar


class Denoiser(nn.Module):
    """eps_theta(x_t, t) for x_t: (n, 1) and t: (n,) ints in 1..T."""

    def __init__(self, x0):
        super().__init__()
        ab, x0 = schedule()[1][:, None], x0.double()
        self.register_buffer("log_sigma", (0.5 * ((1 - ab) / ab).log()).float())
        # the mean and std of q(x_t) for the training data x0: the net sees x_t standardized
        self.register_buffer("shift", (ab.sqrt() * x0.mean()).float())
        self.register_buffer("scale", (ab * x0.var() + 1 - ab).sqrt().float())
        self.net = nn.Sequential(nn.Linear(2, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
                                 nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, 1))

    def forward(self, xt, t):
        return self.net(torch.cat([(xt - self.shift[t]) / self.scale[t], self.log_sigma[t] / 4], 1))


def train(steps=STEPS, seed=0):
    """Algorithm 1 of Ho et al.; returns (model, losses)."""
    torch.manual_seed(seed)
    model, ab, losses = Denoiser(target_sample(4096)), schedule()[1][:, None], []
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


def report(x):
    print(f"target mean {MU:.4f} std {STD:.4f}, generated mean {x.mean():.4f} std {x.std():.4f}")
    return {"mean": x.mean().item(), "std": x.std().item()}


def plot(losses, traj, path, show):
    # alpha_bar_t for the band of q(x_t), and a grid for the target's pdf
    ab, x = schedule()[1].numpy()[:, None], np.linspace(MU - 5 * STD, MU + 5 * STD, 201)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    a.semilogy(losses, lw=0.5)
    a.set(title="training loss (Algorithm 1)", xlabel="step", ylabel="MSE on eps")
    b.plot(traj[::-1, :50, 0], "C0", lw=0.5, alpha=0.5)  # traj[::-1][t] is x_t
    b.plot(np.sqrt(ab) * MU + 2 * np.sqrt(ab * STD**2 + 1 - ab) * [-1, 1], "k--")  # q(x_t)
    b.set(title="50 samples; dashed: q(x_t), 2 std", xlabel="level t", ylabel="x_t", xlim=(T, 0))
    c.hist(traj[-1, :, 0], bins=x[::4], density=True, alpha=0.6)
    c.plot(x, np.exp(-0.5 * ((x - MU) / STD) ** 2) / np.sqrt(2 * np.pi) / STD, "k")
    c.set(title="generated (bars) against the target (line)", xlabel="x_0", ylabel="density")
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
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/single_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), f"{args.out}/single_DDPM.png", args.show)
    print(f"wrote {args.out}/single_DDPM.png, {args.out}/single_DDPM_samples.npy")
    return r


if __name__ == "__main__":
    main()

"""DDPM (Ho et al. 2020) on 1D data N(1, 0.01^2), with one small network per noise level.

single_DDPM.py's forward process (eq. 4) and sampler (Algorithm 2, posterior variance beta~_t,
eq. 7), but T networks eps_theta^(t)(x_t) instead of one told t: level t asks only net t. They
live as one stack of weights with a leading axis of size T; each training step draws a batch at
every level and sums the T losses (Algorithm 1 with t enumerated, not drawn). No weight is shared,
so each net gets the gradient (and from Adam the update) it would get alone. Each sees x_t
standardized by the exact q(x_t) (eq. 4); sigma_t is geometric from 1e-3 to 100 over T = 200.

Run:    python codes/simple_DDPM.py  (flags: --steps --samples --seed --out --show)
Writes: outputs/simple_DDPM.png (loss, process, result), outputs/simple_DDPM_samples.npy
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
T = 200  # noise levels, one network each
SIGMA_MIN = 1e-3  # sigma_1, where sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
SIGMA_MAX = 100.0  # sigma_T, so alpha_bar_T = 1 / (1 + SIGMA_MAX^2)
# model
WIDTH = 16  # width of each level's MLP
# training
STEPS = 1000  # Adam steps
BATCH = 32  # (x_0, eps) draws per level per step
LR = 1e-2  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate


def target_sample(n, g=None):
    return MU + STD * torch.randn(n, 1, generator=g)


def schedule():
    """beta_t and alpha_bar_t for t = 0..T, float64 (t = 0 is the data: beta_0 = 0)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), T, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    return 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]]), alpha_bar


class Denoisers(nn.Module):
    """eps_theta^(t)(x_t) of T MLPs, for x_t: (L, n, 1), n samples at each of L levels t: (L,)."""

    def __init__(self):
        super().__init__()
        sizes = [(1, WIDTH), (WIDTH, WIDTH), (WIDTH, 1)]  # (fan_in, fan_out) per layer
        # weights (T, fan_in, fan_out) and biases (T, 1, fan_out), with nn.Linear's init
        self.weights = nn.ParameterList((torch.rand(T, i, o) * 2 - 1) / i**0.5 for i, o in sizes)
        self.biases = nn.ParameterList((torch.rand(T, 1, o) * 2 - 1) / i**0.5 for i, o in sizes)

    def forward(self, xt, t):
        ab = schedule()[1][t, None, None]
        h = ((xt - ab.sqrt() * MU) / (ab * STD**2 + 1 - ab).sqrt()).float()  # standardized, eq. 4
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = nn.functional.silu(torch.baddbmm(b[t - 1], h, w[t - 1]))  # net t on level t
        return torch.baddbmm(self.biases[-1][t - 1], h, self.weights[-1][t - 1])


def train(steps=STEPS, seed=0):
    """Algorithm 1 of Ho et al. at all T levels at once; returns (model, losses)."""
    torch.manual_seed(seed)
    model, ab, losses = Denoisers(), schedule()[1][1:, None, None], []
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    for _ in range(steps):
        x0, eps = target_sample(T * BATCH).view(T, BATCH, 1), torch.randn(T, BATCH, 1)
        xt = (ab.sqrt() * x0 + (1 - ab).sqrt() * eps).float()  # Ho et al. eq. 4
        # every level t = 1..T with its own net; the loss is the sum of the T nets' losses
        loss = ((model(xt, torch.arange(1, T + 1)) - eps) ** 2).mean((1, 2)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_schedule.step()
        losses.append(loss.item() / T)
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 of Ho et al. from x_T ~ N(0, 1); returns x_T, ..., x_0 as (T + 1, n, 1)."""
    beta, alpha_bar = (v.tolist() for v in schedule())
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 1, generator=g)]
    for t in range(T, 0, -1):
        eps = model(xs[-1][None], torch.tensor([t]))[0]
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
    a.set(title="training loss, mean over the T nets", xlabel="step", ylabel="MSE on eps")
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
    np.save(f"{args.out}/simple_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), f"{args.out}/simple_DDPM.png", args.show)
    print(f"wrote {args.out}/simple_DDPM.png, {args.out}/simple_DDPM_samples.npy")
    return r


if __name__ == "__main__":
    main()

"""DDPM (Ho et al. 2020) on four spikes N(c, 0.01^2 I), c = (+-1, +-1): each sample picks one.

single_DDPM.py in 2D: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 4), one net
eps_theta(x_t, t) fitted to eps (Algorithm 1), Algorithm 2 from x_T ~ N(0, I) with the posterior
variance beta~_t (eq. 7). sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) is geometric from 1e-3
to 10 over T = 500, so beta_1 = 1e-6 and KL(q(x_T) || N(0, I)) <= 0.01. The net sees x_t scaled
for data std SIGMA_IN (Karras et al. 2022's c_in); draws come with their mirror images, a quarter
at the split. The sampler takes the levels near the split twice, back up by q(x_t | x_{t-1}) and
down again (Lugmayr et al. 2022's resampling): a second pull for samples in the noise's tails.
Run:    python codes/multimodal_DDPM.py  (flags: --steps --samples --seed --out --show)
Writes: outputs/multimodal_DDPM.png (loss, process, result), outputs/multimodal_DDPM_samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

# data
CENTERS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # the spikes
STD = 0.01  # std of each spike
# schedule
T = 500  # noise levels
SIGMA_MIN = 1e-3  # sigma_1, where sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
SIGMA_MAX = 10.0  # sigma_T, so alpha_bar_T = 1 / (1 + SIGMA_MAX^2)
# model
WIDTH = 48  # width of the MLP
SIGMA_IN = 0.3  # data std assumed by the input scaling: the split is seen at unit size
# training
STEPS = 1800  # Adam steps
BATCH = 256  # (x_0, t, eps) draws per step, each with its 4 mirror images
LR = 4e-2  # peak learning rate of the one-cycle schedule
SPLIT = (280, 350)  # a quarter of the draws take t here (sigma_t 0.16 to 0.6): the noise splits
# sampling
SAMPLES = 2000  # samples to generate
RESAMPLE = (230, 350)  # levels t (sigma_t 0.07 to 0.6) taken twice while sampling


def target_sample(n, g=None):
    return CENTERS[torch.randint(4, (n,), generator=g)] + STD * torch.randn(n, 2, generator=g)


def schedule():
    """beta_t and alpha_bar_t for t = 0..T, float64 (t = 0 is the data: beta_0 = 0)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), T, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    return 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]]), alpha_bar


class Denoiser(nn.Module):
    """eps_theta(x_t, t) for x_t: (n, 2) and t: (n,) ints in 1..T."""

    def __init__(self):
        super().__init__()
        ab = schedule()[1][:, None]
        self.register_buffer("log_sigma", (0.5 * ((1 - ab) / ab).log()).float())
        self.register_buffer("c_in", (SIGMA_IN**2 * ab + 1 - ab).rsqrt().float())  # Karras c_in
        self.net = nn.Sequential(nn.Linear(3, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
                                 nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, 2))

    def forward(self, xt, t):
        return self.net(torch.cat([xt * self.c_in[t], self.log_sigma[t] / 4], 1))


def train(steps=STEPS, seed=0):
    """Algorithm 1 of Ho et al., t partly drawn from SPLIT; returns (model, losses)."""
    torch.manual_seed(seed)
    model, alpha_bar, losses = Denoiser(), schedule()[1], []
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    for _ in range(steps):
        t = torch.randint(1, T + 1, (BATCH,))
        t[: BATCH // 4] = torch.randint(*SPLIT, (BATCH // 4,))
        ab, eps = alpha_bar[t, None], torch.randn(BATCH, 2)
        xt = (ab.sqrt() * target_sample(BATCH) + (1 - ab).sqrt() * eps).float()  # Ho eq. 4
        # each draw with its mirror images c * x, one per spike c: no batch tilts the net
        xt, eps = (torch.cat([c * v for c in CENTERS]) for v in (xt, eps))
        loss = ((model(xt, t.repeat(4)) - eps) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_schedule.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 of Ho et al. from x_T ~ N(0, I), each level in RESAMPLE taken twice; returns
    x_T, ..., x_0 as (T + 1, n, 2)."""
    g, (beta, alpha_bar) = torch.Generator().manual_seed(seed), [v.tolist() for v in schedule()]
    x, xs = torch.randn(n, 2, generator=g), []
    for t in range(T, 0, -1):
        xs.append(x)
        for again in range(1 + (RESAMPLE[0] <= t < RESAMPLE[1])):
            if again:  # back up to level t by q(x_t | x_{t-1}) (Ho et al. eq. 2), then down again
                x = (1 - beta[t]) ** 0.5 * x + beta[t] ** 0.5 * torch.randn(n, 2, generator=g)
            eps = model(x, torch.full((n,), t))
            x = (x - beta[t] / (1 - alpha_bar[t]) ** 0.5 * eps) / (1 - beta[t]) ** 0.5
            var = beta[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])  # beta~_t, Ho et al. eq. 7
            x = x + var**0.5 * torch.randn(n, 2, generator=g)
    return torch.stack(xs + [x])


def report(x):
    spike = torch.cdist(x, CENTERS).argmin(1)  # the nearest spike
    offset = x - CENTERS[spike]
    share, dist = torch.bincount(spike, minlength=4) / len(x), offset.norm(dim=1).max()
    spread = [offset[spike == j].std(0).max().item() for j in range(4)]  # the larger of the 2 axes
    print(f"target    share 0.25 at each spike, spread {STD}, max distance to a spike ~{4 * STD}")
    print(f"generated share {share.numpy().round(3)}, spread {np.round(spread, 4)}, max {dist:.3f}")
    return {"share": share.tolist(), "spread": spread, "max_dist": dist.item()}


def plot(losses, traj, path, show):
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.8), layout="constrained")
    a.semilogy(losses, lw=0.5)
    a.set(title="training loss (Algorithm 1)", xlabel="step", ylabel="MSE on eps")
    b.plot(np.arange(T, -1, -1), traj[:, :100, 0], "C0", lw=0.5, alpha=0.5)  # traj[i] is at T - i
    b.set(title="x1 of 100 samples, x_T to x_0", xlabel="level t", ylabel="x1", xlim=(T, 0))
    c.scatter(*(traj[-1] - np.sign(traj[-1])).T, s=3, alpha=0.4)  # the nearest spike is sign(x)
    c.add_patch(plt.Circle((0, 0), 2 * STD, color="k", fill=False, ls="--"))
    c.set(title="x_0 minus its spike (dashed: target, 2 std)", xlabel="x1 - c1", ylabel="x2 - c2",
          aspect="equal", xlim=(-0.05, 0.05), ylim=(-0.05, 0.05))
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
    np.save(f"{args.out}/multimodal_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), f"{args.out}/multimodal_DDPM.png", args.show)
    print(f"wrote {args.out}/multimodal_DDPM.png, {args.out}/multimodal_DDPM_samples.npy")
    return r


if __name__ == "__main__":
    main()

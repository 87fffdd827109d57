"""Flow matching (rectified flow) on a ring of 8 Gaussians, sampled with Euler or Heun.

The straight path x_t = (1 - t) x0 + t x1 from noise x0 ~ N(0, I) to data x1 moves at the
velocity x1 - x0 (Liu et al. 2023 eq. 1; Lipman et al. 2023 eqs. 20-23, sigma_min = 0). An
MLP v_theta(x_t, t) regresses it, E ||v_theta(x_t, t) - (x1 - x0)||^2 (Lipman et al. eq. 23,
the conditional flow matching loss), t logit-normal (Esser et al. 2024 sec. 3.1). The minimiser
is the marginal velocity E[x1 - x0 | x_t], here also in closed form. Sampling integrates
dx/dt = v(x, t), t = 0 to 1, in K steps of Euler or Heun (Karras et al. 2022, Algorithm 1).

Run:    python codes/flow_matching.py [--sample-steps K]  (Euler: sample(..., solver="euler"))
Writes: outputs/flow_matching.png (loss, paths and result, W1 against K), _samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

# data: equally weighted Gaussians N(mu_k, STD^2 I), their centres mu_k on a ring
MU = torch.view_as_real(2 * torch.exp(2j * np.pi * torch.arange(8) / 8))  # 8 centres, radius 2
STD = 0.1  # std of each Gaussian
# time: training draws t = sigmoid(n), n ~ N(mean, std^2)
T_LOGIT = (0.65, 1.15)  # mean and std of logit(t): more steps near the data, where modes sharpen
# model
HIDDEN = 128  # width of the MLP's three hidden layers
SIGMA_IN = 0.2  # the net sees x_t / sqrt((1 - t)^2 + (SIGMA_IN t)^2): the modes at unit size
# training
STEPS = 1200  # Adam steps
BATCH = 512  # (x0, x1, t) triples per step
LR = 1e-2  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate
SAMPLE_STEPS = 16  # K: integration steps


def target_sample(n, g=None):
    """n samples of the data, shape (n, 2): a random mode's centre plus its Gaussian noise."""
    return MU[torch.randint(len(MU), (n,), generator=g)] + STD * torch.randn(n, 2, generator=g)


def exact_velocity(x, t):
    """E[x1 - x0 | x_t = x]: each mode's velocity weighted by the mode's posterior at x."""
    t = t.reshape(-1, 1, 1)
    var, d = (1 - t) ** 2 + (t * STD) ** 2, x[:, None] - t * MU  # x_t | mode k: N(t mu_k, var I)
    w = torch.softmax(-(d**2).sum(-1, keepdim=True) / (2 * var), dim=1)
    return (w * (MU + (t * STD**2 - (1 - t)) / var * d)).sum(1)  # mean + Cov(x1 - x0, x_t) / var


class Velocity(nn.Sequential):
    """v_theta(x_t, t), an MLP on (c_in x_t, t), for x_t: (n, 2) and t: (n,) in [0, 1]."""

    def __init__(self, hidden=HIDDEN):
        super().__init__(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, xt, t):
        # Karras et al.'s c_in for x_t / t = x1 + sigma x0, sigma = (1 - t) / t, data std SIGMA_IN
        c_in = ((1 - t) ** 2 + (SIGMA_IN * t) ** 2).rsqrt()[:, None]
        return super().forward(torch.cat([c_in * xt, t[:, None]], 1))


def train(steps=STEPS, seed=0, batch=BATCH, lr=LR):
    """Fit v_theta to x1 - x0 along the straight paths; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Velocity(), []
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(steps):
        x0, x1 = torch.randn(batch, 2), target_sample(batch)
        t = torch.sigmoid(torch.normal(*T_LOGIT, (batch,)))  # logit-normal t
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = ((model(xt, t) - (x1 - x0)) ** 2).mean()  # conditional flow matching loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0, steps=SAMPLE_STEPS, solver="heun"):
    """Integrate dx/dt = model(x, t) from x ~ N(0, I) at t = 0 to t = 1; (steps + 1, n, 2)."""
    xs, h = [torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))], 1 / steps
    for i in range(steps):
        t, x = torch.full((n,), i * h), xs[-1]
        v = model(x, t)
        if solver == "heun":  # Karras et al. Alg. 1, lines 7-8: the mean of both ends' slopes
            v = (v + model(x + h * v, t + h)) / 2
        xs.append(x + h * v)
    return torch.stack(xs)


def w1_ratio(x, m=4):
    """Sliced W1 (16 evenly spaced directions) from x to m fresh target samples, over the same
    between m pairs of fresh target samples (the floor): about 1 for a perfect sampler."""
    g = torch.Generator().manual_seed(1234)
    u = torch.view_as_real(torch.exp(1j * np.pi * torch.arange(16) / 16)).T  # (2, 16) unit vectors
    y = (torch.stack([target_sample(len(x), g) for _ in range(2 * m)]) @ u).sort(1).values
    return ((y[:m] - (x @ u).sort(0).values).abs().mean() / (y[:m] - y[m:]).abs().mean()).item()


def report(x):
    """Share and spread per mode and W1/floor, printed and as a dict."""
    k = torch.cdist(x, MU).argmin(1)
    r = {"share": (torch.bincount(k, minlength=len(MU)) / len(x)).tolist(), "w1_ratio": w1_ratio(x),
         "spread": [(x[k == j] - MU[j]).std(0).max().item() for j in range(len(MU))]}
    print(f"generated share {np.round(r['share'], 3)} (target {1 / len(MU):.3f}), spread "
          f"{np.round(r['spread'], 3)} (target {STD}), W1/floor {r['w1_ratio']:.2f} (target 1)")
    return r


def plot(model, losses, traj, seed, out, show, ks=(1, 2, 4, 8, 16)):
    """Loss; 60 paths over the result and the target; W1/floor against velocity evaluations."""
    fig, ax = plt.subplots(1, 3, figsize=(15, 5), layout="tight")
    ax[0].plot(losses, lw=0.5)
    ax[0].set(title="training loss", xlabel="Adam step", ylabel="CFM loss")
    ax[1].plot(*traj[:, :60].permute(2, 0, 1), c="C0", lw=0.7, alpha=0.7)
    ax[1].scatter(*traj[-1].T, s=3, c="C1", alpha=0.4)
    ax[1].scatter(*target_sample(len(traj[-1])).T, s=1, c="k", alpha=0.3)
    ax[1].set(title="60 paths (blue), generated (orange), target (black)", xlabel="x1",
              ylabel="x2", aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
    for solver, c, evals in (("euler", "C0", 1), ("heun", "C3", 2)):  # evaluations per step
        for name, v, fmt in (("net", model, "o-"), ("exact", exact_velocity, "s--")):
            w1 = [w1_ratio(sample(v, len(traj[-1]), seed, k, solver)[-1]) for k in ks]
            ax[2].semilogx(np.multiply(ks, evals), w1, fmt, c=c, base=2, label=f"{solver}, {name}")
    ax[2].set(title="quality vs cost", xlabel="evaluations of v", ylabel="W1/floor", ylim=(.8, 5))
    ax[2].legend(fontsize=8)
    fig.savefig(f"{out}/flow_matching.png", dpi=80)
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the figure and samples")
    p.add_argument("--show", action="store_true", help="open the figure")
    p.add_argument("--sample-steps", type=int, default=SAMPLE_STEPS, help="K: Heun steps")
    args = p.parse_args(argv)
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    if min(args.steps, args.samples, args.sample_steps) < 1 or not os.access(args.out, os.W_OK):
        p.error("--steps, --samples and --sample-steps must be positive, --out writable")
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed, args.sample_steps)
    np.save(f"{args.out}/flow_matching_samples.npy", traj[-1].numpy())
    plot(model, losses, traj, args.seed, args.out, args.show)
    print(f"wrote {args.out}/flow_matching.png, {args.out}/flow_matching_samples.npy")
    return report(traj[-1])


if __name__ == "__main__":
    main()

"""Remove one noise level at a time, in 2D: simple_1Diffusion with a vector for x.

The data is N(MU, STD^2 I) with MU = (-1, 1), STD = 0.01; nothing in the method cares about the
dimension. A noisy copy at level sigma is x = y + sigma * eps, eps ~ N(0, I); a small MLP learns
eps_theta(x, sigma) ~ E[eps | x] on the ladder of Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models" (eq. 5). Sampling starts from x_0 ~ N(0, sigma_0^2 I):
    x_{i+1} = x_i - (sigma_i - sigma_{i+1}) * eps_theta(x_i, sigma_i),
an Euler step of the probability-flow ODE dx/dsigma = eps (Karras et al. eq. 4, sigma(t) = t).

Run:    python codes/simple_2Diffusion.py
Writes: outputs/simple_2Diffusion.png (loss, process, result), outputs/simple_2Diffusion_samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

# data
MU = torch.tensor([-1.0, 1.0])  # target mean
STD = 0.01  # target std, in each coordinate
DIM = 2  # dimension of a data point
# schedule (Karras et al. 2022, eq. 5)
SIGMA_MAX = 80.0  # sigma_0: swamps the data, so pure noise N(0, sigma_0^2 I) is where we start
SIGMA_MIN = 0.0005  # last level before 0: the step to 0 shrinks the std by SIGMA_MIN^2 / (2 STD^2)
RHO = 7.0  # ladder curvature: levels crowd near SIGMA_MIN
LEVELS = 400  # levels from SIGMA_MAX down to SIGMA_MIN, then one step to 0
# model
WIDTH = 32  # width of the MLP
# training
STEPS = 1000  # Adam steps
BATCH = 1024  # noisy data points per step
LR = 5e-3  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate


def target_sample(n, generator=None):
    """n data points, shape (n, DIM)."""
    return MU + STD * torch.randn(n, DIM, generator=generator)


def karras_sigma(t):
    """Noise level at t in [0, 1]: SIGMA_MAX at 0, SIGMA_MIN at 1 (Karras et al. eq. 5)."""
    return (SIGMA_MAX ** (1 / RHO) + t * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO


def noise_ladder():
    """sigma_0 = SIGMA_MAX > ... > sigma_{LEVELS-1} = SIGMA_MIN, then sigma_LEVELS = 0."""
    return torch.cat([karras_sigma(torch.linspace(0, 1, LEVELS)), torch.zeros(1)])


class Denoiser(nn.Sequential):
    """eps_theta(x, sigma), the noise in x at level sigma; x: (n, DIM), sigma: (n, 1)."""

    def __init__(self):
        super().__init__(nn.Linear(DIM + 1, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
                         nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, DIM))

    def forward(self, x, sigma):
        # Karras et al. c_in, centred on the data: x at unit size on every level, so the
        # net sees the narrow spike at the size of the wide noise
        x_in = (x - MU) / (STD**2 + sigma**2).sqrt()
        return super().forward(torch.cat([x_in, sigma.log() / 4], 1))


def train(steps=STEPS, seed=0):
    """Fit eps_theta at random levels spaced like the ladder; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Denoiser(), []
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    for _ in range(steps):
        sigma, eps = karras_sigma(torch.rand(BATCH, 1)), torch.randn(BATCH, DIM)  # level, noise
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
    sigma = noise_ladder()
    xs = [sigma[0] * torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))]
    for i in range(LEVELS):  # Euler steps of dx/dsigma = eps, each removing one level
        xs.append(xs[-1] - (sigma[i] - sigma[i + 1]) * model(xs[-1], sigma[i].expand(n, 1)))
    return torch.stack(xs)


def report(x):
    """Target against generated, printed and as a dict; x: (n, DIM)."""
    print(f"target    mean ({MU[0]:.4f}, {MU[1]:.4f})  std ({STD:.4f}, {STD:.4f})")
    print("generated mean ({:.4f}, {:.4f})  std ({:.4f}, {:.4f})".format(*x.mean(0), *x.std(0)))
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist()}


def plot(losses, traj, path, show=False):
    """Loss, the walk down the ladder, the result against the target; traj: numpy array."""
    scale = np.sqrt(1 + noise_ladder().numpy() ** 2)[:, None, None]  # unit size at every level
    (m1, m2), target = MU.tolist(), target_sample(traj.shape[1], torch.Generator().manual_seed(1))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    a.plot(losses, lw=0.5)
    a.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    b.plot(*(traj[:, :100] / scale).transpose(2, 0, 1), lw=0.5, alpha=0.6)
    b.scatter(*(traj[0, :100] / scale[0]).T, s=6, c="gray", label="start, pure noise")
    b.plot(m1, m2, "k+", ms=14, mew=2, label="target mean")
    b.set(title="100 samples walking down the ladder", aspect="equal", xlim=(-4, 4), ylim=(-4, 4),
          xlabel="x1 / sqrt(1 + sigma_i^2)", ylabel="x2 / sqrt(1 + sigma_i^2)")
    b.legend(loc="lower right", fontsize=8)
    c.scatter(*target.T, s=3, alpha=0.4, c="k", label="target")
    c.scatter(*traj[-1].T, s=3, alpha=0.4, c="C1", label=f"generated, {traj.shape[1]} samples")
    c.set(title="result against the target", xlabel="x1", ylabel="x2", aspect="equal",
          xlim=(m1 - 5 * STD, m1 + 5 * STD), ylim=(m2 - 5 * STD, m2 + 5 * STD))
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
    np.save(f"{args.out}/simple_2Diffusion_samples.npy", traj[-1].numpy())
    plot(losses, traj.numpy(), f"{args.out}/simple_2Diffusion.png", args.show)
    print(f"wrote {args.out}/simple_2Diffusion.png, {args.out}/simple_2Diffusion_samples.npy")
    return r


if __name__ == "__main__":
    main()

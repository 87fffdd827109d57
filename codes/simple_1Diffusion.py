"""Remove one noise level at a time: the smallest diffusion model, on 1D data.

The data is N(MU, S^2) with MU = 1, S = 0.01. A noisy copy at level sigma is
x = y + sigma * eps (y from the data, eps ~ N(0, 1)). A small MLP learns to predict
eps from (x, sigma) on a ladder sigma_0 > sigma_1 > ... > sigma_{N-1} > sigma_N = 0
spaced as in Karras et al. 2022 ("Elucidating the Design Space...", eq. 5, rho = 7).

Sampling starts from pure noise x ~ N(0, sigma_0^2) and walks down the ladder:

    x_{i+1} = x_i - (sigma_i - sigma_{i+1}) * eps_theta(x_i, sigma_i)

which removes exactly the noise that separates level i from level i+1: it is an Euler
step of the probability-flow ODE dx/dsigma = E[eps | x] (Karras et al. eq. 4).
sigma_0 = 80 swamps the data, so starting at mean 0 instead of MU leaves an offset of
only MU * S / sigma_0 = 0.0001 at the end. Euler steps are first order: with the exact
denoiser 400 levels give std 0.00986 (100 levels: 0.00948). The last step, from SIGMA_MIN
to 0, scales the spread by S^2 / (S^2 + SIGMA_MIN^2) instead of S / sqrt(S^2 + SIGMA_MIN^2),
a loss of SIGMA_MIN^2 / (2 S^2): hence SIGMA_MIN = 0.0005 (0.1%), not 0.002 (2%).

The walk is deterministic: the samples are their start points pushed through one fixed
map. So the start is quasi-random, a scrambled Sobol sequence (Owen 1995) through the
normal quantile: each point is still N(0, sigma_0^2), but together they fill it more
evenly than random draws, whose luck (the mean off by about S / sqrt(n), 0.0002 at
n = 2000) would add to the model's own error.

Run:    python codes/simple_1Diffusion.py
Writes: outputs/simple_1Diffusion_{loss,trajectory,samples}.png and _samples.npy
"""
import argparse
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: N(MU, S^2)
MU, S = 1.0, 0.01
DIM = 1
# noise ladder (Karras et al. 2022, eq. 5)
SIGMA_MAX, SIGMA_MIN, RHO, LEVELS = 80.0, 0.0005, 7.0, 400
# model: MLP on (x standardized per level, log sigma)
HIDDEN = 32
# training
STEPS, BATCH, LR = 1000, 1024, 1e-2
# sampling
SAMPLES = 2000


def target_sample(n, generator=None):
    """n fresh samples of the data, shape (n, DIM)."""
    return MU + S * torch.randn(n, DIM, generator=generator)


def karras_sigma(ramp):
    """Noise level at ramp in [0, 1]: SIGMA_MAX at 0, SIGMA_MIN at 1 (Karras et al. eq. 5)."""
    return (SIGMA_MAX ** (1 / RHO) + ramp * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO


def noise_ladder():
    """sigma_0 = SIGMA_MAX > ... > sigma_{LEVELS-1} = SIGMA_MIN, then sigma_LEVELS = 0."""
    return torch.cat([karras_sigma(torch.linspace(0, 1, LEVELS)), torch.zeros(1)])


class Denoiser(torch.nn.Module):
    """eps_theta(x, sigma): the noise in x at level sigma. x: (n, DIM), sigma: (n, 1)."""

    def __init__(self, data_mean, data_var, hidden=HIDDEN):
        super().__init__()
        self.register_buffer("data_mean", data_mean.float())  # (DIM,), from the training data
        self.register_buffer("data_var", data_var.float())
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM + 1, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, DIM))

    def forward(self, x, sigma):
        # standardize x by the mean and std of the noisy data at this level (Karras et al.
        # c_in, centred), so that the slope of eps near the spike is of order 1
        h = (x - self.data_mean) / (self.data_var + sigma**2).sqrt()
        return self.net(torch.cat([h, sigma.log() / 4], dim=1))


@torch.no_grad()
def adam_step(model, moments, k, lr, b1=0.9, b2=0.999):
    """Step k = 1, 2, ... of Adam (Kingma & Ba 2015, Algorithm 1 with the bias corrections
    folded into the step size, as in their section 2), written out because torch.optim
    loads torch.compile's machinery on first use: ~2 s of a ~9 s run."""
    for p, (m, v) in zip(model.parameters(), moments):
        m.lerp_(p.grad, 1 - b1)  # m = b1 m + (1 - b1) g
        v.lerp_(p.grad**2, 1 - b2)  # v = b2 v + (1 - b2) g^2
        p.addcdiv_(m, v.sqrt() + 1e-8, value=-lr * (1 - b2**k) ** 0.5 / (1 - b1**k))


def train(steps=STEPS, seed=0, batch=BATCH, lr=LR):
    """Fit eps_theta at random levels between SIGMA_MAX and SIGMA_MIN, spaced like the
    ladder; returns (model, losses)."""
    torch.manual_seed(seed)
    y = target_sample(4096)  # the training data's moments, for the input scaling
    model = Denoiser(y.mean(0), y.var(0))
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    losses = []
    for k in range(1, steps + 1):
        sigma = karras_sigma(torch.rand(batch, 1))
        eps = torch.randn(batch, DIM)
        x = target_sample(batch) + sigma * eps
        loss = ((model(x, sigma) - eps) ** 2).mean()
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Walk from N(0, sigma_0^2) down the ladder; returns (LEVELS + 1, n, DIM)."""
    sigma = noise_ladder()
    # quasi-random N(0, I): Sobol points (multiples of 2^-30; + 2^-31 keeps them off 0) through
    # the normal quantile
    u = torch.quasirandom.SobolEngine(DIM, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    x = sigma[0] * torch.special.ndtri(u + 2**-31).float()
    xs = [x]
    for i in range(LEVELS):
        eps = model(x, sigma[i].expand(n, 1))
        x = x - (sigma[i] - sigma[i + 1]) * eps  # Euler step of dx/dsigma = eps
        xs.append(x)
    return torch.stack(xs)


def report(x):
    """Target against generated, as printed lines and a dict."""
    x = x[:, 0].numpy()
    ref = np.sort(target_sample(len(x), torch.Generator().manual_seed(12345))[:, 0].numpy())
    r = {"target_mean": MU, "mean": float(x.mean()), "target_std": S, "std": float(x.std()),
         "w1": float(np.abs(np.sort(x) - ref).mean())}
    print(f"target   mean {MU:.4f}  std {S:.4f}")
    print(f"generated mean {r['mean']:.4f}  std {r['std']:.4f}")
    print(f"W1 to a fresh target sample {r['w1']:.5f}")
    return r


def plot(losses, traj, out, show):
    name, sigma = "simple_1Diffusion", noise_ladder().numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    fig.savefig(f"{out}/{name}_loss.png", dpi=100)

    levels = np.arange(LEVELS + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(levels, traj[:, :100, 0], lw=0.5, alpha=0.5)
    a.set(title="100 samples, level by level", xlabel="level i", ylabel="x", yscale="symlog",
          ylim=(-60, 60))
    b.plot(levels, traj[:, :, 0].std(1), label="generated std")
    b.plot(levels, np.sqrt(S**2 + sigma**2), "k--", label="target std sqrt(S^2 + sigma_i^2)")
    b.plot(levels, np.abs(traj[:, :, 0].mean(1) - MU), label="|generated mean - MU|")
    b.set(title="statistics per level", xlabel="level i", ylabel="value", yscale="log")
    b.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_trajectory.png", dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(MU - 5 * S, MU + 5 * S, 200)
    ax.hist(traj[-1, :, 0], bins=50, range=(grid[0], grid[-1]), density=True, alpha=0.6,
            label="generated")
    ax.plot(grid, np.exp(-0.5 * ((grid - MU) / S) ** 2) / (S * np.sqrt(2 * np.pi)), "k",
            label="target N(1, 0.01^2)")
    ax.set(title="generated samples against the target", xlabel="x", ylabel="density")
    ax.legend()
    fig.savefig(f"{out}/{name}_samples.png", dpi=100)
    if show:
        plt.show()
    plt.close("all")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.error = lambda message: p.exit(2, f"{p.prog}: error: {message}\n")  # one line, exit 2
    p.add_argument("--steps", type=int, default=STEPS, help="training iterations")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for figures and samples")
    p.add_argument("--show", action="store_true", help="open the figures")
    args = p.parse_args(argv)
    if args.steps <= 0 or args.samples <= 0:
        p.error("--steps and --samples must be positive")
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        p.error(f"cannot write to --out {args.out}: {e.strerror}")
    return args


def main(argv=None):
    args = parse_args(argv)
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/simple_1Diffusion_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

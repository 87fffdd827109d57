"""DDPM (Ho et al. 2020) with the pdfs made visible, level by level.

The model is single_DDPM.py's: data N(MU, S^2), MU = 1, S = 0.01; T = 1000 levels with
sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) geometric from 1e-3 to 100; one network
eps_theta(x_t, t) trained by Algorithm 1; ancestral sampling by Algorithm 2 with the
posterior variance beta~_t and no noise at the last step.

For Gaussian data every noised marginal is known exactly (Ho et al. eq. 4):

    q(x_t) = N(sqrt(alpha_bar_t) MU, alpha_bar_t S^2 + 1 - alpha_bar_t)

so at every level we can hold three things side by side: that exact pdf, a histogram of
training data pushed forward to level t by q(x_t | x_0), and a histogram of where the
reverse process actually is at level t. The reverse process starts at N(0, 1) (t = T,
where q(x_T) is N(0.01, 1.0)) and must match q(x_t) at EVERY level down to t = 0, the
data itself. The script prints the 1-Wasserstein distance to the exact q(x_t) per level.

Run:    python codes/detailed_DDPM.py
Writes: outputs/detailed_DDPM_{pdfs,levels}.png and _samples.npy
"""
import argparse
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: N(MU, S^2), in DIM = 1 dimension
MU, S, DIM = 1.0, 0.01, 1
# noise schedule: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), geometric in t
T, SIGMA_MIN, SIGMA_MAX = 1000, 1e-3, 100.0
# model: MLP on (x_t standardized per level, log sigma_t)
HIDDEN = 32
# training
STEPS, BATCH, LR = 2000, 1024, 5e-3
# sampling, and the levels drawn in the grid of pdfs
SAMPLES, GRID = 2000, (1000, 800, 650, 550, 500, 450, 400, 300, 200, 0)


def target_sample(n, generator=None):
    """n fresh samples of the data, shape (n, DIM)."""
    return MU + S * torch.randn(n, DIM, generator=generator)


def schedule(levels=T):
    """beta_t and alpha_bar_t, float64 tensors indexed by t = 0..levels (t = 0: the data)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), levels, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    # alpha_t = alpha_bar_t / alpha_bar_{t-1}, with alpha_bar_{-1} = alpha_bar_0 so that beta_0 = 0
    beta = 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]])
    return beta, alpha_bar


class Denoiser(torch.nn.Module):
    """eps_theta(x_t, t): the noise in x_t at level t. x_t: (n, DIM), t: (n,) ints in 1..T."""

    def __init__(self, data_mean, data_var, hidden=HIDDEN):
        super().__init__()
        alpha_bar = schedule()[1][:, None]
        self.register_buffer("log_sigma", (0.5 * ((1 - alpha_bar) / alpha_bar).log()).float())
        # mean and std of q(x_t) at each level, from the training data's mean and variance
        self.register_buffer("shift", (alpha_bar.sqrt() * data_mean).float())
        self.register_buffer("scale", (alpha_bar * data_var + 1 - alpha_bar).sqrt().float())
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM + 1, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, DIM))

    def forward(self, xt, t):
        # standardized input, so that the slope of eps at the low levels is of order 1;
        # the level enters as log sigma_t, which spreads the levels evenly
        h = (xt - self.shift[t]) / self.scale[t]
        return self.net(torch.cat([h, self.log_sigma[t] / 4], dim=1))


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
    """Algorithm 1 of Ho et al.; returns (model, losses)."""
    torch.manual_seed(seed)
    x0 = target_sample(4096).double()  # the training data's moments, for the input scaling
    model, alpha_bar = Denoiser(x0.mean(0), x0.var(0)), schedule()[1]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    losses = []
    for k in range(1, steps + 1):
        t, eps = torch.randint(1, T + 1, (batch,)), torch.randn(batch, DIM)
        ab = alpha_bar[t, None]
        xt = (ab.sqrt() * target_sample(batch) + (1 - ab).sqrt() * eps).float()  # Ho eq. 4
        loss = ((model(xt, t) - eps) ** 2).mean()
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 of Ho et al.: x_T ~ N(0, 1) down to x_0; returns (T + 1, n, DIM)."""
    beta, alpha_bar = (v.tolist() for v in schedule())
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    xs = [x]
    for t in range(T, 0, -1):
        eps = model(x, torch.full((n,), t))
        x = (x - beta[t] / (1 - alpha_bar[t]) ** 0.5 * eps) / (1 - beta[t]) ** 0.5
        if t > 1:  # noise at every step but the last, variance beta~_t (Ho et al. eq. 7)
            var = beta[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
            x = x + var**0.5 * torch.randn(n, DIM, generator=g)
        xs.append(x)
    return torch.stack(xs)


def marginal(t):
    """Mean and std of the exact q(x_t) = N(sqrt(ab_t) MU, ab_t S^2 + 1 - ab_t) (Ho eq. 4)."""
    ab = schedule()[1][t].numpy()
    return np.sqrt(ab) * MU, np.sqrt(ab * S**2 + 1 - ab)


def forward_sample(n, t, generator=None):
    """n fresh training samples noised to level t by q(x_t | x_0); shape (n,)."""
    ab = schedule()[1][t].item()
    x0 = target_sample(n, generator)[:, 0]
    return ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(n, generator=generator)


def w1_to_exact(x, t):
    """1-Wasserstein distance from the samples x (n,) to the exact q(x_t), by quantiles."""
    mean, std = marginal(t)
    q = torch.special.ndtri((torch.arange(len(x)) + 0.5) / len(x)).numpy()
    return float(np.abs(np.sort(x) - (mean + std * q)).mean())


def report(traj):
    """Target against generated, then the distance to q(x_t) per level; printed and a dict."""
    x, w1 = traj[-1, :, 0], [w1_to_exact(traj[T - t, :, 0], t) for t in range(T + 1)]
    r = {"target_mean": MU, "mean": float(x.mean()), "target_std": S, "std": float(x.std()),
         "w1": w1[0], "w1_per_level": w1}
    print(f"target   mean {MU:.4f}  std {S:.4f}")
    print(f"generated mean {r['mean']:.4f}  std {r['std']:.4f}")
    print("level t   exact mean, std     reverse mean, std   W1 to q(x_t)  W1 / std")
    for t in GRID:
        (mean, std), xt = marginal(t), traj[T - t, :, 0]
        print(f"{t:7d}   {mean:7.4f} {std:7.4f}     {xt.mean():7.4f} {xt.std():7.4f}"
              f"     {w1[t]:.5f}       {w1[t] / std:.3f}")
    return r


def plot(traj, out, show):
    name, g = "detailed_DDPM", torch.Generator().manual_seed(0)
    fig, axes = plt.subplots(2, len(GRID) // 2, figsize=(3.2 * len(GRID) // 2, 6.4))
    for ax, t in zip(axes.flat, GRID):
        mean, std = marginal(t)
        grid = np.linspace(mean - 4 * std, mean + 4 * std, 200)
        ax.hist(forward_sample(len(traj[0]), t, g).numpy(), bins=40, range=grid[[0, -1]],
                density=True, alpha=0.4, color="C0", label="forward q(x_t | x_0) samples")
        ax.hist(traj[T - t, :, 0], bins=40, range=grid[[0, -1]], density=True,
                histtype="step", lw=1.5, color="C1", label="reverse process")
        ax.plot(grid, np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)),
                "k", label="exact pdf of q(x_t)")
        ax.set(title=f"t = {t}", xlabel="x_t", ylabel="density")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("the marginal q(x_t) at each level: exact, forward-noised data, reverse samples")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_pdfs.png", dpi=100)

    t = np.arange(T, -1, -1)  # traj[i] is level t[i]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, y, exact, what in zip(axes, (traj.mean(1), traj.std(1)), marginal(t), ("mean", "std")):
        ax.plot(t, y[:, 0], label="reverse process")
        ax.plot(t, exact, "k--", label=f"exact {what} of q(x_t)")
        ax.set(title=f"{what} of x_t per level", xlabel="level t", ylabel=what, xlim=(T, 0))
        ax.legend()
    axes[1].set(yscale="log")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_levels.png", dpi=100)
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
    traj = sample(train(args.steps, args.seed)[0], args.samples, args.seed)
    np.save(f"{args.out}/detailed_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj.numpy())
    plot(traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

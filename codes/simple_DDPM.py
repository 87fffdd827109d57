"""DDPM (Ho et al. 2020) on 1D data with one small network per noise level.

Same data, forward process and sampler as single_DDPM.py; only the denoiser changes.
Instead of one network told the level t, there are T networks eps_theta^(t)(x_t), and
level t only ever asks network t. They are stored as one stack of weights (a leading
axis of size T) and trained all at once: every step draws a fresh batch at EVERY level
and sums the T losses (Ho et al. Algorithm 1 with t enumerated instead of drawn). No
weight is shared, so each network gets exactly the gradient, and (Adam working weight
by weight) exactly the update, it would get if trained alone; one batched matmul
(torch.baddbmm) runs all T of them at once. The reference trains them one after
another, each warm-started from the level before: slower in Python, and its result
depends on the order and on how many steps each level gets.

Each network sees its input standardized, (x_t - m_t) / s_t, with m_t and s_t the mean
and std of q(x_t) computed from the training data's own mean and variance. Without it
the low levels learn nothing: there x_t = 1 +- 0.01, so a weight and its bias get
almost the same gradient, and the slope of E[eps | x_t] (up to 1 / (2 S) = 50) is out
of reach in any reasonable number of steps.

Per-level networks cost T times the weights, so T = 200 here (single_DDPM.py has 1000):
sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) geometric from 1e-3 to 100, beta_1 =
1e-6 << S^2, alpha_bar_T = 1e-4, reverse variance beta~_t (the posterior one). With the
exact noise prediction this sampler ends at std 0.0097 for a target 0.01: 3% short,
from the coarser steps, well inside the 20% budget.

Run:    python codes/simple_DDPM.py
Writes: outputs/simple_DDPM_{loss,trajectory,samples}.png and _samples.npy
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
# noise schedule: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), geometric in t
T, SIGMA_MIN, SIGMA_MAX = 200, 1e-3, 100.0
# model: T independent MLPs on the standardized x_t
HIDDEN = 16
# training: BATCH samples at every level per step
STEPS, BATCH, LR = 1000, 32, 1e-2
# sampling
SAMPLES = 2000


def target_sample(n, generator=None):
    """n fresh samples of the data, shape (n, DIM)."""
    return MU + S * torch.randn(n, DIM, generator=generator)


def schedule(levels=T):
    """beta_t and alpha_bar_t, float64 tensors indexed by t = 0..levels (t = 0: the data)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), levels, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    beta = 1 - alpha_bar / alpha_bar.roll(1)  # alpha_t = alpha_bar_t / alpha_bar_{t-1}
    beta[0] = 0
    return beta, alpha_bar


class Denoisers(torch.nn.Module):
    """T MLPs eps_theta^(t)(x_t), one per level, as stacked weights.
    xt: (L, n, DIM) holds n samples at each of L levels t: (L,) ints in 1..T."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        # mean and std of x_t at each level, (T, 1, DIM); train() measures them on the data
        self.register_buffer("shift", torch.zeros(T, 1, DIM))
        self.register_buffer("scale", torch.ones(T, 1, DIM))
        layers = [(DIM, hidden), (hidden, hidden), (hidden, DIM)]  # (fan_in, fan_out)
        # per layer a weight (T, fan_in, fan_out) and a bias (T, 1, fan_out), PyTorch's init
        def init(fan_in, *shape):
            return torch.nn.Parameter((2 * torch.rand(*shape) - 1) / fan_in**0.5)
        self.weights = torch.nn.ParameterList(init(i, T, i, o) for i, o in layers)
        self.biases = torch.nn.ParameterList(init(i, T, 1, o) for i, o in layers)

    def forward(self, xt, t):
        h = (xt - self.shift[t - 1]) / self.scale[t - 1]  # standardized input
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b[t - 1], h, w[t - 1])  # network t acts on the samples at level t
            if k < len(self.weights) - 1:
                h = torch.nn.functional.silu(h)
        return h


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
    """Algorithm 1 of Ho et al. at every level at once; returns (model, losses)."""
    torch.manual_seed(seed)
    model, alpha_bar = Denoisers(), schedule()[1]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    t = torch.arange(1, T + 1)
    ab = alpha_bar[t, None, None]  # (T, 1, 1)
    x0 = target_sample(4096).double()  # moments of q(x_t) from those of the training data
    model.shift[:] = ab.sqrt() * x0.mean(0)
    model.scale[:] = (ab * x0.var(0) + 1 - ab).sqrt()
    losses = []
    for k in range(1, steps + 1):
        eps = torch.randn(T, batch, DIM)
        x0 = target_sample(T * batch).view(T, batch, DIM)
        xt = (ab.sqrt() * x0 + (1 - ab).sqrt() * eps).float()  # Ho et al. eq. 4
        loss = ((model(xt, t) - eps) ** 2).mean((1, 2)).sum()  # sum of the T networks' losses
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item() / T)
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 of Ho et al.: x_T ~ N(0, 1) down to x_0; returns (T + 1, n, DIM)."""
    beta, alpha_bar = (v.tolist() for v in schedule())
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    xs = [x]
    for t in range(T, 0, -1):
        eps = model(x[None], torch.tensor([t]))[0]
        x = (x - beta[t] / (1 - alpha_bar[t]) ** 0.5 * eps) / (1 - beta[t]) ** 0.5
        if t > 1:  # noise at every step but the last, variance beta~_t (Ho et al. eq. 7)
            var = beta[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
            x = x + var**0.5 * torch.randn(n, DIM, generator=g)
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
    name, alpha_bar = "simple_DDPM", schedule()[1].numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss (Algorithm 1), mean over the T networks", xlabel="step",
           ylabel="MSE on eps", yscale="log")
    fig.savefig(f"{out}/{name}_loss.png", dpi=100)

    t = np.arange(T, -1, -1)  # traj[i] is level t[i]
    alpha_bar = alpha_bar[t]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(t, traj[:, :100, 0], lw=0.5, alpha=0.5)
    a.set(title="100 samples, level by level (Algorithm 2)", xlabel="level t", ylabel="x_t",
          xlim=(T, 0))
    b.plot(t, traj[:, :, 0].std(1), label="generated std")
    b.plot(t, np.sqrt(alpha_bar * S**2 + 1 - alpha_bar), "k--", label="exact std of q(x_t)")
    b.plot(t, np.abs(traj[:, :, 0].mean(1) - np.sqrt(alpha_bar) * MU),
           label="|generated mean - sqrt(alpha_bar_t) MU|")
    b.set(title="statistics per level", xlabel="level t", ylabel="value", yscale="log",
          xlim=(T, 0))
    b.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_trajectory.png", dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(MU - 5 * S, MU + 5 * S, 200)
    ax.hist(traj[-1, :, 0], bins=50, range=(grid[0], grid[-1]), density=True, alpha=0.6,
            label="generated")
    ax.plot(grid, np.exp(-0.5 * ((grid - MU) / S) ** 2) / (S * np.sqrt(2 * np.pi)), "k",
            label="target N(1, 0.01^2)")
    ax.set(title="generated samples against the target", xlabel="x_0", ylabel="density")
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
    np.save(f"{args.out}/simple_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

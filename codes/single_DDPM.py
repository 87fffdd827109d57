"""DDPM (Ho et al. 2020) on 1D data, with one network serving every noise level.

The data is N(MU, S^2) with MU = 1, S = 0.01. The forward process adds a little noise at
each of T levels, q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t) (Ho et al. eq. 2),
so that in closed form (eq. 4)

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   alpha_bar_t = prod alpha_s.

Training (Algorithm 1) fits eps_theta(x_t, t) to eps. Sampling (Algorithm 2) starts from
x_T ~ N(0, 1) and steps down, adding fresh noise at every step except the last (t = 1):

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z

The schedule matters more than the network here. With sigma_t^2 = (1 - alpha_bar_t) /
alpha_bar_t spaced evenly in log from 1e-3 to 100 (T = 1000), beta_1 = 1e-6 is far below
S^2 = 1e-4, so the smallest step does not blur the data, and alpha_bar_T = 1e-4, so
q(x_T) differs from N(0, 1) by a KL of about alpha_bar_T MU^2 / 2 = 5e-5. The reverse
variance is the posterior one, sigma_t^2 = beta~_t = beta_t (1 - alpha_bar_{t-1}) /
(1 - alpha_bar_t) (Ho et al. section 3.2: the right choice when x_0 is nearly a point, as
a spike of width 0.01 is). With the exact noise prediction plugged in, this sampler
ends at std 0.0099 for a target 0.01.

Run:    python codes/single_DDPM.py
Writes: outputs/single_DDPM_{loss,trajectory,samples}.png and _samples.npy
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
T, SIGMA_MIN, SIGMA_MAX = 1000, 1e-3, 100.0
# model: MLP on (x_t standardized per level, log sigma_t)
HIDDEN = 32
# training
STEPS, BATCH, LR = 2000, 1024, 5e-3
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
        t = torch.randint(1, T + 1, (batch,))
        eps = torch.randn(batch, DIM)
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
    name, alpha_bar = "single_DDPM", schedule()[1].numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss (Algorithm 1)", xlabel="step", ylabel="MSE on eps", yscale="log")
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
    np.save(f"{args.out}/single_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

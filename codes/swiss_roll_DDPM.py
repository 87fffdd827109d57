"""DDPM on a 2D swiss roll: a step-conditioned MLP learns the noise, Algorithm 2 draws the roll.

Data: sklearn's make_swiss_roll(noise=1.0) seen from the side, divided by 10:
s = 1.5 pi (1 + 2u), u ~ U(0, 1), x_0 = (s cos s, s sin s) / 10 + N(0, 0.1^2 I).
Forward (Ho et al. 2020, eq. 4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,
T sigmoid-spaced betas, alpha_bar_T ~ 3e-5. eps_theta(x_t, t) is an MLP of "conditional linear"
layers gamma(t) * (W x + b), gamma a learned function of sin/cos features of t / T, trained on
|eps - eps_theta(x_t, t)|^2 (Algorithm 1) and sampled from x_T ~ N(0, I) by Algorithm 2:
    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t) + sqrt(beta_t) z
Run:    python codes/swiss_roll_DDPM.py  [--steps N --samples N --seed S --out DIR --show]
Writes: outputs/swiss_roll_DDPM.png (loss, reverse process, result vs target), _samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

# data
NOISE = 1.0  # make_swiss_roll's noise std, before the scaling
SCALE = 10.0  # the roll is divided by this
# schedule
T = 200  # levels
BETA_START = 1e-5  # lower end of the sigmoid ramp of betas
BETA_END = 0.1  # upper end
# model
HIDDEN = 64  # width of the three conditional linear layers
FREQS = 16  # sin/cos frequencies of t / T fed to gamma(t)
# training
STEPS = 5000  # Adam steps
BATCH = 512  # points per step
LR = 5e-3  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # generated points


def target_sample(n, generator=None):
    """n fresh points of the roll, shape (n, 2)."""
    s = 1.5 * torch.pi * (1 + 2 * torch.rand(n, 1, generator=generator))
    roll = torch.cat([s * s.cos(), s * s.sin()], 1)
    return (roll + NOISE * torch.randn(n, 2, generator=generator)) / SCALE


def schedule():
    """beta_t, alpha_t, alpha_bar_t for t = 1..T, stored at index t - 1."""
    beta = torch.sigmoid(torch.linspace(-6, 6, T)) * (BETA_END - BETA_START) + BETA_START
    return beta, 1 - beta, torch.cumprod(1 - beta, 0)


class ConditionalLinear(torch.nn.Module):
    """The reference's layer: gamma(t) * (W x + b), gamma here a linear map of t's features."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin, self.gamma = torch.nn.Linear(n_in, n_out), torch.nn.Linear(2 * FREQS, n_out)

    def forward(self, x, features):
        return self.gamma(features) * self.lin(x)


class EpsModel(torch.nn.Module):
    """eps_theta(x_t, t): x_t (n, 2), t (n,) integer level index 0..T-1 -> (n, 2)."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.layers = torch.nn.ModuleList(ConditionalLinear(n, hidden) for n in (2, hidden, hidden))
        self.out = torch.nn.Linear(hidden, 2)

    def forward(self, x, t):
        angle = t[:, None] / T * torch.pi * torch.arange(1, FREQS + 1)
        features = torch.cat([angle.sin(), angle.cos()], dim=1)
        for layer in self.layers:
            x = torch.nn.functional.silu(layer(x, features))
        return self.out(x)


def train(steps=STEPS, seed=0, batch=BATCH, lr=LR):
    """Algorithm 1 with Adam and a one-cycle learning rate; returns (model, losses)."""
    torch.manual_seed(seed)
    model, (_, _, alpha_bar), losses = EpsModel(), schedule(), []
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(steps):
        x0, t, eps = target_sample(batch), torch.randint(T, (batch,)), torch.randn(batch, 2)
        xt = alpha_bar[t, None].sqrt() * x0 + (1 - alpha_bar[t, None]).sqrt() * eps  # eq. 4
        loss = ((eps - model(xt, t)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 from x_T ~ N(0, I); returns (T + 1, n, 2), x_T first, x_0 last."""
    g, (beta, alpha, alpha_bar) = torch.Generator().manual_seed(seed), schedule()
    xs = [torch.randn(n, 2, generator=g)]
    for i in reversed(range(T)):
        x = (xs[-1] - beta[i] / (1 - alpha_bar[i]).sqrt() * model(xs[-1], torch.full((n,), i)))
        z = torch.randn(n, 2, generator=g) if i > 0 else 0  # no noise on the last step
        xs.append(x / alpha[i].sqrt() + beta[i].sqrt() * z)
    return torch.stack(xs)


def report(x):
    """Target against generated: mean distance to the noise-free centre curve of the roll."""
    s = torch.linspace(1.5 * torch.pi, 4.5 * torch.pi, 4000)[:, None]
    curve = torch.cat([s * s.cos(), s * s.sin()], 1) / SCALE
    ref = target_sample(len(x), torch.Generator().manual_seed(1))
    r = {who: torch.cdist(y, curve).min(1).values.mean().item()
         for who, y in (("target", ref), ("generated", x))}
    print(f"mean distance to the roll's centre curve: target {r['target']:.4f},"
          f" generated {r['generated']:.4f}")
    return r


def plot(losses, traj, path, show):
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    axes[0, 0].plot(losses, lw=0.3)
    axes[0, 0].set(title="training loss", xlabel="training step", ylabel="MSE on eps", yscale="log")
    shown = [(traj[T - t], "C0", f"reverse process: x_{t}") for t in (T, 60, 30)]
    shown += [(traj[-1], "C0", "generated x_0"),
              (target_sample(1000, torch.Generator().manual_seed(1)), "k", "target: a fresh roll")]
    for ax, (x, c, title) in zip(axes.flat[1:], shown):
        ax.scatter(*x[:1000].T, s=2, alpha=0.5, c=c)
        ax.set(title=title, xlim=(-2, 2), ylim=(-2, 2), xlabel="x", ylabel="z", aspect="equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="points to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the figure and samples")
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
    np.save(f"{args.out}/swiss_roll_DDPM_samples.npy", traj[-1].numpy())
    plot(losses, traj, f"{args.out}/swiss_roll_DDPM.png", args.show)
    print(f"wrote {args.out}/swiss_roll_DDPM.png, {args.out}/swiss_roll_DDPM_samples.npy")
    return report(traj[-1])


if __name__ == "__main__":
    main()

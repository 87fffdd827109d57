"""DDPM on a 2D swiss roll, with a step-conditioned MLP and a sigmoid beta schedule.

The data is sklearn's make_swiss_roll(noise=1.0) seen from the side (coordinates x and
z) and divided by 10, made here with torch alone: u ~ U(0, 1), s = 1.5 pi (1 + 2u),
point = (s cos s, s sin s) / 10 + N(0, 0.1^2 I).

Forward process (Ho et al. 2020, eq. 4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,
with T = 200 betas on a sigmoid ramp. BETA_END = 0.1 drives alpha_bar_T down to 2.9e-5,
so x_T is N(0, I) up to a mean offset sqrt(alpha_bar_T) |x_0| < 0.01 and
KL(q(x_T | x_0) || N(0, I)) <= alpha_bar_T |x_0|^2 / 2 < 1e-4: sampling may start there.
The network eps_theta(x_t, t) is an MLP whose every hidden layer is multiplied by a
learned vector for level t (a "conditional linear" layer). It is trained on the noise
loss |eps - eps_theta(x_t, t)|^2 (Algorithm 1) and sampled with Algorithm 2:

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z

with sigma_t^2 = beta_t (Ho's first choice; with the exact eps of Gaussian data it keeps the
std within 2% here, where the "fixed_small" posterior variance comes out 3-5% narrow).

Run:    python codes/swiss_roll_DDPM.py
Writes: outputs/swiss_roll_DDPM_{training,reverse,samples}.png and _samples.npy
"""
import argparse
import math
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: make_swiss_roll(noise=1.0)[:, [0, 2]] / 10, in DIM = 2 dimensions
NOISE, SCALE, DIM = 1.0, 10.0, 2
# noise schedule: T sigmoid-spaced betas from BETA_START to BETA_END
T, BETA_START, BETA_END = 200, 1e-5, 0.1
# model: 3 conditional linear layers
HIDDEN = 128
# training
STEPS, BATCH, LR = 5000, 256, 2e-2
# sampling, and the report's sliced W1 over DIRECTIONS fixed random directions
SAMPLES, DIRECTIONS = 2000, 64


def target_sample(n, generator=None):
    """n fresh points of the roll, shape (n, 2)."""
    s = 1.5 * math.pi * (1 + 2 * torch.rand(n, 1, generator=generator))
    roll = torch.cat([s * torch.cos(s), s * torch.sin(s)], dim=1)
    return (roll + NOISE * torch.randn(n, DIM, generator=generator)) / SCALE


def schedule():
    """beta_t, alpha_t, alpha_bar_t for t = 1..T, stored at index t - 1."""
    beta = torch.sigmoid(torch.linspace(-6, 6, T)) * (BETA_END - BETA_START) + BETA_START
    alpha = 1 - beta
    return beta, alpha, torch.cumprod(alpha, 0)


class ConditionalLinear(torch.nn.Module):
    """Linear layer whose output is scaled by a learned vector gamma_t for level t."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.lin, self.gamma = torch.nn.Linear(n_in, n_out), torch.nn.Embedding(T, n_out)
        torch.nn.init.uniform_(self.gamma.weight)

    def forward(self, x, t):
        return self.gamma(t) * self.lin(x)


class EpsModel(torch.nn.Module):
    """eps_theta(x_t, t): x_t (n, 2), t (n,) integer level index 0..T-1 -> (n, 2)."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [ConditionalLinear(n_in, hidden) for n_in in (DIM, hidden, hidden)])
        self.out = torch.nn.Linear(hidden, DIM)

    def forward(self, x, t):
        for layer in self.layers:
            x = torch.nn.functional.silu(layer(x, t))  # SiLU: cheaper than the reference softplus
        return self.out(x)


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
    """Algorithm 1 with Adam; returns (model, losses)."""
    torch.manual_seed(seed)
    model, (_, _, alpha_bar) = EpsModel(), schedule()
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    losses = []
    for k in range(1, steps + 1):
        x0, t, eps = target_sample(batch), torch.randint(T, (batch,)), torch.randn(batch, DIM)
        ab = alpha_bar[t].unsqueeze(1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # eq. 4
        loss = ((eps - model(xt, t)) ** 2).mean()
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Algorithm 2 from x_T ~ N(0, I); returns (T + 1, n, 2), x_T first, x_0 last."""
    g, (beta, alpha, alpha_bar) = torch.Generator().manual_seed(seed), schedule()
    x = torch.randn(n, DIM, generator=g)
    xs = [x]
    for i in reversed(range(T)):
        eps = model(x, torch.full((n,), i))
        x = (x - beta[i] / (1 - alpha_bar[i]).sqrt() * eps) / alpha[i].sqrt()
        if i > 0:  # no noise on the last step, as in Algorithm 2
            x = x + beta[i].sqrt() * torch.randn(n, DIM, generator=g)
        xs.append(x)
    return torch.stack(xs)


def sliced_w1(a, b):
    """Mean over fixed random directions of the 1D W1 between the projections of a and b."""
    d = torch.randn(DIM, DIRECTIONS, generator=torch.Generator().manual_seed(0))
    d = torch.nn.functional.normalize(d, dim=0)  # unit directions
    return float(((a @ d).sort(0).values - (b @ d).sort(0).values).abs().mean())


def report(x):
    """Target against generated: per-coordinate mean and std, sliced W1 and its floor."""
    g = torch.Generator().manual_seed(12345)
    refs = [target_sample(len(x), g) for _ in range(11)]
    floor = float(np.mean([sliced_w1(refs[i], refs[i + 1]) for i in range(1, 11, 2)]))
    r = {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "w1": sliced_w1(x, refs[0])}
    r["w1_floor"], r["w1_ratio"] = floor, r["w1"] / floor
    for who, y in (("target   ", refs[0]), ("generated", x)):
        m, sd = y.mean(0), y.std(0)
        print(f"{who} mean ({m[0]:+.3f}, {m[1]:+.3f})  std ({sd[0]:.3f}, {sd[1]:.3f})")
    print(f"sliced W1 to a fresh roll {r['w1']:.4f}  (two-sample floor {floor:.4f},"
          f" ratio {r['w1_ratio']:.2f})")
    return r


def plot(losses, traj, out, show):
    name, lim = "swiss_roll_DDPM", (-2, 2)
    beta, _, alpha_bar = (v.numpy() for v in schedule())
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    levels = np.arange(1, T + 1)
    a.plot(levels, beta, label="beta_t (sigmoid ramp)")
    a.plot(levels, np.sqrt(alpha_bar), label="sqrt(alpha_bar_t): signal left")
    a.plot(levels, np.sqrt(1 - alpha_bar), label="sqrt(1 - alpha_bar_t): noise")
    a.set(title=f"noise schedule, alpha_bar_T = {alpha_bar[-1]:.1e}", xlabel="step t",
          ylabel="value")
    a.legend()
    b.plot(losses, lw=0.3)
    b.set(title="training loss", xlabel="training step", ylabel="MSE on eps", yscale="log")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_training.png", dpi=100)

    shown = [0, 100, 150, 180, 190, T]
    fig, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3.2))
    for ax, i in zip(axes, shown):
        ax.scatter(*traj[i, :1000].T, s=2, alpha=0.5)
        ax.set(title=f"x_{T - i}", xlim=lim, ylim=lim, xlabel="x", ylabel="z", aspect="equal")
    fig.suptitle("reverse process: noise turning into the roll")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_reverse.png", dpi=100)

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    shown = (target_sample(len(traj[-1])).numpy(), "k", "target: a fresh swiss roll"), \
        (traj[-1], "C0", "generated x_0")
    for ax, (x, c, title) in zip(axes, shown):
        ax.scatter(*x.T, s=2, alpha=0.5, c=c)
        ax.set(title=title, xlim=lim, ylim=lim, xlabel="x", ylabel="z", aspect="equal")
    fig.tight_layout()
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
    torch.set_num_threads(1)  # tensors this small run faster on one thread
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/swiss_roll_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

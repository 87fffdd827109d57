"""Remove one noise level at a time, on four spikes: the noise must split four ways.

The data is a mixture of four narrow Gaussians, equal weights, at CENTERS = (+-1, +-1),
each with std S = 0.01. The method is simple_2Diffusion's: a noisy copy at level sigma
is x = y + sigma * eps, a small MLP learns eps from (x, sigma) on the Karras et al. 2022
ladder (eq. 5, rho = 7; here ending at 0.002), and sampling walks down from N(0, sigma_0^2 I):

    x_{i+1} = x_i - (sigma_i - sigma_{i+1}) * eps_theta(x_i, sigma_i)

an Euler step of the probability-flow ODE dx/dsigma = E[eps | x] (Karras et al. eq. 4).
The best eps_theta is E[eps | x] = (x - E[y | x]) / sigma, where E[y | x] weighs the four
spikes by how likely each one is to have produced x: far up the ladder that is the
data mean 0, so all samples move together; near sigma ~ 1 the weights sharpen and
each sample is pulled to the spike of its quadrant, by 1/4 of the noise by symmetry.

The exact flow never crosses the axes (the data is mirror symmetric), so a sample ends
in the spike of the quadrant it started in, and the shares are decided by the start.
2000 random draws carry binomial noise (share sd 0.0097; one seed in ~100 is 0.03
off), so the start is quasi-random: a scrambled Sobol sequence (Owen 1995) through the
normal quantile. Each point is still N(0, sigma_0^2 I); together they fill it evenly.

A trained MLP blurs that sharp split: between sigma ~ 1 and 0.05 it pushes samples off
the boundaries between quadrants too gently, and with the plain ODE 1-2% of them end
stranded between two spikes (up to 0.9 away from any). So for sigma between 0.2 and
0.02 each step first raises the level by 20% with fresh noise, then steps down (Karras
et al. Algorithm 2, "churn"): the noise kicks stranded samples off the boundary and
the denoiser, right again once they are off it, pulls them into a spike. Churn higher
up, where the split happens, would redraw each sample's spike and undo the even start.

Run:    python codes/simple_multimodal.py
Writes: outputs/simple_multimodal_{loss,trajectory,samples}.png and _samples.npy
"""
import argparse
import gc
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: four spikes N(c, S^2 I) in DIM = 2 dimensions, c in CENTERS, equal weights
CENTERS, S, DIM = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]), 0.01, 2
# noise ladder (Karras et al. 2022, eq. 5)
SIGMA_MAX, SIGMA_MIN, RHO, LEVELS = 80.0, 0.002, 7.0, 400
# model: MLP on (x / sqrt(SIGMA_IN^2 + sigma^2), log sigma); SIGMA_IN is below the spike
# distance 1: the split near sigma ~ 0.3 is seen at unit size
HIDDEN, SIGMA_IN = 64, 0.3
# training
STEPS, BATCH, LR = 1600, 256, 2e-2  # BATCH draws a step, each with its 4 mirror images
FLIPS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # x -> FLIPS[j] * x
# sampling, and the levels drawn as snapshots
SAMPLES, SNAPSHOTS = 2000, (0, 200, 240, 265, 290, LEVELS)
# Karras et al. Algorithm 2 "churn": levels in [CHURN_MIN, CHURN_MAX] are first raised by
# the factor 1 + CHURN with fresh noise
CHURN, CHURN_MIN, CHURN_MAX = 0.2, 0.02, 0.2


def target_sample(n, generator=None):
    """n fresh samples of the data, shape (n, DIM): a random spike, then its noise."""
    spike = torch.randint(len(CENTERS), (n,), generator=generator)
    return CENTERS[spike] + S * torch.randn(n, DIM, generator=generator)


def karras_sigma(ramp):
    """Noise level at ramp in [0, 1]: SIGMA_MAX at 0, SIGMA_MIN at 1 (Karras et al. eq. 5)."""
    return (SIGMA_MAX ** (1 / RHO) + ramp * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO


def noise_ladder():
    """sigma_0 = SIGMA_MAX > ... > sigma_{LEVELS-1} = SIGMA_MIN, then sigma_LEVELS = 0."""
    return torch.cat([karras_sigma(torch.linspace(0, 1, LEVELS)), torch.zeros(1)])


class Denoiser(torch.nn.Module):
    """eps_theta(x, sigma): the noise in x at level sigma. x: (n, DIM), sigma: (n, 1)."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM + 1, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, DIM))

    def forward(self, x, sigma):
        # sigma x / (1 + sigma^2), the best eps for data N(0, I) (the spikes' mean and covariance),
        # is right far up the ladder, where a net is inexact on rare large x: the net adds the rest
        x_in = x / (SIGMA_IN**2 + sigma**2).sqrt()  # Karras et al. c_in = 1 / sqrt(s_data^2 + s^2)
        return sigma * x / (1 + sigma**2) + self.net(torch.cat([x_in, sigma.log() / 4], dim=1))


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
    """Fit eps_theta at levels drawn log-uniformly between SIGMA_MIN and SIGMA_MAX (the
    ladder's own spacing would spend half the steps above sigma = 2, where eps ~ x / sigma
    is easy); returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Denoiser(), []
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    for k in range(1, steps + 1):
        sigma = SIGMA_MIN * (SIGMA_MAX / SIGMA_MIN) ** torch.rand(batch, 1)
        y, eps = target_sample(batch), torch.randn(batch, DIM)
        # each draw with its mirror images (x1 -> -x1, x2 -> -x2; the data has the symmetry):
        # no chance tilt of a batch towards a spike, which left shares 0.01-0.02 off
        x = torch.cat([f * (y + sigma * eps) for f in FLIPS])
        eps, sigma = torch.cat([f * eps for f in FLIPS]), sigma.repeat(4, 1)
        loss = ((model(x, sigma) - eps) ** 2).mean()
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0):
    """Walk from N(0, sigma_0^2 I) down the ladder; returns (LEVELS + 1, n, DIM)."""
    sigma, g = noise_ladder(), torch.Generator().manual_seed(seed)
    # quasi-random N(0, I): Sobol points (multiples of 2^-30; + 2^-31 keeps them off 0) through
    # the normal quantile
    u = torch.quasirandom.SobolEngine(DIM, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    x = sigma[0] * torch.special.ndtri(u + 2**-31).float()
    xs = [x]
    for i in range(LEVELS):
        s = sigma[i]
        if CHURN_MIN <= s <= CHURN_MAX:  # up to s_hat = (1 + CHURN) s: add N(0, s_hat^2 - s^2)
            s = s * (1 + CHURN)
            x = x + (s**2 - sigma[i] ** 2).sqrt() * torch.randn(n, DIM, generator=g)
        x = x - (s - sigma[i + 1]) * model(x, s.expand(n, 1))  # Euler step of dx/dsigma = eps
        xs.append(x)
    return torch.stack(xs)


def sliced_w1(a, b, directions=100):
    """1-Wasserstein distance between two equal-size 2D samples, averaged over directions."""
    angle = torch.rand(directions, generator=torch.Generator().manual_seed(0)) * np.pi
    u = torch.stack([angle.cos(), angle.sin()])  # (2, directions)
    return float(((a @ u).sort(0).values - (b @ u).sort(0).values).abs().mean())


def nearest(x):
    """Index of the nearest spike and the distance to it, for x: (n, DIM)."""
    d = torch.cdist(x, CENTERS)
    return d.argmin(1), d.min(1).values


def report(x):
    """Share and spread per spike, worst distance, sliced W1; as printed lines and a dict."""
    g = torch.Generator().manual_seed(12345)
    # 20 fresh target samples: the W1s are means over 10, as one draw is noisy
    ref, (k, dist) = [target_sample(len(x), g) for _ in range(20)], nearest(x)
    r = {"share": [(k == j).float().mean().item() for j in range(len(CENTERS))],
         "spread": [x[k == j].std(0).tolist() for j in range(len(CENTERS))],
         "max_dist": dist.max().item(), "w1": np.mean([sliced_w1(x, y) for y in ref[:10]]),
         "w1_floor": np.mean([sliced_w1(a, b) for a, b in zip(ref[:10], ref[10:])])}
    print(f"target    share 0.250 at each spike, spread ({S:.4f}, {S:.4f}) inside each")
    for (c1, c2), share, (s1, s2) in zip(CENTERS.tolist(), r["share"], r["spread"]):
        print(f"generated share {share:.3f} at ({c1:+.0f}, {c2:+.0f}), spread ({s1:.4f}, {s2:.4f})")
    print(f"farthest sample from its spike {r['max_dist']:.4f}")
    print(f"sliced W1 to fresh target samples {r['w1']:.5f} (two-sample floor {r['w1_floor']:.5f})")
    return r


def plot(losses, traj, share, out, show):
    name, sigma = "simple_multimodal", noise_ladder().numpy()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    fig.savefig(f"{out}/{name}_loss.png", dpi=100)

    fig, axes = plt.subplots(1, len(SNAPSHOTS), figsize=(3 * len(SNAPSHOTS), 3.4))
    for ax, i in zip(axes, SNAPSHOTS):
        half = 1.5 + 3 * sigma[i]  # the spikes plus 3 noise std
        ax.scatter(*traj[i, :1000].T, s=2, alpha=0.5)
        ax.plot(*CENTERS.numpy().T, "k+", ms=10)
        ax.set(title=f"level {i}, sigma = {sigma[i]:.3g}", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(-half, half), ylim=(-half, half))
    fig.suptitle("1000 samples walking down the ladder (+ marks the spikes)")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_trajectory.png", dpi=100)

    x, target = traj[-1], target_sample(len(traj[-1]), torch.Generator().manual_seed(12345)).numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    a.scatter(*x.T, s=3, alpha=0.4, c="C1", label="generated")
    a.plot(*CENTERS.numpy().T, "k+", ms=12, label="spikes")
    a.set(title="generated samples", xlabel="x1", ylabel="x2", aspect="equal",
          xlim=(-1.5, 1.5), ylim=(-1.5, 1.5))
    for c, p in zip(CENTERS.tolist(), share):
        a.annotate(f"{p:.1%}", c, xytext=(0, 12), textcoords="offset points", ha="center")
    a.legend(loc="center", fontsize=8)
    b.scatter(*target.T, s=3, alpha=0.4, c="k", label="target")
    b.scatter(*x.T, s=3, alpha=0.4, c="C1", label="generated")
    b.add_patch(plt.Circle((1, 1), 2 * S, fill=False, ls="--", label="target 2 std"))
    b.set(title="zoom on the spike at (1, 1)", xlabel="x1", ylabel="x2", aspect="equal",
          xlim=(1 - 5 * S, 1 + 5 * S), ylim=(1 - 5 * S, 1 + 5 * S))
    b.legend(loc="upper right", fontsize=8)
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
    gc.freeze()  # keep torch's and matplotlib's 200k objects out of the GC: 0.5 s less at exit
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/simple_multimodal_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), r["share"], args.out, args.show)
    return r


if __name__ == "__main__":
    main()

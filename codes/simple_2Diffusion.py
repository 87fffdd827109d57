"""Remove one noise level at a time, in 2D: simple_1Diffusion with a vector for x.

The data is N(MU, S^2 I) with MU = (-1, 1), S = 0.01. Nothing in the method cares about
the dimension: a noisy copy at level sigma is x = y + sigma * eps with eps ~ N(0, I),
a small MLP learns eps from (x, sigma) on the Karras et al. 2022 ladder (eq. 5, rho = 7)
sigma_0 > ... > sigma_{N-1} > sigma_N = 0, and sampling starts from N(0, sigma_0^2 I):

    x_{i+1} = x_i - (sigma_i - sigma_{i+1}) * eps_theta(x_i, sigma_i)

an Euler step of the probability-flow ODE dx/dsigma = E[eps | x] (Karras et al. eq. 4)
that leaves exactly the noise of level i+1. sigma_0 = 80 swamps the data: starting at 0
instead of MU leaves an offset of |MU_d| * S / sigma_0 = 0.0001 per coordinate. Euler
steps are first order: 400 levels shrink the std by about 1.4%, and SIGMA_MIN = 0.0005
keeps the last step's own shrink, SIGMA_MIN^2 / (2 S^2), to 0.1% (simple_1Diffusion).
The walk is deterministic, so as in simple_1Diffusion the start is quasi-random (scrambled
Sobol points through the normal quantile): evenly spread, without random draws' luck.

Run:    python codes/simple_2Diffusion.py
Writes: outputs/simple_2Diffusion_{loss,trajectory,samples}.png and _samples.npy
"""
import argparse
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: N(MU, S^2 I)
MU, S = torch.tensor([-1.0, 1.0]), 0.01
DIM = 2
# noise ladder (Karras et al. 2022, eq. 5)
SIGMA_MAX, SIGMA_MIN, RHO, LEVELS = 80.0, 0.0005, 7.0, 400
# model: MLP on (x standardized per level, log sigma)
HIDDEN = 32
# training
STEPS, BATCH, LR = 1000, 1024, 5e-3
# sampling, and the levels drawn as snapshots
SAMPLES = 2000
SNAPSHOTS = (0, 210, 280, 315, 355, LEVELS)


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
    """Walk from N(0, sigma_0^2 I) down the ladder; returns (LEVELS + 1, n, DIM)."""
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


def sliced_w1(a, b, directions=100):
    """1-Wasserstein distance between two equal-size 2D samples, averaged over directions."""
    angle = torch.rand(directions, generator=torch.Generator().manual_seed(0)) * np.pi
    u = torch.stack([angle.cos(), angle.sin()])  # (2, directions)
    return float(((a @ u).sort(0).values - (b @ u).sort(0).values).abs().mean())


def report(x):
    """Target against generated, as printed lines and a dict."""
    # 20 fresh target samples: the W1s are means over 10, as one draw is noisy
    g = torch.Generator().manual_seed(12345)
    ref = [target_sample(len(x), g) for _ in range(20)]
    r = {"target_mean": MU.tolist(), "mean": x.mean(0).tolist(), "target_std": S,
         "std": x.std(0).tolist(), "w1": np.mean([sliced_w1(x, y) for y in ref[:10]]),
         "w1_floor": np.mean([sliced_w1(a, b) for a, b in zip(ref[:10], ref[10:])])}
    print(f"target    mean ({MU[0]:.4f}, {MU[1]:.4f})  std ({S:.4f}, {S:.4f})")
    print("generated mean ({:.4f}, {:.4f})  std ({:.4f}, {:.4f})".format(*r["mean"], *r["std"]))
    print(f"sliced W1 to fresh target samples {r['w1']:.5f} (two-sample floor {r['w1_floor']:.5f})")
    return r


def plot(losses, traj, out, show):
    name, sigma, (m1, m2) = "simple_2Diffusion", noise_ladder().numpy(), MU.tolist()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    fig.savefig(f"{out}/{name}_loss.png", dpi=100)

    fig, axes = plt.subplots(1, len(SNAPSHOTS), figsize=(3 * len(SNAPSHOTS), 3.4))
    for ax, i in zip(axes, SNAPSHOTS):
        half = 3 * sigma[i] + 3 * S  # the target's spread at this level, 3 std each side
        ax.scatter(*traj[i, :500].T, s=2, alpha=0.5)
        ax.plot(m1, m2, "k+", ms=12)
        ax.set(title=f"level {i}, sigma = {sigma[i]:.3g}", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(m1 - half, m1 + half), ylim=(m2 - half, m2 + half))
    fig.suptitle("500 samples walking down the ladder (+ marks MU; axes span 3 target std)")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_trajectory.png", dpi=100)

    target = target_sample(len(traj[-1]), torch.Generator().manual_seed(12345)).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, x, c, what in [(axes[0], target, "k", "target N((-1, 1), 0.01^2 I)"),
                           (axes[1], traj[-1], "C1", "generated")]:
        ax.scatter(*x.T, s=3, alpha=0.4, c=c)
        ax.add_patch(plt.Circle((m1, m2), 2 * S, fill=False, ls="--", label="target 2 std"))
        ax.set(title=f"{what}, {len(x)} samples", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(m1 - 5 * S, m1 + 5 * S), ylim=(m2 - 5 * S, m2 + 5 * S))
        ax.legend(loc="upper right", fontsize=8)
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
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/simple_2Diffusion_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

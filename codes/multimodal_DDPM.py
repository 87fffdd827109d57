"""DDPM (Ho et al. 2020) on four spikes in 2D: the reverse process picks a mode.

The data is an equal mixture of four narrow Gaussians N(c, S^2 I), S = 0.01, at
c = (+-1, +-1). Everything else is single_DDPM.py in 2D: the forward process
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4), one network
eps_theta(x_t, t) for every level trained on ||eps - eps_theta||^2 (Algorithm 1), and
ancestral sampling from x_T ~ N(0, I) (Algorithm 2):

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z

with z ~ N(0, I) at every step but the last and sigma_t^2 = beta~_t, the posterior
variance. The prior is N(0, I), as DDPM says, and the last step is the last step: no
extra sharpening passes.

Schedule: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) geometric from 1e-3 to 10 over
T = 500 levels. beta_1 = 1e-6 << S^2, so the exact noise prediction reproduces each
spike's spread to a few % (as well as 1000 levels do), in half the sampling time of the
usual 1000. alpha_bar_T = 0.01 is enough here because the mixture has
mean 0: q(x_T) is a mixture of N(sqrt(alpha_bar_T) c, ~I), and by convexity its KL to
N(0, I) is at most alpha_bar_T |c|^2 / 2 = 0.01 (levels above sigma = 10 would only cost
training time, and it shows: with sigma_T = 100 the spreads come out worse).

The hard part is the split: near sigma ~ 0.3 the exact eps jumps across the lines
between spikes over a width ~ sigma^2, and a small MLP that smooths the jump leaves a
few samples stranded between spikes. Two things help. The network sees x_t scaled to
unit size as if the data had std SIGMA_IN = 0.3 (Karras et al.'s c_in), which puts that
split at unit scale. And a quarter of each training batch is drawn from the levels of
the split (sigma 0.16 to 0.6) instead of uniformly: below sigma ~ 0.25 training data
between the spikes all but vanishes (density ~ exp(-1 / (2 sigma^2))), so the net must
learn the split while it still sees it. With uniform levels about one run in four left
a sample stranded (up to 0.75 from a spike); with the extra share
`python tests/benchmark.py --only multimodal_DDPM --seeds 12` finds every sample within
0.06 of a spike on seeds 0-11. Rare, not impossible: a smooth net only approximates it.

Run:    python codes/multimodal_DDPM.py
Writes: outputs/multimodal_DDPM_{trajectory,samples}.png and _samples.npy
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
# noise schedule: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), geometric in t
T, SIGMA_MIN, SIGMA_MAX = 500, 1e-3, 10.0
# model: MLP on (x_t / sqrt(SIGMA_IN^2 alpha_bar_t + 1 - alpha_bar_t), log sigma_t);
# SIGMA_IN is below the spike distance 1: the split near sigma ~ 0.3 is seen at unit size
HIDDEN, SIGMA_IN = 48, 0.3
# training
STEPS, BATCH, LR = 1500, 256, 3e-2  # BATCH draws a step, each with its 4 mirror images
SPLIT, SPLIT_SHARE = (280, 350), 0.25  # levels t with sigma_t from 0.16 to 0.6: see train()
FLIPS = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # x -> FLIPS[j] * x
# sampling, and the levels drawn as snapshots
SAMPLES, SNAPSHOTS = 2000, (500, 400, 350, 300, 250, 0)


def target_sample(n, generator=None):
    """n fresh samples of the data, shape (n, DIM): a random spike, then its noise."""
    spike = torch.randint(len(CENTERS), (n,), generator=generator)
    return CENTERS[spike] + S * torch.randn(n, DIM, generator=generator)


def schedule(levels=T):
    """beta_t and alpha_bar_t, float64 tensors indexed by t = 0..levels (t = 0: the data)."""
    sigma = torch.logspace(np.log10(SIGMA_MIN), np.log10(SIGMA_MAX), levels, dtype=torch.float64)
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigma**2)])
    # alpha_t = alpha_bar_t / alpha_bar_{t-1}, with alpha_bar_{-1} = alpha_bar_0 so that beta_0 = 0
    beta = 1 - alpha_bar / torch.cat([alpha_bar[:1], alpha_bar[:-1]])
    return beta, alpha_bar


class Denoiser(torch.nn.Module):
    """eps_theta(x_t, t): the noise in x_t at level t. x_t: (n, DIM), t: (n,) ints in 1..T."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        alpha_bar = schedule()[1]
        self.register_buffer("log_sigma", (0.5 * ((1 - alpha_bar) / alpha_bar).log()).float())
        # Karras et al.'s c_in for x_t / sqrt(alpha_bar_t) = x_0 + sigma_t eps, data std SIGMA_IN
        self.register_buffer("c_in", (SIGMA_IN**2 * alpha_bar + 1 - alpha_bar).rsqrt().float())
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM + 1, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, DIM))

    def forward(self, xt, t):
        # the level enters as log sigma_t, which spreads the levels evenly
        return self.net(torch.cat([xt * self.c_in[t, None], self.log_sigma[t, None] / 4], dim=1))


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
    model, alpha_bar, losses = Denoiser(), schedule()[1], []
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    for k in range(1, steps + 1):
        # Algorithm 1 draws t uniformly; here a quarter of the batch comes from the levels
        # where the noise splits four ways: data between the spikes is rare there, and a
        # net that has seen too little of it strands a few samples between spikes
        t = torch.where(torch.rand(batch) < SPLIT_SHARE, torch.randint(*SPLIT, (batch,)),
                        torch.randint(1, T + 1, (batch,)))
        ab, eps = alpha_bar[t, None], torch.randn(batch, DIM)
        xt = (ab.sqrt() * target_sample(batch) + (1 - ab).sqrt() * eps).float()  # Ho eq. 4
        # each draw with its mirror images (x1 -> -x1, x2 -> -x2; the data has the symmetry):
        # no batch tilts the net towards one spike by chance
        xt, eps = torch.cat([f * xt for f in FLIPS]), torch.cat([f * eps for f in FLIPS])
        t = t.repeat(4)
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


def nearest(x):
    """Index of the nearest spike and the distance to it, for x: (n, DIM)."""
    d = torch.cdist(x, CENTERS)
    return d.argmin(1), d.min(1).values


def sliced_w1(a, b, directions=100):
    """1-Wasserstein distance between two equal-size 2D samples, averaged over directions."""
    angle = torch.rand(directions, generator=torch.Generator().manual_seed(0)) * np.pi
    u = torch.stack([angle.cos(), angle.sin()])  # (2, directions)
    return float(((a @ u).sort(0).values - (b @ u).sort(0).values).abs().mean())


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
    print(f"sliced W1 to fresh target samples {r['w1']:.5f} (floor {r['w1_floor']:.5f})")
    return r


def plot(traj, out, show):
    name, alpha_bar = "multimodal_DDPM", schedule()[1].numpy()
    fig, axes = plt.subplots(1, len(SNAPSHOTS), figsize=(3 * len(SNAPSHOTS), 3.4))
    for ax, t in zip(axes, SNAPSHOTS):
        ax.scatter(*traj[T - t, :1000].T, s=2, alpha=0.5)
        ax.plot(*(np.sqrt(alpha_bar[t]) * CENTERS.numpy()).T, "k+", ms=10)
        ax.set(title=f"t = {t}, alpha_bar = {alpha_bar[t]:.2g}", xlabel="x1", ylabel="x2",
               aspect="equal", xlim=(-3, 3), ylim=(-3, 3))
    fig.suptitle("1000 samples of the reverse process (+ marks sqrt(alpha_bar_t) x spike)")
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_trajectory.png", dpi=100)

    x, target = traj[-1], target_sample(len(traj[-1]), torch.Generator().manual_seed(12345)).numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5))
    for y, colour, label in ((target, "k", "target"), (x, "C1", "generated")):
        k = nearest(torch.from_numpy(y))[0].numpy()
        a.scatter(*y.T, s=3, alpha=0.4, c=colour, label=label)
        # every spike moved onto the origin: what is left is the spread inside the spikes
        b.scatter(*(y - CENTERS.numpy()[k]).T, s=3, alpha=0.4, c=colour, label=label)
    for j, c in enumerate(CENTERS.tolist()):  # k: the generated samples' nearest spikes
        a.annotate(f"{(k == j).mean():.1%}", c, xytext=(-12, 12), textcoords="offset points")
    a.set(title="generated samples (share per spike)", xlabel="x1", ylabel="x2",
          aspect="equal", xlim=(-1.5, 1.5), ylim=(-1.5, 1.5))
    a.legend(loc="center", fontsize=8)
    b.add_patch(plt.Circle((0, 0), 2 * S, fill=False, ls="--", label="target 2 std"))
    b.set(title="the four spikes overlaid: sample - nearest spike", xlabel="x1 - c1",
          ylabel="x2 - c2", aspect="equal", xlim=(-5 * S, 5 * S), ylim=(-5 * S, 5 * S))
    b.legend(loc="upper right", fontsize=8)
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
    gc.freeze()  # keep torch's and matplotlib's 200k objects out of the GC: 0.5 s less at exit
    traj = sample(train(args.steps, args.seed)[0], args.samples, args.seed)
    np.save(f"{args.out}/multimodal_DDPM_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

"""Flow matching (rectified flow) on a ring of 8 Gaussians, sampled with Euler or Heun.

The straight path x_t = (1 - t) x0 + t x1 from noise x0 ~ N(0, I) to data x1 moves at the
velocity x1 - x0 (Liu et al. 2023 eq. 1; Lipman et al. 2023 eqs. 20-23, sigma_min = 0). An
MLP v_theta(x_t, t) regresses it, the conditional flow matching loss
E ||v_theta(x_t, t) - (x1 - x0)||^2 (Lipman et al. eq. 23), whose minimiser is the marginal
velocity E[x1 - x0 | x_t]. t is drawn logit-normally (Esser et al. 2024, sec. 3.1). Sampling
integrates dx/dt = v(x, t) from t = 0 to 1 in K equal steps, by Euler or by Heun (Karras et
al. 2022, Algorithm 1); `exact_velocity` is the closed-form minimiser, the sampler's check.

Run:    python codes/flow_matching.py [--sample-steps K] [--solver {euler,heun}]
Writes: outputs/flow_matching.png (loss, paths, result, W1 against K), _samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: MODES equally weighted Gaussians N(mu_k, STD^2 I) on a ring
MODES = 8  # Gaussians on the ring
RADIUS = 2.0  # radius of the ring
STD = 0.1  # std of each Gaussian
MU = RADIUS * torch.stack([torch.cos(torch.arange(MODES) * 2 * np.pi / MODES),
                           torch.sin(torch.arange(MODES) * 2 * np.pi / MODES)], 1)
# time: training draws t = sigmoid(T_MEAN + T_STD n), n ~ N(0, 1)
T_MEAN = 0.5  # mean of logit(t): more of the steps near the data, where the modes sharpen
T_STD = 1.3  # std of logit(t)
# model
HIDDEN = 128  # width of the MLP's three hidden layers
SIGMA_IN = 0.2  # the net sees x_t / sqrt((1 - t)^2 + (SIGMA_IN t)^2), modes at unit scale
# training
STEPS = 1200  # Adam steps
BATCH = 512  # (x0, x1, t) triples per step
LR = 1e-2  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # samples to generate
SAMPLE_STEPS = 16  # K: integration steps
SOLVER = "heun"  # "euler" or "heun"
KS = (1, 2, 4, 8, 16)  # the K of the W1-against-K panel
PATHS = 60  # sample paths drawn


def target_sample(n, generator=None):
    """n samples of the data, shape (n, 2): a random mode, then its Gaussian noise."""
    k = torch.randint(MODES, (n,), generator=generator)
    return MU[k] + STD * torch.randn(n, 2, generator=generator)


def exact_velocity(x, t):
    """E[x1 - x0 | x_t = x]: each mode's velocity weighted by the mode's posterior at x."""
    t = t.reshape(-1, 1, 1)
    var = (1 - t) ** 2 + (t * STD) ** 2  # x_t given mode k is N(t mu_k, var I)
    d = x[:, None] - t * MU  # (n, MODES, 2)
    w = torch.softmax(-(d**2).sum(-1, keepdim=True) / (2 * var), dim=1)
    return (w * (MU + (t * STD**2 - (1 - t)) / var * d)).sum(1)  # Cov(x1 - x0, x_t) / var


class Velocity(torch.nn.Module):
    """v_theta(x_t, t) for x_t: (n, 2) and t: (n,) in [0, 1]."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 2))

    def forward(self, xt, t):
        t = t[:, None]  # Karras et al.'s c_in for x_t / t = x1 + sigma x0, sigma = (1 - t) / t
        return self.net(torch.cat([xt * ((1 - t) ** 2 + (SIGMA_IN * t) ** 2).rsqrt(), t], 1))


def train(steps=STEPS, seed=0, batch=BATCH, lr=LR):
    """Fit v_theta to x1 - x0 along the straight paths; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Velocity(), []
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(steps):
        x0, x1 = torch.randn(batch, 2), target_sample(batch)
        t = torch.sigmoid(T_MEAN + T_STD * torch.randn(batch))  # logit-normal t
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = ((model(xt, t) - (x1 - x0)) ** 2).mean()  # conditional flow matching loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0, steps=SAMPLE_STEPS, solver=SOLVER):
    """Integrate dx/dt = model(x, t) from x ~ N(0, I) at t = 0 to t = 1; (steps + 1, n, 2)."""
    x, h = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)), 1 / steps
    xs = [x]
    for i in range(steps):
        t = torch.full((n,), i * h)
        v = model(x, t)
        if solver == "heun":  # Karras et al. Alg. 1, lines 7-8: the mean of both ends' slopes
            v = (v + model(x + h * v, t + h)) / 2
        x = x + h * v
        xs.append(x)
    return torch.stack(xs)


def w1_ratio(x, draws=10):
    """Sliced W1 (64 directions) from x to fresh target samples, over the same between two
    fresh target samples (the floor): about 1 for a perfect sampler."""
    g = torch.Generator().manual_seed(1234)
    u = torch.nn.functional.normalize(torch.randn(2, 64, generator=g), dim=0).numpy()
    ys = [np.sort(target_sample(len(x), g).numpy() @ u, 0) for _ in range(2 * draws)]
    w1 = np.mean([np.abs(np.sort(x.numpy() @ u, 0) - y).mean() for y in ys[:draws]])
    return w1 / np.mean([np.abs(a - b).mean() for a, b in zip(ys[:draws], ys[draws:])])


def sweep(model, n, seed):
    """W1/floor against K for each solver, with the trained net and with the exact velocity."""
    return {(solver, name): [w1_ratio(sample(v, n, seed, k, solver)[-1]) for k in KS]
            for solver in ("euler", "heun") for name, v in (("net", model), ("exact", exact_velocity))}


def report(x, curves):
    """Share and spread per mode, W1/floor; prints a few lines and returns them as a dict."""
    k = torch.cdist(x, MU).argmin(1)
    r = {"share": [(k == j).float().mean().item() for j in range(MODES)],
         "spread": [(x[k == j] - MU[j]).std(0).max().item() for j in range(MODES)],
         "w1_ratio": w1_ratio(x), "curves": {f"{s} {v}": c for (s, v), c in curves.items()}}
    print(f"target    share {1 / MODES:.3f}, spread {STD:.3f} in each of {MODES} modes")
    print("generated share  " + " ".join(f"{s:.3f}" for s in r["share"]))
    print("generated spread " + " ".join(f"{s:.3f}" for s in r["spread"]))
    print(f"generated W1/floor {r['w1_ratio']:.2f} (1: as close as a second target sample)")
    for name, c in r["curves"].items():
        print(f"W1/floor at K = {KS}, {name:11s} " + " ".join(f"{w:.2f}" for w in c))
    return r


def plot(losses, traj, curves, out, show):
    fig, ax = plt.subplots(1, 4, figsize=(20, 5))
    ax[0].semilogy(losses, lw=0.5)
    ax[0].set(title="training loss", xlabel="Adam step", ylabel="CFM loss")
    ax[1].plot(*traj[:, :PATHS].transpose(2, 0, 1), c="C0", lw=0.7, alpha=0.6)
    ax[1].scatter(*traj[0, :PATHS].T, s=8, c="k", label="noise, t = 0", zorder=3)
    ax[1].scatter(*traj[-1, :PATHS].T, s=8, c="C1", label="sample, t = 1", zorder=3)
    target = target_sample(len(traj[-1]), torch.Generator().manual_seed(1)).numpy()
    ax[2].scatter(*target.T, s=3, c="k", alpha=0.3, label="target")
    ax[2].scatter(*traj[-1].T, s=3, c="C1", alpha=0.3, label="generated")
    for a, title in ((ax[1], f"{PATHS} paths of dx/dt = v(x, t)"), (ax[2], "result against target")):
        a.set(title=title, xlabel="x1", ylabel="x2", aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
        a.legend(loc="upper right", fontsize=8)
    for (solver, name), c in curves.items():
        ax[3].loglog([k * (1 + (solver == "heun")) for k in KS], c, "o-" if name == "net" else "s--",
                     c="C0" if solver == "euler" else "C3", label=f"{solver}, {name} velocity")
    ax[3].axhline(1, c="k", lw=0.5)
    ax[3].set(title="quality against cost", xlabel="network evaluations (Heun: 2 per step)",
              ylabel="W1 / floor", ylim=(0.8, 30))
    ax[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out}/flow_matching.png", dpi=80)
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the figure and samples")
    p.add_argument("--show", action="store_true", help="open the figure")
    p.add_argument("--sample-steps", type=int, default=SAMPLE_STEPS, help="K: integration steps")
    p.add_argument("--solver", choices=("euler", "heun"), default=SOLVER)
    args = p.parse_args(argv)
    if min(args.steps, args.samples, args.sample_steps) < 1:
        p.error("--steps, --samples and --sample-steps must be positive")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed, args.sample_steps, args.solver)
    np.save(f"{args.out}/flow_matching_samples.npy", traj[-1].numpy())
    curves = sweep(model, args.samples, args.seed)
    r = report(traj[-1], curves)
    plot(losses, traj.numpy(), curves, args.out, args.show)
    print(f"wrote {args.out}/flow_matching.png, {args.out}/flow_matching_samples.npy")
    return r


if __name__ == "__main__":
    main()

"""Learn the reverse mean AND variance of a diffusion from the full variational bound.

Data: a 1:2 mixture of N(-4, 1) and N(4, 1). Forward process (Ho et al. 2020, eq. 2):
    q(x_t | x_{t-1}) = N(x_t; sqrt(1 - beta) x_{t-1}, beta),  T steps, constant beta,
so alpha_bar_T = (1 - beta)^T = 2.7e-5 and x_T ~ N(0, 1). The reverse step
p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_theta(x_t, t)^2) comes from an MLP on (x_t, t/T),
trained on whole forward trajectories by the bound itself (Ho et al. eq. 3):
    L = E_q[ -log p(x_T) - sum_t log p(x_{t-1} | x_t) / q(x_t | x_{t-1}) ] >= H(q(x_0)),
the data's entropy. Sampling runs p from x_T ~ N(0, 1).
Run:    python codes/elbo_diffusion.py  [--steps N --samples N --seed S --out DIR --show]
Writes: outputs/elbo_diffusion.png (loss, reverse process, result vs target), _samples.npy
"""
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.distributions import Normal

# data: 1:2 mixture of N(-4, 1) and N(4, 1)
WEIGHTS = (1 / 3, 2 / 3)  # mixture weights
MEANS = (-4.0, 4.0)  # component means
STD = 1.0  # component std
# forward process
T = 100  # diffusion steps
BETA = 0.1  # constant beta_t
# model
HIDDEN = 32  # width of the two hidden layers
# training
STEPS = 3000  # Adam steps
BATCH = 32  # whole forward trajectories per step
LR = 1e-2  # peak learning rate of the one-cycle schedule
# sampling
SAMPLES = 2000  # generated samples


def target_sample(n, generator=None):
    """n samples of the mixture, shape (n, 1)."""
    mean = torch.where(torch.rand(n, 1, generator=generator) < WEIGHTS[1], MEANS[1], MEANS[0])
    return mean + STD * torch.randn(n, 1, generator=generator)


def diffuse(x0, steps=T, beta=BETA):
    """Whole forward trajectories x_0 .. x_T, shape (steps + 1, n, 1): with a = sqrt(1 - beta),
    x_t = a^t (x_0 + sqrt(beta) sum_{s<=t} a^-s eps_s), a cumulative sum (float64: a^-T is big)."""
    power = (1 - beta) ** (torch.arange(1, steps + 1, dtype=torch.float64).view(-1, 1, 1) / 2)
    eps = torch.randn(steps, *x0.shape, dtype=torch.float64)
    xt = power * (x0.double() + beta**0.5 * (eps / power).cumsum(0))
    return torch.cat([x0[None], xt.float()])


class Reverse(torch.nn.Module):
    """p(x_{t-1} | x_t): forward(x_t, t/T) -> (mean, std), each shaped like x_t."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.SiLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
                                       torch.nn.Linear(hidden, 2))
        torch.nn.init.zeros_(self.net[-1].weight)  # start near mean x_t, std sqrt(beta)

    def forward(self, xt, s):
        shift, log_std = self.net(torch.cat([xt / 4, s], -1)).chunk(2, -1)
        return xt + BETA * shift, BETA**0.5 * log_std.exp()  # outputs of order one


def bound(traj, model, beta=BETA):
    """Ho et al. eq. 3 on trajectories traj (T + 1, n, 1), averaged over the n of them."""
    steps, x_prev, xt = len(traj) - 1, traj[:-1], traj[1:]
    s = (torch.arange(1, steps + 1) / steps).view(-1, 1, 1).expand_as(xt)
    log_p = Normal(*model(xt, s)).log_prob(x_prev)  # all T reverse steps at once
    log_q = Normal((1 - beta) ** 0.5 * x_prev, beta**0.5).log_prob(xt)  # the forward step, eq. 2
    return -(Normal(0.0, 1.0).log_prob(traj[-1]) + (log_p - log_q).sum(0)).mean()


def train(steps=STEPS, seed=0, batch=BATCH, lr=LR):
    """Minimise the bound on fresh trajectories with Adam; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Reverse(), []
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(steps):
        loss = bound(diffuse(target_sample(batch)), model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0, steps=T):
    """Run p(x_{t-1} | x_t), fed the t/T of training, from x_T ~ N(0, 1); returns
    (steps + 1, n, 1), x_T first."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 1, generator=g)]
    for t in range(steps, 0, -1):
        xs.append(torch.normal(*model(xs[-1], torch.full((n, 1), t / steps)), generator=g))
    return torch.stack(xs)


def report(x):
    """Target against generated: the share right of 0, each side's mean and std."""
    r = {"share_right": (x > 0).float().mean().item()}
    print(f"share x > 0   target {WEIGHTS[1]:.3f}   generated {r['share_right']:.3f}")
    for side, y, mean in (("left", x[x <= 0], MEANS[0]), ("right", x[x > 0], MEANS[1])):
        r[f"{side}_mean"], r[f"{side}_std"] = y.mean().item(), y.std().item()
        print(f"{side:5s} mode    target mean {mean:+.3f} std {STD:.3f}   generated mean"
              f" {r[f'{side}_mean']:+.3f} std {r[f'{side}_std']:.3f}")
    return r


def plot(losses, traj, path, show):
    grid = torch.linspace(-9, 9, 400)
    pdf = sum(w * Normal(m, STD).log_prob(grid).exp() for w, m in zip(WEIGHTS, MEANS))
    entropy = -(pdf * pdf.log()).sum().item() * (grid[1] - grid[0]).item()  # H(q(x_0))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4))
    a.plot(losses, lw=0.5)
    a.axhline(entropy, c="k", ls="--")  # L >= -log p(x_0) >= H(q(x_0)) on average
    a.set(title=f"loss: the bound L (eq. 3), dashed: its floor {entropy:.2f}",
          xlabel="training step", ylabel="nats", ylim=(entropy - 0.5, entropy + 3))
    for x in traj[:, :200, 0].T:  # coloured by the mode it ends in
        b.plot(x, c=f"C{int(x[-1] > 0)}", lw=0.5, alpha=0.3)
    b.set(title="reverse process: 200 samples", xlabel="step T - t", ylabel="x_t", ylim=(-9, 9))
    c.hist(traj[-1, :, 0], bins=60, range=(-9, 9), density=True, alpha=0.6)
    c.plot(grid, pdf, "k")
    c.set(title="generated x_0 (histogram), target pdf (black)", xlabel="x_0", ylabel="density")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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
    args = p.parse_args(argv)
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    if min(args.steps, args.samples) < 1 or not os.access(args.out, os.W_OK):
        p.error("--steps and --samples must be positive, --out writable")
    model, losses = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed)
    np.save(f"{args.out}/elbo_diffusion_samples.npy", traj[-1].numpy())
    plot(losses, traj.numpy(), f"{args.out}/elbo_diffusion.png", args.show)
    print(f"wrote {args.out}/elbo_diffusion.png, {args.out}/elbo_diffusion_samples.npy")
    return report(traj[-1])


if __name__ == "__main__":
    main()

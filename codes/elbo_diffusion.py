"""Learn the reverse mean AND variance by minimising the full variational bound.

The data is a 1:2 mixture of N(-4, 1) and N(4, 1). The forward process adds noise
T = 100 times with a constant beta = 0.1 (Ho et al. 2020, eq. 2):

    q(x_t | x_{t-1}) = N(x_t; sqrt(1 - beta) x_{t-1}, beta)

so alpha_bar_T = 0.9^100 = 2.7e-5 and x_T is N(0, 1) to within a mean of 0.02. (The
reference's T = 250, beta = 0.02 leaves alpha_bar_T = 0.006: x_T keeps a mean of 0.11,
and starting the reverse chain at N(0, 1) instead puts about 2% too few samples on the
right.) Two small networks give the mean and the standard deviation of the reverse step
p(x_{t-1} | x_t) from (x_t, t/T), and both are trained on whole forward trajectories by
minimising the bound itself (Ho et al. eq. 3), the log q terms included:

    L = E_q[ -log p(x_T) - sum_{t=1..T} log p(x_{t-1} | x_t) / q(x_t | x_{t-1}) ]

L >= E[-log p(x_0)] >= H(q(x_0)) = 2.06 nats, the data's entropy: the loss plot shows
how close the bound gets. Sampling runs the learned reverse chain from x_T ~ N(0, 1),
with the same t/T input as in training.

Run:    python codes/elbo_diffusion.py
Writes: outputs/elbo_diffusion_{training,reverse}.png and _samples.npy
"""
import argparse
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

# data: 1:2 mixture of N(-4, 1) and N(4, 1)
WEIGHTS, MEANS, STD = (1 / 3, 2 / 3), (-4.0, 4.0), 1.0
# forward process (Ho et al. eq. 2), constant beta
T, BETA = 100, 0.1
# model: two MLPs on (x_t, t/T), one for the mean, one for the std
HIDDEN = 32
# training: BATCH whole trajectories per step
STEPS, BATCH, LR = 3000, 32, 1e-2
# sampling
SAMPLES = 2000


def target_sample(n, generator=None):
    """n fresh samples of the mixture, shape (n, 1)."""
    mean = torch.where(torch.rand(n, 1, generator=generator) < WEIGHTS[1], MEANS[1], MEANS[0])
    return mean + STD * torch.randn(n, 1, generator=generator)


def target_pdf(x):
    return sum(w * np.exp(-0.5 * ((x - m) / STD) ** 2) / (STD * np.sqrt(2 * np.pi))
               for w, m in zip(WEIGHTS, MEANS))


def diffuse(x0, steps=T, beta=BETA):
    """A whole forward trajectory x_0 .. x_T in one go, shape (steps + 1, n, 1).

    x_t = a^t x_0 + sqrt(beta) sum_{s<=t} a^(t-s) eps_s with a = sqrt(1 - beta), a
    cumulative sum (in float64, as a^-s grows to 194 at s = 100)."""
    a = (1 - beta) ** 0.5
    eps = torch.randn(steps, *x0.shape, dtype=torch.float64)
    power = a ** torch.arange(1, steps + 1, dtype=torch.float64).view(-1, 1, 1)
    xt = power * (x0.double() + beta**0.5 * (eps / power).cumsum(0))
    return torch.cat([x0[None], xt.float()])


class Reverse(torch.nn.Module):
    """p(x_{t-1} | x_t) = N(mean, std^2); forward(x_t, t/T) -> (mean, std), each like x_t."""

    def __init__(self, hidden=HIDDEN):
        super().__init__()
        self.mean_net, self.std_net = (torch.nn.Sequential(
            torch.nn.Linear(2, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 1)) for _ in range(2))
        for layer in (self.mean_net[-1], self.std_net[-1]):  # start: mean x_t, std sqrt(beta)
            torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)

    def forward(self, xt, s):
        h = torch.cat([xt / 4, s], dim=-1)
        # outputs scaled to the step: the mean moves by O(beta), the std is O(sqrt(beta))
        return xt + BETA * self.mean_net(h), BETA**0.5 * self.std_net(h).exp()


def log_normal(x, mean, std):
    """log N(x; mean, std^2)"""
    std = torch.as_tensor(std)
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std * (2 * torch.pi) ** 0.5)


def bound(traj, model, beta=BETA):
    """Ho et al. eq. 3 on trajectories traj (T + 1, n, 1), averaged over the n of them."""
    steps, x_prev, xt = len(traj) - 1, traj[:-1], traj[1:]
    s = (torch.arange(1, steps + 1) / steps).view(-1, 1, 1).expand_as(xt)
    log_p = log_normal(x_prev, *model(xt, s))  # all T steps of all trajectories at once
    log_q = log_normal(xt, (1 - beta) ** 0.5 * x_prev, beta**0.5)  # the forward step, eq. 2
    return -(log_normal(traj[-1], 0.0, 1.0) + (log_p - log_q).sum(0)).mean()


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
    """Minimise the bound on fresh trajectories; returns (model, losses)."""
    torch.manual_seed(seed)
    model, losses = Reverse(), []
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in model.parameters()]
    for k in range(1, steps + 1):
        loss = bound(diffuse(target_sample(batch)), model)
        model.zero_grad()
        loss.backward()
        # one-cycle learning rate (Smith 2018): up for 30% of the steps, then down to 0
        adam_step(model, moments, k, lr * min(k / (0.3 * steps), (steps - k) / (0.7 * steps)))
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def sample(model, n, seed=0, steps=T):
    """Run p(x_{t-1} | x_t) from x_T ~ N(0, 1); returns (steps + 1, n, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    xs = [x]
    for t in range(steps, 0, -1):
        mean, std = model(x, torch.full((n, 1), t / steps))  # same t/T as in training
        x = mean + std * torch.randn(n, 1, generator=g)
        xs.append(x)
    return torch.stack(xs)


def w1(a, b):
    """1-Wasserstein distance between two equal-size 1D samples: mean |sorted differences|."""
    return float(np.abs(np.sort(a) - np.sort(b)).mean())


def report(x):
    """Share on each side, each side's mean and std, W1 against the two-sample floor."""
    x = x[:, 0].numpy()
    g = torch.Generator().manual_seed(12345)
    refs = [target_sample(len(x), g)[:, 0].numpy() for _ in range(11)]
    floor = float(np.mean([w1(refs[i], refs[i + 1]) for i in range(1, 11, 2)]))
    left, right = x[x <= 0], x[x > 0]
    r = {"share_right": float((x > 0).mean()), "left_mean": float(left.mean()),
         "left_std": float(left.std()), "right_mean": float(right.mean()),
         "right_std": float(right.std()), "w1": w1(x, refs[0]), "w1_floor": floor}
    r["w1_ratio"] = r["w1"] / floor
    for who, v in (("target   ", (WEIGHTS[1], MEANS[0], STD, MEANS[1], STD)),
                   ("generated", [r[k] for k in list(r)[:5]])):
        print(f"{who} share x > 0 {v[0]:.3f}   left mean {v[1]:+.3f} std {v[2]:.3f}"
              f"   right mean {v[3]:+.3f} std {v[4]:.3f}")
    print(f"W1 to a fresh target sample {r['w1']:.4f}  (two-sample floor {floor:.4f},"
          f" ratio {r['w1_ratio']:.2f})")
    return r


def plot(losses, traj, out, show):
    name, grid = "elbo_diffusion", np.linspace(-9, 9, 400)
    fwd = diffuse(target_sample(1000, torch.Generator().manual_seed(0)))[:, :, 0].numpy()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4))
    a.hist(fwd[0], bins=60, range=(-9, 9), density=True, alpha=0.6, label="1000 samples")
    a.plot(grid, target_pdf(grid), "k", label="q(x_0)")
    a.set(title="the data q(x_0)", xlabel="x_0", ylabel="density")
    a.legend()
    b.plot(fwd[:, :100], c="navy", lw=0.5, alpha=0.2)
    b.set(title="forward process: 100 trajectories", xlabel="diffusion step t", ylabel="x_t")
    c.plot(losses, lw=0.5, label="bound L (eq. 3) per training step")
    entropy = -np.trapezoid(target_pdf(grid) * np.log(target_pdf(grid)), grid)
    c.axhline(entropy, c="k", ls="--", label=f"H(q(x_0)) = {entropy:.2f}, its floor")
    c.set(title="training loss: the variational bound", xlabel="training step", ylabel="nats",
          ylim=(entropy - 0.5, entropy + 3))
    c.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_training.png", dpi=100)

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for path in traj[:, :200, 0].T:
        a.plot(path, c=f"C{int(path[-1] > 0)}", lw=0.5, alpha=0.3)
    a.set(title="reverse process: 200 samples, coloured by end mode", xlabel="generation step",
          ylabel="x", ylim=(-9, 9))
    b.hist(traj[-1, :, 0], bins=60, range=(-9, 9), density=True, alpha=0.6, label="generated")
    b.plot(grid, target_pdf(grid), "k", label="target pdf")
    b.set(title="generated samples against the target", xlabel="x_0", ylabel="density")
    b.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/{name}_reverse.png", dpi=100)
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
    np.save(f"{args.out}/elbo_diffusion_samples.npy", traj[-1].numpy())
    r = report(traj[-1])
    plot(losses, traj.numpy(), args.out, args.show)
    return r


if __name__ == "__main__":
    main()

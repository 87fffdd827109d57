"""DDPM on images: a small UNet learns to remove noise from pictures of coloured shapes.

Forward process (Ho et al. 2020, eq. 4), with alpha_bar_t = prod_{s<=t} (1 - beta_s):

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,    eps ~ N(0, I)

The UNet eps_theta(x_t, t) is trained to predict eps (Algorithm 1, loss |eps - eps_theta|^2).
Sampling starts from x_T ~ N(0, I) and takes T ancestral steps (Algorithm 2, eq. 11):

    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(1 - beta_t) + sigma_t z,
    sigma_t^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)

or, with --sample-steps K, K deterministic DDIM steps t -> s (Song et al. 2021, eq. 12, eta = 0):

    x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s) eps_theta,
    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)

The betas run linearly from 1e-4 to 0.02 for T = 1000 (Ho et al.); with T = 300 they are
scaled by 1000 / T, so that alpha_bar_T is ~4e-5 again. (Unscaled, 300 steps leave 22% of
the image in x_T, and sampling from pure noise would start from the wrong distribution.)

Data: generated RGB shapes (circles, squares, triangles) by default, or --data DIR.
Runs on cuda, then mps, then cpu (--device overrides); bf16 autocast on cuda.

Run (GPU):  python codes/image_ddpm.py
Run (CPU):  python codes/image_ddpm.py --img-size 16 --batch-size 32 --steps 2000
Run (K GPUs, DistributedDataParallel):  torchrun --nproc_per_node=K codes/image_ddpm.py
Writes: outputs/image_ddpm_{samples,denoising,loss}.png, image_ddpm_samples.npy (uint8,
        N x H x W x 3) and the checkpoint image_ddpm.pt (continue with --resume)
"""
import argparse
import copy
import math
import os
import sys
import tempfile

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from tqdm import tqdm

NAME = "image_ddpm"
# data: square RGB images scaled to [-1, 1]
IMG_SIZE = 32
# noise schedule: linear betas (Ho et al. 2020), scaled to T steps
T = 300
BETA_1, BETA_T = 1e-4 * 1000 / T, 0.02 * 1000 / T
# model: UNet widths, one per resolution (each level halves the image), and the width of
# the time embedding
CHANNELS, T_DIM = (32, 64, 128), 128
# training; EMA: decay of the weight average used for sampling
STEPS, BATCH, LR, EMA = 4000, 128, 1e-3, 0.999
SAVE_EVERY = 1000  # checkpoint and preview grid
# sampling
SAMPLES, GRID = 64, 64  # images generated, and how many of them the sample grid shows


def shapes(n, size=IMG_SIZE, generator=None):
    """n images of one shape each on a plain background: (n, 3, size, size) in [-1, 1]."""
    u = lambda *shape: torch.rand(*shape, generator=generator)
    kind = torch.randint(3, (n,), generator=generator)  # 0 circle, 1 square, 2 triangle
    r = 0.25 + 0.2 * u(n, 1, 1)  # size, as a fraction of the image
    cx, cy = [r + (1 - 2 * r) * u(n, 1, 1) for _ in "xy"]  # keeps the shape inside
    pix = (torch.arange(size) + 0.5) / size
    dx, dy = pix.view(1, 1, -1) - cx, pix.view(1, -1, 1) - cy  # (n, size, size)
    normals = torch.tensor([90.0, 210.0, 330.0]).deg2rad()  # triangle edges, apex up
    distance = torch.stack([  # signed, to the outline of a circle, square, triangle; < 0 inside
        (dx**2 + dy**2).sqrt() - r, torch.maximum(dx.abs(), dy.abs()) - 0.75 * r,
        (dx[..., None] * normals.cos() + dy[..., None] * normals.sin()).amax(-1) - r / 2])
    # 1 inside its own shape, 0 outside, with a one-pixel soft edge
    inside = (0.5 - distance[kind, torch.arange(n)] * size).clamp(0, 1)[:, None]
    background, colour = 0.3 * u(n, 3, 1, 1), 0.5 + 0.5 * u(n, 3, 1, 1)
    return 2 * (background + inside * (colour - background)) - 1


def load_folder(folder, size):
    """Every image under folder, RGB, centre-cropped and resized: (N, 3, size, size)."""
    images, bad = [], []
    for path in sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files):
        try:
            img = Image.fromarray(iio.imread(path, index=0)).convert("RGB")
            images.append(np.asarray(ImageOps.fit(img, (size, size))))  # centre crop, resize
        except Exception:  # not an image, or one that imageio/PIL cannot decode
            bad.append(path)
    if not images:
        raise ValueError(f"--data {folder}: no readable image there (or no such folder)")
    if bad:
        print(f"warning: skipped {len(bad)} unreadable file(s), e.g. {bad[0]}", file=sys.stderr)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1


def schedule():
    """beta_t, alpha_bar_t for t = 0..T (index = t; beta_0 = 0, alpha_bar_0 = 1)."""
    beta = torch.cat([torch.zeros(1), torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64)])
    return beta.float(), torch.cumprod(1 - beta, 0).float()


class Block(nn.Module):
    """Two 3x3 convolutions, the time embedding added between them, and a 1x1 skip."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, c_out), nn.GroupNorm(8, c_out)
        self.time, self.skip = nn.Linear(T_DIM, c_out), nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = F.silu(self.norm1(self.conv1(x))) + self.time(emb)[:, :, None, None]
        return F.silu(self.norm2(self.conv2(h))) + self.skip(x)


def time_embedding(t, dim=T_DIM):
    """Sinusoidal embedding of the step (Vaswani et al. 2017): t (n,) -> (n, dim)."""
    freq = torch.exp(-math.log(10000) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angle = t.float()[:, None] * freq
    return torch.cat([angle.sin(), angle.cos()], 1)


class UNet(nn.Module):
    """eps_theta(x_t, t): x_t (n, 3, S, S) and integer steps t (n,) in 1..T -> eps (n, 3, S, S).
    Down blocks halve the image, up blocks double it and take the matching down output."""

    def __init__(self, c=CHANNELS):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(T_DIM, T_DIM), nn.SiLU(), nn.Linear(T_DIM, T_DIM))
        self.conv_in = nn.Conv2d(3, c[0], 3, padding=1)
        self.downs = nn.ModuleList(Block(c[max(i - 1, 0)], c[i]) for i in range(len(c)))
        self.mid = Block(c[-1], c[-1])
        self.ups = nn.ModuleList(Block(2 * c[i], c[max(i - 1, 0)]) for i in reversed(range(len(c))))
        self.conv_out = nn.Conv2d(c[0], 3, 3, padding=1)

    def forward(self, x, t):
        emb = self.time_mlp(time_embedding(t))
        skips = [self.downs[0](self.conv_in(x), emb)]
        for down in self.downs[1:]:  # each on the halved output of the one before
            skips.append(down(F.avg_pool2d(skips[-1], 2), emb))
        h = self.mid(skips[-1], emb)
        for up, skip in zip(self.ups, reversed(skips)):  # nearest upsampling to the skip's size
            h = up(torch.cat([F.interpolate(h, size=skip.shape[-2:]), skip], 1), emb)
        return self.conv_out(h)


def draw(n, generator, images=None, size=IMG_SIZE):
    """n training images: generated shapes, or picked at random from images (N, 3, S, S)."""
    return shapes(n, size, generator) if images is None else \
        images[torch.randint(len(images), (n,), generator=generator)]


def step_generator(seed, step, rank=0):
    """The random numbers of one training step, derived from (seed, step) alone, so a
    resumed run draws exactly what an uninterrupted one would. Under torchrun each process
    adds its rank (rank 0 draws what a single process draws: SeedSequence pads its entropy with
    zeros, so [seed, step, 0] and [seed, step] are one seed)."""
    entropy = np.random.SeedSequence([seed, step, rank])
    return torch.Generator().manual_seed(entropy.generate_state(1).item())


def from_checkpoint(state, device="cpu"):
    """The EMA network stored in a checkpoint, ready to sample with."""
    model = UNet(state["config"]["channels"]).to(device)
    model.load_state_dict(state["ema"])
    return model.eval()


def train(steps=STEPS, seed=0, images=None, img_size=IMG_SIZE, batch=BATCH, device="cpu",
          out=None, state=None):
    """Fit eps_theta (Ho et al. Algorithm 1); returns (EMA model, losses).
    images: (N, 3, S, S) in [-1, 1] to draw batches from, or None for generated shapes.
    out: folder for the checkpoint and preview grid (every SAVE_EVERY steps, at the end and
    on Ctrl-C); state: a loaded checkpoint to continue from, up to step `steps`.
    Under torchrun (a process group is set up), DDP averages the gradients of all processes."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    # under DDP, each process draws from its own share of the folder
    images = None if images is None else images[rank::world]
    torch.manual_seed(seed)
    model = UNet().to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)
    losses = list(state["losses"]) if state else []
    for part, key in [(model, "model"), (ema, "ema"), (opt, "opt")] if state else []:
        part.load_state_dict(state[key])
    # DDP: every process steps with the mean gradient
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    print(f"UNet: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    alpha_bar = schedule()[1].to(device).view(-1, 1, 1, 1)  # (T + 1, 1, 1, 1), to scale images
    config = dict(img_size=img_size, channels=list(CHANNELS), T=T, batch=batch, seed=seed)

    def save():  # write, then rename: a crash never leaves half a checkpoint
        if out:
            torch.save(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                            step=len(losses), losses=losses, config=config), f"{out}/{NAME}.tmp")
            os.replace(f"{out}/{NAME}.tmp", f"{out}/{NAME}.pt")

    bar = tqdm(range(len(losses), steps), initial=len(losses), total=steps, desc="training",
               unit="img", unit_scale=batch * world, disable=rank > 0)  # rate: images/s
    try:
        for step in bar:
            g = step_generator(seed, step, rank)
            x0 = draw(batch, g, images, img_size).to(device)
            t = torch.randint(1, T + 1, (batch,), generator=g).to(device)
            eps = torch.randn(x0.shape, generator=g).to(device)
            xt = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * eps  # eq. 4
            with torch.autocast("cuda", torch.bfloat16, enabled=xt.is_cuda):  # bf16 on cuda only
                loss = F.mse_loss(net(xt, t).float(), eps)  # Algorithm 1, line 5
            opt.zero_grad()
            loss.backward()
            opt.step()
            for e, p in zip(ema.parameters(), model.parameters()):  # EMA, with a short warm-up
                e.lerp_(p.detach(), 1 - min(EMA, (1 + step) / (10 + step)))
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if (step + 1) % SAVE_EVERY == 0 and out:
                save()
                preview = sample(ema, 16, seed, img_size, device=device)[-1]  # a 4 x 4 grid
                iio.imwrite(f"{out}/{NAME}_samples.png", tile(preview))  # replaced at the end
    except KeyboardInterrupt:
        print(f"interrupted at step {len(losses)}, saving; continue with --resume", file=sys.stderr)
        raise SystemExit(130)
    finally:  # at the end, on Ctrl-C, and on a crash
        save()
    return ema.eval(), losses


def timesteps(sample_steps=None):
    """The steps t visited while sampling, T down to 0: all (DDPM) or K + 1 of them (DDIM)."""
    return torch.linspace(T, 0, (sample_steps or T) + 1).round().long()


@torch.no_grad()
def sample(model, n, seed=0, img_size=IMG_SIZE, sample_steps=None, device="cpu"):
    """From x_T ~ N(0, I) to x_0 by DDPM (Algorithm 2), or DDIM with sample_steps = K.
    Returns every level, (levels + 1, n, 3, S, S), on the cpu. The random numbers come from
    torch.Generator().manual_seed(seed) in this order: x_T, then one z per DDPM step."""
    g = torch.Generator().manual_seed(seed)
    beta, alpha_bar = schedule()
    x = torch.randn(n, 3, img_size, img_size, generator=g)
    xs, ts = [x], timesteps(sample_steps)
    for t, s in zip(ts[:-1], ts[1:]):
        eps = model(x.to(device), t.expand(n).to(device)).float().cpu()
        if sample_steps is None:  # ancestral step t -> s = t - 1, eq. 11 (sigma_1 = 0)
            sigma = (beta[t] * (1 - alpha_bar[s]) / (1 - alpha_bar[t])).sqrt()
            z = torch.randn(x.shape, generator=g)
            x = (x - beta[t] / (1 - alpha_bar[t]).sqrt() * eps) / (1 - beta[t]).sqrt() + sigma * z
        else:  # deterministic DDIM step t -> s (Song et al. eq. 12, eta = 0)
            x0 = (x - (1 - alpha_bar[t]).sqrt() * eps) / alpha_bar[t].sqrt()
            x = alpha_bar[s].sqrt() * x0 + (1 - alpha_bar[s]).sqrt() * eps
        xs.append(x)
    return torch.stack(xs)


def to_uint8(x):
    """(n, 3, S, S) in [-1, 1] -> (n, S, S, 3) uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tile(x):
    """(n, 3, S, S) in [-1, 1] -> one (rows * S, cols * S, 3) uint8 picture."""
    n, s = len(x), x.shape[-1]
    cols = math.ceil(math.sqrt(n))
    x = torch.cat([x, torch.ones(-n % cols, 3, s, s)])  # white where the grid has no image
    return to_uint8(x).reshape(-1, cols, s, s, 3).swapaxes(1, 2).reshape(-1, cols * s, 3)


def report(x, target):
    """Pixel statistics of generated against target images, as printed lines and a dict."""
    x = x.clamp(-1, 1)
    w1 = (x.flatten().sort().values - target.flatten().sort().values).abs().mean()
    r = {"target_mean": target.mean().item(), "target_std": target.std().item(),
         "mean": x.mean().item(), "std": x.std().item(), "pixel_w1": w1.item()}
    print(f"target    pixel mean {r['target_mean']:+.3f}  std {r['target_std']:.3f}")
    print(f"generated pixel mean {r['mean']:+.3f}  std {r['std']:.3f}  ({len(x)} images)")
    print(f"W1 between the pixel values of generated and target images {r['pixel_w1']:.4f}")
    return r


def plot(losses, traj, target, ts, sampler, out, show):
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.3), layout="tight")
    for ax, x, title in zip(axes, [target, traj[-1]], ["training images", f"generated: {sampler}"]):
        ax.imshow(tile(x[:GRID]))
        ax.set(title=title, xticks=[], yticks=[])
    fig.savefig(f"{out}/{NAME}_samples.png", dpi=100)

    fig, axes = plt.subplots(1, 10, figsize=(15, 1.9), layout="tight")
    for ax, i in zip(axes, np.linspace(0, len(traj) - 1, 10).round().astype(int)):
        ax.imshow(tile(traj[i, :1]))
        ax.set(title=f"t = {ts[i]}", xticks=[], yticks=[])
    fig.suptitle(f"one sample denoised from x_T (noise) to x_0, {sampler}")
    fig.savefig(f"{out}/{NAME}_denoising.png", dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(losses, lw=0.5)
    ax.set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    fig.savefig(f"{out}/{NAME}_loss.png", dpi=100)
    if show:
        plt.show()
    plt.close("all")


def pick_device(name=None):
    """--device if given, else cuda, then mps, then cpu."""
    mps = torch.backends.mps.is_available()
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.error = lambda message: p.exit(2, f"{p.prog}: error: {message}\n")  # one line, exit 2
    p.add_argument("--steps", type=int, default=STEPS, help="training iterations (in all)")
    p.add_argument("--samples", type=int, default=SAMPLES, help="images to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for figures, samples, checkpoint")
    p.add_argument("--show", action="store_true", help="open the figures")
    p.add_argument("--data", help="train on the images under this folder instead of shapes")
    p.add_argument("--img-size", type=int, default=IMG_SIZE, help="a multiple of 4")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--sample-only", action="store_true", help="sample from the checkpoint")
    p.add_argument("--sample-steps", type=int, help="sample by DDIM with this many steps")
    p.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    args = p.parse_args(argv)
    if min(args.steps, args.samples, args.batch_size, args.img_size) <= 0 or args.seed < 0:
        p.error("--steps, --samples, --batch-size, --img-size must be positive, --seed >= 0")
    if args.img_size % 2 ** (len(CHANNELS) - 1):
        p.error(f"--img-size must be a multiple of {2 ** (len(CHANNELS) - 1)}")
    if args.sample_steps is not None and not 0 < args.sample_steps <= T:
        p.error(f"--sample-steps must be between 1 and T = {T}")
    # the checkpoint to start from, if any
    args.ckpt = f"{args.out}/{NAME}.pt" if args.resume or args.sample_only else None
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
        if args.ckpt and not os.path.exists(args.ckpt):
            p.error(f"no checkpoint {args.ckpt}: train first (without --resume / --sample-only)")
        args.images = load_folder(args.data, args.img_size) if args.data else None
    except OSError as e:
        p.error(f"cannot write to --out {args.out}: {e.strerror}")
    except ValueError as e:  # from load_folder
        p.error(str(e))
    return args


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:  # started by torchrun: one process per GPU (or a share of the CPU)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        sys.stdout = open(os.devnull, "w") if rank else sys.stdout  # only rank 0 prints
        print(f"DDP: {world} processes x batch {args.batch_size} "
              f"= effective batch {world * args.batch_size}")
    print(f"device: {device}")
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True) if args.ckpt else None
    img_size = state["config"]["img_size"] if state else args.img_size
    if args.sample_only:
        model, losses = from_checkpoint(state, device), state["losses"]
    else:
        model, losses = train(args.steps, args.seed, args.images, img_size, args.batch_size,
                              device, None if rank else args.out, state)
    if world > 1:  # the weights agree on every process: each rank logs their sum to compare
        checksum = sum(p.double().sum().item() for p in model.state_dict().values())
        print(f"rank {rank} weights checksum {checksum!r}", file=sys.stderr)
        dist.destroy_process_group()
        if rank:
            return None
    traj = sample(model, args.samples, args.seed, img_size, args.sample_steps, device)
    np.save(f"{args.out}/{NAME}_samples.npy", to_uint8(traj[-1]))
    target = draw(args.samples, torch.Generator().manual_seed(12345), args.images, img_size)
    r = report(traj[-1], target)
    sampler = f"DDIM, {args.sample_steps} steps" if args.sample_steps else f"DDPM, {T} steps"
    plot(losses, traj, target, timesteps(args.sample_steps).tolist(), sampler, args.out, args.show)
    return r


if __name__ == "__main__":
    main()

"""Class-conditional DDPM on images: a small UNet eps_theta(x_t, t, c) learns to remove noise
from coloured shapes (or any image folder), and classifier-free guidance steers it to a class.
Train (Ho et al. 2020, Algorithm 1): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
(eq. 4), loss |eps - eps_theta(x_t, t, c)|^2, the label c dropped to "no class" 10% of the
time (Ho & Salimans 2022). Sample from x_T ~ N(0, I) by T ancestral steps (Algorithm 2) or K
DDIM steps (Song et al. 2021, eq. 12) with eps = (1 + w) eps_theta(x_t, t, c) - w eps_theta(x_t,
t, no class) (Ho & Salimans eq. 6, w = --guidance). Report: k-NN precision and recall (k = 3,
Kynkaanniemi et al. 2019) and the share of samples whose nearest real image has their class,
against held-out real images.   Run (CPU; --data DIR: a subfolder per class; torchrun for DDP):
    python codes/image_ddpm.py --img-size 16 --batch-size 32 --steps 3000 --guidance 3
Writes: outputs/image_ddpm.png, image_ddpm_samples.npy, the checkpoint image_ddpm.pt (--resume)
"""
import argparse
import copy
import math
import os
import sys

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
IMG_SIZE = 32  # pixels a side
SHAPES = ["circle", "square", "triangle"]  # the classes of the generated data
HELD_OUT = 4000  # fresh shapes to score against (a folder keeps every 10th file out instead)
NO_CLASS = -1  # the label of the unconditional model
# noise schedule: linear betas (Ho et al. 2020), scaled by 1000 / T so alpha_bar_T ~ 4e-5
T = 300
BETA_1, BETA_T = 1e-4 * 1000 / T, 0.02 * 1000 / T
# model
CHANNELS = (32, 64)  # UNet widths, one per resolution (each level halves the image)
EMB = 128  # width of the step and class embeddings
# training
STEPS = 4000  # iterations
BATCH = 128  # images per iteration (per process under DDP)
LR = 2e-3  # peak learning rate
WARMUP = 100  # steps of linear warm-up, then a cosine decay to 0
EMA = 0.995  # decay of the weight average used for sampling
P_UNCOND = 0.1  # share of labels dropped to NO_CLASS
SAVE_EVERY = 1000  # steps between checkpoints (also written at the end and on Ctrl-C)
# sampling and report
SAMPLES = 64  # images generated
GUIDANCE = 0.0  # classifier-free guidance weight w
K = 3  # neighbours for the precision/recall balls


def shapes(n, size=IMG_SIZE, generator=None):
    """n images of one shape each on a plain background: (n, 3, size, size) in [-1, 1], and
    their classes (n,): 0 circle, 1 square, 2 triangle."""
    u = lambda *shape: torch.rand(*shape, generator=generator)
    kind = torch.randint(3, (n,), generator=generator)
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
    return 2 * (background + inside * (colour - background)) - 1, kind


def load_folder(folder, size):
    """The images under folder, RGB, centre-cropped and resized: (N, 3, S, S) in [-1, 1], labels
    (N,) and class names. As torchvision's ImageFolder, each subfolder is a class (none: one)."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    roots = [os.path.join(folder, c) for c in classes] or [folder]  # with no subfolder, one class
    files = [(os.path.join(d, f), label) for label, root in enumerate(roots)
             for d, _, names in sorted(os.walk(root)) for f in sorted(names)]
    images, labels, bad = [], [], []
    for path, label in tqdm(files, desc=f"loading {folder}", unit="file"):
        try:  # centre crop, resize
            images.append(np.asarray(ImageOps.fit(Image.open(path).convert("RGB"), (size, size))))
            labels.append(label)
        except Exception:  # not an image, or one that PIL cannot decode
            bad.append(path)
    if not images:
        raise ValueError("no readable image there")
    if bad:
        print(f"warning: skipped {len(bad)} unreadable file(s), e.g. {bad[0]}", file=sys.stderr)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, torch.tensor(labels), classes or [os.path.basename(os.path.abspath(folder))]


def schedule():
    """beta_t, alpha_bar_t for t = 0..T (index = t; beta_0 = 0, alpha_bar_0 = 1)."""
    beta = torch.cat([torch.zeros(1), torch.linspace(BETA_1, BETA_T, T, dtype=torch.float64)])
    return beta.float(), torch.cumprod(1 - beta, 0).float()


class Block(nn.Module):
    """Two 3x3 convolutions, the step and class embedding added between them, a 1x1 skip."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, c_out), nn.GroupNorm(8, c_out)
        self.emb, self.skip = nn.Linear(EMB, c_out), nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = F.silu(self.norm1(self.conv1(x))) + self.emb(emb)[:, :, None, None]
        return F.silu(self.norm2(self.conv2(h))) + self.skip(x)


class UNet(nn.Module):
    """eps_theta(x_t, t, c): x_t (n, 3, S, S), steps t (n,) in 1..T and labels c (n,) in
    0..classes-1 or NO_CLASS -> eps (n, 3, S, S). Down blocks halve the image, up blocks
    double it and take the matching down output."""

    def __init__(self, c=CHANNELS, classes=len(SHAPES)):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(EMB, EMB), nn.SiLU(), nn.Linear(EMB, EMB))
        self.label_emb = nn.Embedding(classes + 1, EMB)  # row 0: NO_CLASS
        self.conv_in = nn.Conv2d(3, c[0], 3, padding=1)
        self.conv_out = nn.Conv2d(c[0], 3, 3, padding=1)
        self.downs = nn.ModuleList(Block(c[max(i - 1, 0)], c[i]) for i in range(len(c)))
        self.mid = Block(c[-1], c[-1])
        self.ups = nn.ModuleList(Block(2 * c[i], c[max(i - 1, 0)]) for i in reversed(range(len(c))))

    def forward(self, x, t, c):
        freq = torch.exp(-math.log(10000) * torch.arange(EMB // 2, device=t.device) / (EMB // 2))
        angle = t[:, None] * freq  # the step's sinusoidal embedding (Vaswani et al. 2017)
        emb = self.time_mlp(torch.cat([angle.sin(), angle.cos()], 1)) + self.label_emb(c - NO_CLASS)
        skips = [self.downs[0](self.conv_in(x), emb)]
        for down in self.downs[1:]:  # each on the halved output of the one before
            skips.append(down(F.avg_pool2d(skips[-1], 2), emb))
        h = self.mid(skips[-1], emb)
        for up, skip in zip(self.ups, reversed(skips)):  # nearest upsampling to the skip's size
            h = up(torch.cat([F.interpolate(h, size=skip.shape[-2:]), skip], 1), emb)
        return self.conv_out(h)


def train(steps=STEPS, seed=0, images=None, labels=None, classes=SHAPES, img_size=IMG_SIZE,
          batch=BATCH, device="cpu", out=None, state=None):
    """Fit eps_theta (Algorithm 1) on images (N, 3, S, S) with labels (N,), or on fresh shapes
    (images None); returns (EMA model, losses). out: folder for the checkpoint (written every
    SAVE_EVERY steps, at the end, on Ctrl-C and on a crash); state: a checkpoint to continue
    from, up to `steps`.
    Under torchrun, DDP averages the gradients of all processes, each on its share of images."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if images is not None:  # under DDP, each process draws from its own share of the images
        images, labels = images[rank::world], labels[rank::world]
    torch.manual_seed(seed)
    model = UNet(CHANNELS, len(classes)).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    warmup_cosine = lambda s: min(1, (s + 1) / WARMUP) * (1 + math.cos(math.pi * s / steps)) / 2
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)  # lr = LR x warmup_cosine(step)
    parts = dict(model=model, ema=ema, opt=opt, sched=sched)
    for key, part in parts.items() if state else []:
        part.load_state_dict(state[key])
    losses = list(state["losses"]) if state else []
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    alpha_bar = schedule()[1].to(device).view(-1, 1, 1, 1)  # (T + 1, 1, 1, 1), to scale images

    def save():  # to out (if any): write, then rename, so no crash leaves half a checkpoint
        if out:
            config = dict(img_size=img_size, channels=list(CHANNELS), T=T, batch=batch, seed=seed)
            rest = dict(losses=losses, config=config, step=len(losses), classes=list(classes))
            torch.save({k: v.state_dict() for k, v in parts.items()} | rest, f"{out}/{NAME}.tmp")
            os.replace(f"{out}/{NAME}.tmp", f"{out}/{NAME}.pt")

    try:  # the bar counts images: its rate is images/s
        for step in tqdm(range(len(losses), steps), initial=len(losses), total=steps,
                         desc="training", unit="img", unit_scale=batch * world, disable=rank > 0):
            # this step's random numbers from (seed, step, rank) alone: a resumed run draws what
            # an uninterrupted one would (SeedSequence pads with zeros: rank 0 = one process)
            entropy = np.random.SeedSequence([seed, step, rank]).generate_state(1).item()
            g = torch.Generator().manual_seed(entropy)
            i = None if images is None else torch.randint(len(images), (batch,), generator=g)
            x0, c = shapes(batch, img_size, g) if images is None else (images[i], labels[i])
            t = torch.randint(1, T + 1, (batch,), generator=g).to(device)
            eps = torch.randn(x0.shape, generator=g).to(device)
            # label dropout: to NO_CLASS with probability P_UNCOND
            c = torch.where(torch.rand(batch, generator=g) < P_UNCOND, NO_CLASS, c).to(device)
            xt = alpha_bar[t].sqrt() * x0.to(device) + (1 - alpha_bar[t]).sqrt() * eps  # eq. 4
            with torch.autocast("cuda", torch.bfloat16, enabled=xt.is_cuda):  # bf16 on cuda only
                loss = F.mse_loss(net(xt, t, c).float(), eps)  # Algorithm 1, line 5
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for e, p in zip(ema.parameters(), model.parameters()):  # EMA, with a short warm-up
                e.lerp_(p.detach(), 1 - min(EMA, (1 + step) / (10 + step)))
            losses.append(loss.item())
            if len(losses) % SAVE_EVERY == 0:  # a hard kill loses at most SAVE_EVERY steps
                save()
    finally:  # at the end, on Ctrl-C (continue with --resume) and on a crash
        save()
    return ema.eval(), losses


def timesteps(sample_steps=None):
    """The steps t visited while sampling, T down to 0: all (DDPM) or K + 1 of them (DDIM)."""
    return torch.linspace(T, 0, (sample_steps or T) + 1).round().long()


def guided_eps(model, x, t, c, guidance):
    """Classifier-free guidance (Ho & Salimans eq. 6): (1 + w) eps(x, c) - w eps(x, NO_CLASS)."""
    if not guidance:
        return model(x, t, c)
    no_class = torch.full_like(c, NO_CLASS)
    eps_c, eps_u = model(x.repeat(2, 1, 1, 1), t.repeat(2), torch.cat([c, no_class])).chunk(2)
    return (1 + guidance) * eps_c - guidance * eps_u


@torch.no_grad()
def sample(model, n, seed=0, img_size=IMG_SIZE, sample_steps=None, device="cpu", labels=None,
           guidance=GUIDANCE):
    """From x_T ~ N(0, I) to x_0 by DDPM (Algorithm 2), or DDIM with sample_steps = K, for the
    classes labels (n,) (None: NO_CLASS). Returns every level, (levels + 1, n, 3, S, S), on the
    cpu. Random numbers: torch.Generator().manual_seed(seed), x_T then one z per DDPM step."""
    g, (beta, alpha_bar) = torch.Generator().manual_seed(seed), schedule()
    c = (torch.full((n,), NO_CLASS) if labels is None else labels).to(device)
    x = torch.randn(n, 3, img_size, img_size, generator=g)
    xs, ts = [x], timesteps(sample_steps)
    for t, s in zip(ts[:-1], ts[1:]):
        eps = guided_eps(model, x.to(device), t.expand(n).to(device), c, guidance).float().cpu()
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


def tile(x, rows=None, gap=1):
    """(n, 3, S, S) in [-1, 1] -> one uint8 picture, a white gap between the tiles: one row
    per distinct value of rows (n,), e.g. the class, or a square grid when rows is None."""
    rows = torch.arange(len(x)) // math.ceil(len(x) ** 0.5) if rows is None else rows
    groups = [x[rows == r] for r in rows.unique()]
    cols = max(map(len, groups))
    x = torch.cat([torch.cat([g, torch.ones(cols - len(g), *x.shape[1:])]) for g in groups])
    x, s = F.pad(x, (0, gap, 0, gap), value=1), x.shape[-1] + gap  # gap right of and below each
    picture = to_uint8(x).reshape(-1, cols, s, s, 3).swapaxes(1, 2).reshape(-1, cols * s, 3)
    return picture[:-gap, :-gap]


def precision_recall(real, fake, k=K):
    """k-NN precision: the share of fake images inside the ball around some real image that
    reaches its k-th nearest real neighbour; recall: the same with the roles swapped
    (Kynkaanniemi et al. 2019)."""
    real, fake = real.flatten(1), fake.flatten(1)
    radius = lambda x: torch.cdist(x, x).kthvalue(min(k, len(x) - 1) + 1, 1).values  # 1st: itself
    d = torch.cdist(fake, real)
    precision, recall = (d <= radius(real)).any(1), (d <= radius(fake)[:, None]).any(0)
    return precision.float().mean().item(), recall.float().mean().item()


def report(x, labels, real, real_labels, classes):
    """Generated images x (n, 3, S, S) of classes labels (n,) against held-out real ones."""
    x = x.clamp(-1, 1)
    precision, recall = precision_recall(real, x)
    # 1-NN: does the nearest real image have the requested class?
    match = (real_labels[torch.cdist(x.flatten(1), real.flatten(1)).argmin(1)] == labels).float()
    r = dict(precision=precision, recall=recall, label_match=match.mean().item(),
             by_class={classes[i]: match[labels == i].mean().item() for i in labels.unique()})
    print(f"generated {len(x)} images against {len(real)} held-out real: precision {precision:.3f}"
          f"  recall {recall:.3f}  label match {r['label_match']:.3f}")
    return r


def plot(losses, x, labels, real, real_labels, classes, title, out, show):
    """The loss, held-out real images and generated ones x, a row per class."""
    shown = labels.unique()  # the classes generated: a row each (one class: a square grid)
    names = [classes[c] for c in shown] if len(shown) > 1 else []  # the rows' labels
    keep = torch.cat([(real_labels == c).nonzero()[:(labels == c).sum(), 0] for c in shown])
    grids = [tile(real[keep], real_labels[keep] if names else None),  # as many of each class
             tile(x, labels if names else None)]
    wide = grids[1].shape[1] > 2 * grids[1].shape[0]  # long rows: the panels one above the other
    fig, axes = plt.subplots(*(3, 1) if wide else (1, 3), figsize=(12, 6.5) if wide else (15, 5),
                             layout="constrained", height_ratios=[2, 3, 3] if wide else None)
    axes[0].plot(losses, lw=0.5)
    axes[0].set(title="training loss", xlabel="step", ylabel="MSE on eps", yscale="log")
    for ax, grid, text in zip(axes[1:], grids, ["held-out real images", title]):
        ax.imshow(grid)
        ax.set(title=text, xticks=[], yticks=(x.shape[-1] + 1) * (np.arange(len(names)) + 0.5),
               yticklabels=names)
    fig.savefig(f"{out}/{NAME}.png", dpi=100)
    if show:
        plt.show()
    plt.close("all")


def load_checkpoint(path, p):
    """The checkpoint at path and its EMA network; a missing or bad file ends in one error line
    and exit code 2 (p: the caller's ArgumentParser)."""
    try:  # missing, corrupt, truncated, or not written by this script
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = UNet(state["config"]["channels"], len(state["classes"]))
        model.load_state_dict(state["ema"])
    except Exception as e:
        p.exit(2, f"{p.prog}: error: no usable {path} ({e!r:.100}): run codes/{NAME}.py first\n")
    return state, model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training iterations, in all")
    p.add_argument("--samples", type=int, default=SAMPLES, help="images to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for figure, samples, checkpoint")
    p.add_argument("--show", action="store_true", help="open the figure")
    p.add_argument("--data", help="image folder, a subfolder per class (default: shapes)")
    p.add_argument("--img-size", type=int, default=IMG_SIZE, help="pixels a side")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--guidance", type=float, default=GUIDANCE, help="guidance weight w >= 0")
    p.add_argument("--label", help="this class only (default: a grid row per class)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--sample-only", action="store_true", help="sample from the checkpoint")
    p.add_argument("--sample-steps", type=int, help="sample by DDIM with this many steps")
    args = p.parse_args(argv)
    smallest = 2 ** (len(CHANNELS) - 1)  # an image the UNet can halve len(CHANNELS) - 1 times
    if min(args.steps, args.samples, args.batch_size, args.seed + 1) < 1 or args.guidance < 0 \
            or args.img_size < smallest or not 0 < (args.sample_steps or T) <= T:
        p.error(f"--steps, --samples, --batch-size must be positive, --img-size >= {smallest}, "
                f"--sample-steps in 1..{T}, --seed and --guidance >= 0")
    try:  # fail now, not after training
        os.makedirs(args.out, exist_ok=True)
        if not os.access(args.out, os.W_OK):  # a folder that exists but takes no files
            raise PermissionError(f"{args.out} is not writable")
        images, labels, classes = load_folder(args.data, args.img_size) if args.data else \
            (*shapes(HELD_OUT, args.img_size, torch.Generator().manual_seed(12345)), SHAPES)
    except (OSError, ValueError) as e:
        p.error(f"--data {args.data}, " * bool(args.data) + f"--out {args.out}: {e}")
    held = torch.arange(len(images)) % (10 if args.data else 1) == 0  # every 10th file, or all
    real, real_labels = images[held], labels[held]
    images, labels = (images[~held], labels[~held]) if args.data else (None, None)
    path, state, model = f"{args.out}/{NAME}.pt", None, None
    if args.resume or args.sample_only:
        state, model = load_checkpoint(path, p)
        was = [state["classes"], state["config"]["img_size"], state["config"]["channels"]]
        if was != [classes, args.img_size, list(CHANNELS)]:
            p.exit(2, f"{p.prog}: error: {path} is for [classes, --img-size, channels] {was}\n")
    if args.label is not None and args.label not in classes:
        p.error(f"--label {args.label}: not one of {', '.join(classes)}")
    mps = torch.backends.mps.is_available()  # the device: cuda, then mps, then cpu
    device = torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:  # started by torchrun: one process per GPU (or a share of the CPU)
        if device.type == "cuda":  # "cuda" is then this process's GPU
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        sys.stdout = open(os.devnull, "w") if rank else sys.stdout  # only rank 0 prints
    print(f"device: {device}" + f", DDP: {world} processes x batch {args.batch_size}" * (world > 1))
    model, losses = (model.to(device), state["losses"]) if args.sample_only else train(
        args.steps, args.seed, images, labels, classes, args.img_size, args.batch_size, device,
        None if rank else args.out, state)
    if world > 1:  # DDP kept the weights equal on every process; rank 0 samples
        dist.destroy_process_group()
        if rank:
            return None
    blocks = torch.arange(args.samples) * len(classes) // args.samples  # equal blocks, a class each
    wanted = torch.full_like(blocks, classes.index(args.label)) if args.label else blocks
    x = sample(model, len(wanted), args.seed, args.img_size, args.sample_steps, device, wanted,
               args.guidance)[-1]
    np.save(f"{args.out}/{NAME}_samples.npy", to_uint8(x))
    r = report(x, wanted, real, real_labels, classes)
    sampler = f"DDIM, {args.sample_steps} steps" if args.sample_steps else f"DDPM, {T} steps"
    plot(losses, x, wanted, real, real_labels, classes,
         f"generated: {sampler}, guidance w = {args.guidance:g}", args.out, args.show)
    print(f"wrote {args.out}/{NAME}.png, {args.out}/{NAME}_samples.npy, {path}")
    return r


if __name__ == "__main__":
    main()

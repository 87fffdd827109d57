"""GIF of image_ddpm.py's sampler: a grid of images turning from noise into shapes.

Loads the checkpoint image_ddpm.py wrote (its EMA weights), runs DDPM ancestral sampling
(Ho et al. 2020, Algorithm 2) on a grid of --samples images and keeps FRAMES of the T + 1
levels, closer together near t = 0, where the pictures take shape.

Run:    python codes/image_ddpm.py && python codes/image_ddpm_video.py
Writes: outputs/image_ddpm.gif (reads outputs/image_ddpm.pt, or --ckpt PATH)
"""
import argparse
import os
import sys
import tempfile

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_ddpm as ddpm  # noqa: E402

FRAMES = 40  # levels shown, out of T + 1
HOLD = 12  # extra copies of the last frame, so the result stays a moment
FPS = 12
SAMPLES = 16  # images in the grid


def frame_levels(levels, frames=FRAMES):
    """Indices 0..levels, spaced by a square root: dense near the end (t = 0)."""
    return np.unique((levels * np.linspace(0, 1, frames) ** 0.5).round().astype(int))


def render(traj, ts):
    """One RGB frame per chosen level, the grid drawn on fixed axes."""
    fig, ax = plt.subplots(figsize=(3.2, 3.45))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.91)
    ax.axis("off")
    picture = ax.imshow(ddpm.tile(traj[0]))
    frames = []
    for i in frame_levels(len(traj) - 1):
        picture.set_data(ddpm.tile(traj[i]))
        ax.set_title(f"DDPM sampling: x_t at t = {ts[i]}")
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return frames + [frames[-1]] * HOLD


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.error = lambda message: p.exit(2, f"{p.prog}: error: {message}\n")  # one line, exit 2
    p.add_argument("--samples", type=int, default=SAMPLES, help="images in the grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder with image_ddpm.pt; gets the GIF")
    p.add_argument("--show", action="store_true", help="open the last frame")
    p.add_argument("--ckpt", help="checkpoint to load (default: --out/image_ddpm.pt)")
    args = p.parse_args(argv)
    if args.samples <= 0 or args.seed < 0:
        p.error("--samples must be positive and --seed >= 0")
    try:  # fail now, not after sampling
        os.makedirs(args.out, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        p.error(f"cannot write to --out {args.out}: {e.strerror}")
    args.ckpt = args.ckpt or f"{args.out}/{ddpm.NAME}.pt"
    if not os.path.isfile(args.ckpt):
        p.error(f"no checkpoint {args.ckpt}: run codes/image_ddpm.py first (same --out)")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = ddpm.pick_device()
    print(f"device: {device}")
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    model = ddpm.from_checkpoint(state, device)
    traj = ddpm.sample(model, args.samples, args.seed, state["config"]["img_size"], device=device)
    frames = render(traj, ddpm.timesteps().tolist())
    gif = f"{args.out}/{ddpm.NAME}.gif"
    iio.imwrite(gif, np.stack(frames), duration=1000 / FPS, loop=0)
    print(f"wrote {gif}: {len(frames)} frames drawn, {os.path.getsize(gif) / 1e6:.2f} MB")
    if args.show:
        plt.show()
    plt.close("all")
    return {"gif": gif, "frames": len(frames)}


if __name__ == "__main__":
    main()

"""GIF of image_ddpm.py's sampler: a grid of images, one row per class, turning from noise
into shapes (or the classes of an image folder), with classifier-free guidance --guidance w.

Loads the checkpoint image_ddpm.py wrote (its EMA weights), samples by DDPM (Ho et al. 2020,
Algorithm 2) or --sample-steps K DDIM steps, and keeps FRAMES of the levels, closer together
near t = 0, where the pictures take shape.

Run:    python codes/image_ddpm.py && python codes/image_ddpm_video.py --guidance 3
Writes: outputs/image_ddpm.gif (reads outputs/image_ddpm.pt, or --ckpt PATH)
"""
import argparse
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_ddpm as ddpm  # noqa: E402

FRAMES = 30  # levels shown
HOLD = 12  # extra copies of the last frame, so the result stays a moment
FPS = 12
PER_CLASS = 6  # images in each row of the grid


def frame_levels(levels, frames=FRAMES):
    """Indices 0..levels, spaced by a square root: dense near the end (t = 0)."""
    return np.unique((levels * np.linspace(0, 1, frames) ** 0.5).round().astype(int))


def render(traj, ts, rows, names, title):
    """One RGB frame per chosen level, the grid drawn on fixed axes, a row per name."""
    first = ddpm.tile(traj[0], rows)
    fig, ax = plt.subplots(figsize=(1 + 2.6 * first.shape[1] / first.shape[0], 3))
    fig.subplots_adjust(left=0.15 * 3 / fig.get_figwidth(), right=0.98, bottom=0.02, top=0.86)
    ax.set(xticks=[], yticks=(traj.shape[-1] + 1) * (np.arange(len(names)) + 0.5),
           yticklabels=names)
    picture = ax.imshow(first)
    frames = []
    for i in frame_levels(len(traj) - 1):
        picture.set_data(ddpm.tile(traj[i], rows))
        ax.set_title(f"{title}\nx_t at t = {ts[i]}", fontsize=8)
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return frames + [frames[-1]] * HOLD


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=PER_CLASS, help="images per class (a row each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder with image_ddpm.pt; gets the GIF")
    p.add_argument("--show", action="store_true", help="open the last frame")
    p.add_argument("--ckpt", help="checkpoint to load (default: --out/image_ddpm.pt)")
    p.add_argument("--guidance", type=float, default=ddpm.GUIDANCE, help="guidance weight w >= 0")
    p.add_argument("--label", help="this class only (default: a row per class)")
    p.add_argument("--sample-steps", type=int, help="sample by DDIM with this many steps")
    args = p.parse_args(argv)
    try:  # fail now, not after sampling
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out {args.out}: {e.strerror}")
    if min(args.samples, args.guidance + 1) < 1 or not 0 < (args.sample_steps or 1) <= ddpm.T \
            or not os.access(args.out, os.W_OK):
        p.error(f"--samples > 0, --guidance >= 0, --sample-steps 1..{ddpm.T}, --out writable")
    state, model = ddpm.load_checkpoint(args.ckpt or f"{args.out}/{ddpm.NAME}.pt", p)
    classes = state["classes"]
    if args.label is not None and args.label not in classes:
        p.error(f"--label {args.label}: not one of {', '.join(classes)}")
    mps = torch.backends.mps.is_available()  # the device: cuda, then mps, then cpu
    device = torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    print(f"device: {device}")
    picked = [classes.index(args.label)] if args.label else range(len(classes))
    labels = torch.tensor(picked).repeat_interleave(args.samples)
    traj = ddpm.sample(model.to(device), len(labels), args.seed, state["config"]["img_size"],
                       args.sample_steps, device, labels, args.guidance)
    sampler = f"DDIM, {args.sample_steps} steps" if args.sample_steps else f"DDPM, {ddpm.T} steps"
    frames = render(traj, ddpm.timesteps(args.sample_steps).tolist(), labels,
                    [classes[i] for i in picked], f"{sampler}, guidance w = {args.guidance:g}")
    gif = f"{args.out}/{ddpm.NAME}.gif"
    iio.imwrite(gif, np.stack(frames), duration=1000 / FPS, loop=0)
    print(f"wrote {gif}: {len(frames)} frames, {os.path.getsize(gif) / 1e6:.2f} MB")
    if args.show:
        plt.show()
    plt.close("all")
    return {"gif": gif, "frames": len(frames)}


if __name__ == "__main__":
    main()

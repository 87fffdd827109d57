"""GIF of simple_multimodal, out and back: the four spikes noised level by level into a
Gaussian, then the trained model walking fresh noise back down into the spikes.

Out: x_i = y + sigma_i * eps for one fixed eps per sample, sigma_i climbing the ladder.
Back: the walk of simple_multimodal.sample (imported, not copied) from N(0, sigma_0^2 I).
Points are drawn scaled, x / sqrt(1 + sigma_i^2) (unit size at every level), so the axes
stay fixed; colours mark the spike each sample comes from (out) or ends in (back).

Run:    python codes/simple_multimodal_video.py
Writes: outputs/simple_multimodal.gif
"""
import argparse
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simple_multimodal import (CENTERS, LEVELS, SAMPLES, STEPS, nearest,  # noqa: E402
                               noise_ladder, sample, target_sample, train)

FRAMES = 26  # frames each way
HOLD = 8  # extra copies of the turning frames, so the loop pauses on data and on noise
LIM = 3.0  # fixed axes, in units of x / sqrt(1 + sigma^2)


def frames(out, back):
    """RGB images for the out path then the back path; out, back: (LEVELS + 1, n, 2),
    both indexed by level (index 0 = sigma_0, the noisiest)."""
    sigma = noise_ladder().numpy()
    colours = [np.array([f"C{k}" for k in nearest(torch.from_numpy(x)).indices])
               for x in (out[-1], back[-1])]  # by spike of origin (out) and of arrival (back)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    dots = ax.scatter(*out[-1].T, s=3, alpha=0.5, c=colours[0])
    ax.plot(*CENTERS.numpy().T, "k+", ms=12)
    ax.set(xlabel="x1 / sqrt(1 + sigma^2)", ylabel="x2 / sqrt(1 + sigma^2)", aspect="equal",
           xlim=(-LIM, LIM), ylim=(-LIM, LIM), title="two-line title\nleaves room")
    fig.tight_layout()
    images = []
    levels = np.linspace(LEVELS, 0, FRAMES).round().astype(int)  # data -> noise
    for traj, c, order, what in [(out, colours[0], levels, "out: noising the data"),
                                 (back, colours[1], levels[::-1], "back: denoising, model")]:
        dots.set_color(c)
        for i in order:
            dots.set_offsets(traj[i] / np.sqrt(1 + sigma[i] ** 2))
            ax.set_title(f"{what}\nlevel {i}, sigma = {sigma[i]:.3g}", fontsize=10)
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        images += [images[-1]] * HOLD  # pause on the noise, then on the data
    plt.close(fig)
    return images


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to draw")
    p.add_argument("--seed", type=int, default=0, help="seed of training and sampling")
    p.add_argument("--out", default="outputs", help="folder for the GIF")
    args = p.parse_args(argv)
    if min(args.steps, args.samples) < 1:
        p.error("--steps and --samples must be positive")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        p.error(f"cannot write to --out: {e}")
    model, _ = train(args.steps, args.seed)
    back = sample(model, args.samples, args.seed).numpy()
    y, eps = target_sample(args.samples), torch.randn(args.samples, 2)  # seeded by train()
    out = (y + noise_ladder()[:, None, None] * eps).numpy()  # x_i = y + sigma_i eps
    images = frames(out, back)
    path = f"{args.out}/simple_multimodal.gif"
    iio.imwrite(path, images, duration=80, loop=0)
    print(f"wrote {path}: {len(images)} frames drawn, {os.path.getsize(path) / 1e6:.2f} MB")
    return {"gif": path, "frames": len(images)}


if __name__ == "__main__":
    main()

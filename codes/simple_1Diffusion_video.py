"""GIF of simple_1Diffusion: samples walking from pure noise into the spike at MU = 1.

Trains the denoiser of simple_1Diffusion.py (imported, not copied), samples with it and
draws FRAMES frames spread over the levels: each sample's value against its index, with a
histogram of the current values beside it. The values are drawn scaled,
x / sqrt(1 + sigma_i^2) (unit size at every level), so the axes stay fixed while
sigma falls from SIGMA_MAX to 0.

Run:    python codes/simple_1Diffusion_video.py
Writes: outputs/simple_1Diffusion.gif
"""
import argparse
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simple_1Diffusion import LEVELS, MU, SAMPLES, STEPS, noise_ladder, sample, train  # noqa: E402

FRAMES = 48  # frames spread evenly over the levels
HOLD = 12  # extra copies of the last frame, so the loop pauses on the result
YLIM = (-4, 4)  # fixed value axis, in units of x / sqrt(1 + sigma^2)


def frames(traj):
    """One RGB image per drawn level; traj: (LEVELS + 1, n, 1)."""
    sigma, n = noise_ladder().numpy(), traj.shape[1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True,
                               gridspec_kw={"width_ratios": (3, 1)})
    dots = a.scatter(np.arange(n), traj[0, :, 0], s=2, alpha=0.5)
    target = a.axhline(MU, c="k", ls="--", lw=0.8, label="target mean, scaled")
    a.set(xlabel="sample index", ylabel="x / sqrt(1 + sigma^2)", ylim=YLIM)
    a.legend(loc="lower right", fontsize=8)
    edges = np.linspace(*YLIM, 81)
    bars = b.barh(edges[:-1], np.ones(80), height=np.diff(edges), align="edge")
    b.set(title="histogram", xlabel="count", xscale="log", xlim=(0.8, n))
    fig.tight_layout()
    images = []
    for i in np.linspace(0, LEVELS, FRAMES).round().astype(int):
        x = traj[i, :, 0] / np.sqrt(1 + sigma[i] ** 2)  # unit size at every level
        dots.set_offsets(np.c_[np.arange(n), x])
        target.set_ydata([MU / np.sqrt(1 + sigma[i] ** 2)] * 2)
        for bar, count in zip(bars, np.histogram(x, edges)[0]):
            bar.set_width(count)
        a.set_title(f"level {i}, sigma = {sigma[i]:.3g}: mean {traj[i, :, 0].mean():.3f}, "
                    f"std {traj[i, :, 0].std():.3g}")
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return images + [images[-1]] * HOLD


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
    images = frames(sample(model, args.samples, args.seed).numpy())
    path = f"{args.out}/simple_1Diffusion.gif"
    iio.imwrite(path, images, duration=80, loop=0)
    print(f"wrote {path}: {len(images)} frames drawn, {os.path.getsize(path) / 1e6:.2f} MB")
    return {"gif": path, "frames": len(images)}


if __name__ == "__main__":
    main()

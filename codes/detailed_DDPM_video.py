"""GIF of detailed_DDPM: the reverse-process histogram against the exact pdf of q(x_t), level by
level from N(0, 1) to the data N(1, 0.01^2), on fixed axes: the whole line and a zoom on the data.

Run:    python codes/detailed_DDPM_video.py  (flags: --steps --samples --seed --out)
Writes: outputs/detailed_DDPM.gif
"""
import argparse
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detailed_DDPM import MU, SAMPLES, STD, STEPS, T, marginal, sample, train  # noqa: E402

FRAME_LEVELS = np.linspace(T, 0, 41).round().astype(int)  # levels drawn, t = T down to 0
HOLD = 12  # extra copies of the last frame, so the loop pauses on the result
# fixed axes (x range, density range): the whole line, and a zoom on the data
VIEWS = (((-4, 4), (0, 1.5)), ((MU - 5 * STD, MU + 5 * STD), (0, 1.2 / (STD * np.sqrt(2 * np.pi)))))


def frames(traj):
    """One RGB image per level in FRAME_LEVELS; traj: (T + 1, n, 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    images = []
    for t in FRAME_LEVELS:
        mean, std = map(float, marginal(t))
        for ax, ((lo, hi), ylim) in zip(axes, VIEWS):
            x = np.linspace(lo, hi, 2000)
            ax.cla()
            ax.hist(traj[T - t, :, 0], bins=60, range=(lo, hi), density=True, alpha=0.6,
                    label="reverse process")
            ax.plot(x, np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)), "k",
                    label="exact q(x_t)")
            ax.set(xlabel="x_t", ylabel="density", xlim=(lo, hi), ylim=ylim)
        axes[0].set_title(f"t = {t}: q(x_t) has mean {mean:.3f}, std {std:.3g}")
        axes[1].set_title("zoom on the data N(1, 0.01^2)")
        axes[0].legend(loc="upper left", fontsize=8)
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return images + [images[-1]] * HOLD


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="training steps")
    p.add_argument("--samples", type=int, default=SAMPLES, help="samples to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs", help="folder for the GIF")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    images = frames(sample(train(args.steps, args.seed)[0], args.samples, args.seed).numpy())
    iio.imwrite(f"{args.out}/detailed_DDPM.gif", images, duration=80, loop=0)
    print(f"wrote {args.out}/detailed_DDPM.gif")


if __name__ == "__main__":
    main()

"""GIF of detailed_DDPM: the exact pdf of q(x_t) and the reverse-process histogram moving
level by level from N(0, 1) to the data N(1, 0.01^2).

Trains the network of detailed_DDPM.py (imported, not copied), runs Algorithm 2 with it
and draws one frame per drawn level: on the left at a fixed scale [-4, 4], on the right
zoomed on the data [0.95, 1.05], both with the exact pdf of q(x_t) as a curve.

Run:    python codes/detailed_DDPM_video.py
Writes: outputs/detailed_DDPM.gif
"""
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detailed_DDPM import MU, S, T, marginal, parse_args, sample, train  # noqa: E402

FRAME_LEVELS = np.linspace(T, 0, 41).round().astype(int)  # levels drawn, t = T down to 0
HOLD = 12  # extra copies of the last frame, so the loop pauses on the result
# fixed axes, (x range, density range): the whole line (the final spike runs off the
# top), and a zoom on the data
VIEWS = (((-4, 4), (0, 1.5)), ((MU - 5 * S, MU + 5 * S), (0, 1.2 / (S * np.sqrt(2 * np.pi)))))


def frames(traj):
    """One RGB image per drawn level; traj: (T + 1, n, 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    images = []
    for t in FRAME_LEVELS:
        mean, std = marginal(t)
        for ax, ((lo, hi), ylim) in zip(axes, VIEWS):
            grid = np.linspace(lo, hi, 2000)
            pdf = np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
            ax.cla()
            ax.hist(traj[T - t, :, 0], bins=60, range=(lo, hi), density=True, alpha=0.6,
                    label="reverse process")
            ax.plot(grid, pdf, "k", label="exact q(x_t)")
            ax.set(xlabel="x_t", ylabel="density", xlim=(lo, hi), ylim=ylim)
        axes[0].set_title(f"t = {t}: mean {mean:.3f}, std {std:.3g}")
        axes[1].set_title("zoom on the data N(1, 0.01^2)")
        axes[0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return images + [images[-1]] * HOLD


def main(argv=None):
    args = parse_args(argv)
    model, _ = train(args.steps, args.seed)
    images = frames(sample(model, args.samples, args.seed).numpy())
    path = f"{args.out}/detailed_DDPM.gif"
    iio.imwrite(path, images, duration=80, loop=0)
    print(f"wrote {path}: {len(images)} frames drawn, {os.path.getsize(path) / 1e6:.2f} MB")
    return {"gif": path, "frames": len(images)}


if __name__ == "__main__":
    main()

"""GIF of multimodal_DDPM: the reverse process splitting N(0, I) noise into four spikes, level by
level, with the spikes scaled to each level, sqrt(alpha_bar_t) c, on fixed axes.

Run:    python codes/multimodal_DDPM_video.py  (flags: --steps --samples --seed --out)
Writes: outputs/multimodal_DDPM.gif
"""
import argparse
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from multimodal_DDPM import CENTERS, SAMPLES, STEPS, T, sample, schedule, train  # noqa: E402

FRAME_LEVELS = np.linspace(T, 0, 41).round().astype(int)  # levels drawn, t = T down to 0
HOLD = 12  # extra copies of the last frame, so the loop pauses on the result
LIM = 3  # fixed axes, [-LIM, LIM]^2


def frames(traj):
    """One RGB image per level in FRAME_LEVELS; traj: (T + 1, n, 2)."""
    alpha_bar = schedule()[1].numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    images = []
    for t in FRAME_LEVELS:
        ax.cla()
        ax.scatter(*traj[T - t, :1000].T, s=3, alpha=0.5)
        ax.plot(*(np.sqrt(alpha_bar[t]) * CENTERS.numpy()).T, "k+", ms=12)
        ax.set(title=f"reverse process, t = {t}", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(-LIM, LIM), ylim=(-LIM, LIM))
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
    iio.imwrite(f"{args.out}/multimodal_DDPM.gif", images, duration=80, loop=0)
    print(f"wrote {args.out}/multimodal_DDPM.gif")


if __name__ == "__main__":
    main()

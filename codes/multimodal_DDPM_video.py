"""GIF of multimodal_DDPM: the reverse process splitting N(0, I) noise into four spikes.

Trains the network of multimodal_DDPM.py (imported, not copied), runs Algorithm 2 with
it and draws one frame per FRAME_LEVELS level: the samples at level t with the spikes
scaled to that level, sqrt(alpha_bar_t) c, on fixed axes.

Run:    python codes/multimodal_DDPM_video.py
Writes: outputs/multimodal_DDPM.gif
"""
import os
import sys

import imageio.v3 as iio
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from multimodal_DDPM import CENTERS, T, parse_args, sample, schedule, train  # noqa: E402

FRAME_LEVELS = np.linspace(T, 0, 41).round().astype(int)  # levels drawn, t = T down to 0
HOLD = 12  # extra copies of the last frame, so the loop pauses on the result
LIM = 3  # fixed axes, [-LIM, LIM]^2


def frames(traj):
    """One RGB image per drawn level; traj: (T + 1, n, 2)."""
    alpha_bar = schedule()[1].numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    images = []
    for t in FRAME_LEVELS:
        ax.cla()
        ax.scatter(*traj[T - t, :1000].T, s=3, alpha=0.5)
        ax.plot(*(np.sqrt(alpha_bar[t]) * CENTERS.numpy()).T, "k+", ms=12)
        ax.set(title=f"reverse process, t = {t}", xlabel="x1", ylabel="x2", aspect="equal",
               xlim=(-LIM, LIM), ylim=(-LIM, LIM))
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return images + [images[-1]] * HOLD


def main(argv=None):
    args = parse_args(argv)
    model, _ = train(args.steps, args.seed)
    images = frames(sample(model, args.samples, args.seed).numpy())
    path = f"{args.out}/multimodal_DDPM.gif"
    iio.imwrite(path, images, duration=80, loop=0)
    print(f"wrote {path}: {len(images)} frames drawn, {os.path.getsize(path) / 1e6:.2f} MB")
    return {"gif": path, "frames": len(images)}


if __name__ == "__main__":
    main()

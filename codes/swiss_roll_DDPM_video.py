"""A GIF of the reverse process of swiss_roll_DDPM.py forming the roll from noise.

Trains the sibling script's model with the same flags, runs Algorithm 2 once, and draws
the samples at every few levels t = T .. 0 on fixed axes, a fresh roll in grey behind them.

Run:    python codes/swiss_roll_DDPM_video.py
Writes: outputs/swiss_roll_DDPM.gif
"""
import os
import sys

import imageio.v2 as imageio
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from swiss_roll_DDPM import T, parse_args, sample, target_sample, train  # noqa: E402

# frames: every FRAME_EVERY-th level, then the result held for HOLD frames
FRAME_EVERY, HOLD, FPS = 4, 15, 15
# points drawn per frame
SHOWN = 1000


def frames(traj, seed):
    """One RGB image per drawn level of traj (T + 1, n, 2)."""
    roll = target_sample(SHOWN, torch.Generator().manual_seed(seed)).numpy()
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    images = []
    for i in [*range(0, T + 1, FRAME_EVERY), *[T] * HOLD]:
        ax.clear()
        ax.scatter(*roll.T, s=2, c="0.8", label="target")
        ax.scatter(*traj[i, :SHOWN].T, s=2, c="C0", label="generated")
        ax.set(title=f"reverse process: x_{T - i}", xlim=(-2, 2), ylim=(-2, 2), xlabel="x",
               ylabel="z", aspect="equal")
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    plt.close(fig)
    return images


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # tensors this small run faster on one thread
    model, _ = train(args.steps, args.seed)
    traj = sample(model, args.samples, args.seed).numpy()
    path = f"{args.out}/swiss_roll_DDPM.gif"
    images = frames(traj, args.seed)
    imageio.mimsave(path, images, duration=1000 / FPS, loop=0)
    print(f"wrote {path}: {len(images)} frames")
    if args.show:
        plt.imshow(images[-1])
        plt.show()
    return {"gif": path, "frames": len(images)}


if __name__ == "__main__":
    main()

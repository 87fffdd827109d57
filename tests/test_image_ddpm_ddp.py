"""image_ddpm.py under torchrun: two CPU processes (gloo) train one class-conditional model
with DDP, each on its own share of an image folder."""
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import torch
from conftest import CODES, load

m = load("image_ddpm.py")


def test_two_processes_train_one_model_on_different_data(tmp_path):
    for i in range(20):  # two classes, ten images each, of different brightness
        (tmp_path / "data" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        iio.imwrite(tmp_path / "data" / "ab"[i % 2] / f"{i}.png",
                    np.full((8, 8, 3), 12 * i, np.uint8))
    flags = ["--steps", "3", "--samples", "4", "--img-size", "8", "--batch-size", "4",
             "--sample-steps", "2", "--guidance", "1", "--data", str(tmp_path / "data"),
             "--out", str(tmp_path)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(CODES / "image_ddpm.py"), *flags]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "DDP: 2 processes x batch 4" in r.stdout and r.stdout.count("precision") == 1, r.stdout
    assert [p.name for p in tmp_path.glob("*.pt")] == ["image_ddpm.pt"]
    state = torch.load(tmp_path / "image_ddpm.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["batch"] == 4 and state["classes"] == ["a", "b"]
    # rank 1 drew other images, and its gradients reached rank 0: the weights differ from
    # those of one process alone (same seed, rank 0's share), by far more than rounding
    images, labels, classes = m.load_folder(str(tmp_path / "data"), 8)
    held = torch.arange(len(images)) % 10 == 0
    alone = m.train(3, seed=0, images=images[~held][::2], labels=labels[~held][::2],
                    classes=classes, img_size=8, batch=4)[0].state_dict()
    assert max((alone[k] - v).abs().max().item() for k, v in state["ema"].items()) > 1e-4

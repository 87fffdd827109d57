"""image_ddpm.py under torchrun: two CPU processes (gloo) train one model with DDP."""
import os
import re
import subprocess
import sys

import torch
from conftest import CODES, load

m = load("image_ddpm.py")


def test_two_processes_train_the_same_weights_on_different_data(tmp_path):
    flags = ["--steps", "3", "--samples", "4", "--img-size", "16", "--batch-size", "4",
             "--sample-steps", "2", "--out", str(tmp_path)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(CODES / "image_ddpm.py"), *flags]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    checksums = dict(re.findall(r"rank (\d+) weights checksum (\S+)", r.stderr))
    assert sorted(checksums) == ["0", "1"] and checksums["0"] == checksums["1"], checksums
    assert "effective batch 8" in r.stdout and r.stdout.count("generated pixel") == 1, r.stdout
    assert [p.name for p in tmp_path.glob("*.pt")] == ["image_ddpm.pt"]
    state = torch.load(tmp_path / "image_ddpm.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["batch"] == 4
    # rank 1 drew other images, and its gradients reached rank 0: the weights differ from
    # those of one process alone (same seed), by far more than rounding
    alone = m.train(3, seed=0, img_size=16, batch=4)[0].state_dict()
    assert max((alone[k] - v).abs().max().item() for k, v in state["ema"].items()) > 1e-4

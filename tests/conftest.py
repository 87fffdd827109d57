"""Shared test helpers: where the scripts live and how to run one as a user would."""
import importlib
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CODES = ROOT / "codes"
sys.path.insert(0, str(CODES))
os.environ.setdefault("MPLBACKEND", "Agg")


def run_script(script, *args, timeout=600):
    """Run codes/<script> in a fresh process; returns the CompletedProcess."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(CODES / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def load(script):
    """Import codes/<script> as a module (importing does no work)."""
    return importlib.import_module(script.removesuffix(".py"))

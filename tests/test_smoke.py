"""Every script in codes/ (new ones are picked up automatically) runs end to end at a
few training steps, writes its files, prints its report, and rejects bad input."""
import os

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import CODES, load, run_script

SCRIPTS = sorted(p.name for p in CODES.glob("*.py"))
FAST = ["--steps", "20", "--samples", "50", "--seed", "1"]
# flags a script needs on top of FAST for a quick run
EXTRA = {"image_ddpm.py": ["--img-size", "16", "--batch-size", "8", "--sample-steps", "10"]}
# scripts that train nothing take these instead of FAST
INSTEAD = {"image_ddpm_video.py": ["--samples", "4", "--seed", "1"]}
# scripts whose output another one reads: run them first in the same --out
BEFORE = {"image_ddpm_video.py": ["image_ddpm.py"]}


def flags(script):
    return [*INSTEAD.get(script, FAST), *EXTRA.get(script, [])]


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script, tmp_path):
    for first in BEFORE.get(script, []):
        r = run_script(first, *flags(first), "--out", tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    r = run_script(script, *flags(script), "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    stem = script.removesuffix(".py")
    if stem.endswith("_video"):
        gif = tmp_path / f"{stem.removesuffix('_video')}.gif"
        frames = iio.imread(gif, index=None)
        assert len(frames) >= 2
        assert iio.immeta(gif).get("loop") == 0
        return
    assert "generated" in r.stdout, r.stdout
    assert f"wrote {tmp_path}" in r.stdout, r.stdout  # says where its files are
    pngs = sorted(tmp_path.glob(f"{stem}*.png"))
    assert pngs, f"{script} wrote no figure"
    for png in pngs:
        assert iio.imread(png).ndim == 3
    samples = np.load(tmp_path / f"{stem}_samples.npy")
    assert len(samples) == 50 and np.isfinite(samples.astype(float)).all()


@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.endswith("_video.py")])
@pytest.mark.parametrize("bad", [["--steps", "0"], ["--samples", "-3"], ["--steps", "x"],
                                 ["--out", "{file}/sub"]])
def test_bad_input_is_argparse_usage_and_exit_2(script, bad, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    argv = [a.format(file=blocker) for a in bad]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as e:
        load(script).main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    # argparse's usual message: the usage line(s), then "<prog>: error: ..."; no traceback
    assert err.startswith("usage:") and ": error: " in err.splitlines()[-1], err
    assert "Traceback" not in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.endswith("_video.py")])
def test_read_only_out_folder_is_argparse_error_before_training(script, tmp_path, capsys,
                                                                monkeypatch):
    """An --out folder that exists but takes no files. Root writes anywhere, so a patched
    os.access stands in for a read-only folder."""
    module = load(script)
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    monkeypatch.setattr(module, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SystemExit) as e:
        module.main(["--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("usage:") and "writable" in err.splitlines()[-1], err
    assert "None" not in err, err  # no unset flag named in the message

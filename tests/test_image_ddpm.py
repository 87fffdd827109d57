"""Checks of image_ddpm.py: the sampler updates and the guided eps against their formulas, the
exact denoiser of Gaussian pixels, label dropout, the precision/recall code, resume =
uninterrupted run, folder classes, and one-line errors for bad checkpoints and input."""
import re

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import load

m = load("image_ddpm.py")
video = load("image_ddpm_video.py")
# the schedule, recomputed here from the paper's numbers: linear 1e-4..0.02 at T = 1000
BETA = torch.linspace(1e-4 * 1000 / m.T, 0.02 * 1000 / m.T, m.T, dtype=torch.float64)
AB = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - BETA, 0)])  # index t


def dummy(x, t, c):
    """Any fixed function of (x_t, t, c) will do for checking an update."""
    return 0.3 * x + 0.001 * t.reshape(-1, 1, 1, 1) + 0.05 * c.reshape(-1, 1, 1, 1)


def test_schedule_ends_in_pure_noise():
    beta, alpha_bar = m.schedule()
    assert beta[0] == 0 and torch.allclose(beta[1:].double(), BETA)
    assert torch.allclose(alpha_bar.double(), AB) and alpha_bar[-1] < 1e-4


@pytest.mark.parametrize("w", [0.0, 2.5])
def test_ddpm_update_matches_algorithm_2_with_the_guided_eps(w):
    n, s, labels = 2, 4, torch.tensor([0, 2])
    traj = m.sample(dummy, n, seed=5, img_size=s, labels=labels, guidance=w).double()
    assert traj.shape == (m.T + 1, n, 3, s, s)
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(n, 3, s, s, generator=g).double()
    z = torch.randn(n, 3, s, s, generator=g).double()
    assert torch.equal(traj[0], x_T)
    t = torch.full((n,), m.T)
    eps = (1 + w) * dummy(x_T, t, labels) - w * dummy(x_T, t, torch.full((n,), -1))  # eq. 6
    b, ab, ab_prev = BETA[-1], AB[-1], AB[-2]
    sigma = (b * (1 - ab_prev) / (1 - ab)).sqrt()
    expect = (x_T - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt() + sigma * z
    assert torch.allclose(traj[1], expect, atol=1e-5)
    x1, t = traj[-2], torch.ones(n)  # the last step, t = 1, adds no noise
    eps = (1 + w) * dummy(x1, t, labels) - w * dummy(x1, t, torch.full((n,), -1))
    x0 = (x1 - BETA[0] / (1 - AB[1]).sqrt() * eps) / (1 - BETA[0]).sqrt()
    assert torch.allclose(traj[-1], x0, atol=1e-4)


@pytest.mark.parametrize("w", [0.0, 3.0])
def test_ddim_update_matches_song_eq_12_with_the_guided_eps(w):
    n, s, k, labels = 2, 4, 3, torch.tensor([1, 0])
    traj = m.sample(dummy, n, seed=5, img_size=s, sample_steps=k, labels=labels,
                    guidance=w).double()
    assert traj.shape == (k + 1, n, 3, s, s)
    ts = [300, 200, 100, 0]
    for i, (t, s_) in enumerate(zip(ts[:-1], ts[1:])):
        x, tt = traj[i], torch.full((n,), t)
        eps = (1 + w) * dummy(x, tt, labels) - w * dummy(x, tt, torch.full((n,), -1))
        x0 = (x - (1 - AB[t]).sqrt() * eps) / AB[t].sqrt()
        expect = AB[s_].sqrt() * x0 + (1 - AB[s_]).sqrt() * eps
        assert torch.allclose(traj[i + 1], expect, atol=1e-5), (t, s_)


def test_guided_eps_is_one_batched_call_of_conditional_and_unconditional():
    calls = []

    def model(x, t, c):
        calls.append(c.tolist())
        return dummy(x, t, c)

    x, t, c = torch.randn(3, 3, 4, 4), torch.tensor([7, 7, 7]), torch.tensor([0, 1, 2])
    eps = m.guided_eps(model, x, t, c, 3.0)
    assert calls == [[0, 1, 2, -1, -1, -1]]
    assert torch.allclose(eps, 4 * dummy(x, t, c) - 3 * dummy(x, t, torch.full((3,), -1)))
    assert torch.equal(m.guided_eps(model, x, t, c, 0.0), dummy(x, t, c))


def gaussian_eps(mu, s):
    """Exact E[eps | x_t] for pixels x_0 ~ N(mu, s^2): k_t (x_t - sqrt(ab_t) mu), with
    k_t = sqrt(1 - ab_t) / (ab_t s^2 + 1 - ab_t). Returns (k, eps function of (x, t, c))."""
    k = (1 - AB).sqrt() / (AB * s**2 + 1 - AB)
    return k, lambda x, t, c: (k[t].reshape(-1, 1, 1, 1)
                              * (x - AB[t].sqrt().reshape(-1, 1, 1, 1) * mu)).float()


def sampler_law(ts, mu, s, ddpm):
    """Each step is x_u = slope x_t + offset (+ sigma z for DDPM) when eps is exact, so x_0
    is Gaussian: its exact mean and std, carried step by step from x_T ~ N(0, 1)."""
    k = gaussian_eps(mu, s)[0]
    mean, var = 0.0, 1.0
    for t, u in zip(ts[:-1], ts[1:]):
        a, b, kt = AB[t], AB[u], k[t]
        if ddpm:  # x_u = (x_t - beta / sqrt(1 - a) k (x_t - sqrt(a) mu)) / sqrt(1 - beta) + sigma z
            beta = 1 - a / b
            slope = (1 - beta * kt / (1 - a).sqrt()) / (1 - beta).sqrt()
            offset = beta * kt * (a / (1 - a)).sqrt() * mu / (1 - beta).sqrt()
            noise = beta * (1 - b) / (1 - a)
        else:  # x_u = sqrt(b / a) x_t + c k (x_t - sqrt(a) mu)
            c = (1 - b).sqrt() - (b * (1 - a) / a).sqrt()
            slope, offset, noise = (b / a).sqrt() + c * kt, -c * kt * a.sqrt() * mu, 0.0
        mean, var = slope * mean + offset, slope**2 * var + noise
    return float(mean), float(var) ** 0.5


@pytest.mark.parametrize("sample_steps", [None, 10, 50])
def test_exact_denoiser_of_gaussian_pixels_gives_the_exact_law(sample_steps):
    mu, s = 0.3, 0.5
    x = m.sample(gaussian_eps(mu, s)[1], 500, seed=1, img_size=4, sample_steps=sample_steps)[-1]
    mean, std = sampler_law(m.timesteps(sample_steps).tolist(), mu, s, sample_steps is None)
    assert abs(x.mean().item() - mean) < 0.01 and abs(x.std().item() / std - 1) < 0.02
    if sample_steps != 10:  # T and 50 steps come close to the data's own law
        assert abs(mean - mu) < 0.01 and abs(std / s - 1) < 0.06


def test_shapes_are_seeded_images_whose_class_the_nearest_real_shape_tells():
    x, kind = m.shapes(300, 16, torch.Generator().manual_seed(0))
    assert x.shape == (300, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, m.shapes(300, 16, torch.Generator().manual_seed(0))[0])
    assert sorted(kind.unique().tolist()) == [0, 1, 2]
    fg = (x - x[:, :, :1, :1]).abs().sum(1) > 0.3  # pixels that differ from the background
    assert (fg.float().mean((1, 2)) > 0.05).all()  # every image holds a visible shape
    # the report's 1-NN label check passes real shapes: their class is in the pixels
    ref, ref_kind = m.shapes(m.HELD_OUT, 16, torch.Generator().manual_seed(12345))
    r = m.report(x, kind, ref, ref_kind, m.SHAPES)
    assert r["label_match"] > 0.93 and min(r["by_class"].values()) > 0.88, r  # 0.947 here


def test_precision_recall_real_against_real_is_high_and_noise_or_collapse_is_low():
    real, _ = m.shapes(500, 16, torch.Generator().manual_seed(1))
    other, _ = m.shapes(500, 16, torch.Generator().manual_seed(2))
    assert m.precision_recall(real, real) == (1.0, 1.0)
    p, r = m.precision_recall(real, other)
    assert p > 0.8 and r > 0.8 and abs(p - r) < 0.1, (p, r)
    noise = torch.randn(500, 3, 16, 16, generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    assert m.precision_recall(real, noise)[0] < 0.02  # (recall is not: noise's balls are huge)
    collapsed = other[:1] + 0.01 * torch.randn(500, 3, 16, 16)  # one image, over and over
    p, r = m.precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.05, (p, r)


def interrupt_at(monkeypatch, calls):
    """Ctrl-C while drawing batch number `calls` + 1."""
    shapes, seen = m.shapes, []

    def interrupted(*args):
        seen.append(1)
        if len(seen) > calls:
            raise KeyboardInterrupt
        return shapes(*args)

    monkeypatch.setattr(m, "shapes", interrupted)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    kw = dict(seed=3, img_size=8, batch=4)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m.train(6, out=str(tmp_path / "a"), **kw)
    with monkeypatch.context() as patch:
        interrupt_at(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            m.train(6, out=str(tmp_path / "b"), **kw)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["image_ddpm.pt"]  # no .tmp
    half = torch.load(tmp_path / "b" / "image_ddpm.pt", weights_only=True)
    assert half["step"] == 3 and half["classes"] == m.SHAPES
    m.train(6, out=str(tmp_path / "b"), state=half, **kw)
    full, resumed = (torch.load(tmp_path / d / "image_ddpm.pt", weights_only=True) for d in "ab")
    assert resumed["step"] == 6 and resumed["losses"] == full["losses"]
    for key in "model", "ema":
        assert all(torch.equal(full[key][k], v) for k, v in resumed[key].items())


def test_labels_reach_the_network_and_a_tenth_are_dropped_to_no_class(monkeypatch):
    seen = []

    def spy(self, x, t, c):  # records the labels; a zero eps keeps it quick
        seen.append(c.clone())
        return torch.zeros_like(x).requires_grad_()

    monkeypatch.setattr(m.UNet, "forward", spy)
    images, labels = torch.zeros(10, 3, 8, 8), torch.arange(10) % 2
    m.train(20, images=images, labels=labels, classes=["a", "b"], img_size=4, batch=500)
    c = torch.cat(seen)  # 10,000 labels: the dropout rate within 5 standard deviations
    assert set(c.tolist()) == {-1, 0, 1} and abs((c == -1).float().mean() - m.P_UNCOND) < 0.015


def test_cli_labels_guidance_resume_sample_only_and_video(tmp_path):
    common = ["--img-size", "8", "--batch-size", "4", "--samples", "6", "--out", str(tmp_path)]
    m.main(["--steps", "2", "--sample-steps", "2", *common])
    m.main(["--steps", "4", "--resume", "--sample-steps", "2", "--guidance", "2", *common])
    assert torch.load(tmp_path / "image_ddpm.pt", weights_only=True)["step"] == 4
    r = m.main(["--sample-only", "--label", "square", "--guidance", "3", "--sample-steps", "3",
                *common])
    assert set(r) >= {"precision", "recall", "label_match"} and list(r["by_class"]) == ["square"]
    samples = np.load(tmp_path / "image_ddpm_samples.npy")
    assert samples.shape == (6, 8, 8, 3) and samples.dtype == np.uint8
    video.main(["--samples", "2", "--out", str(tmp_path), "--guidance", "1", "--sample-steps", "5"])
    gif = tmp_path / "image_ddpm.gif"
    assert len(iio.imread(gif, index=None)) == 6 and iio.immeta(gif)["loop"] == 0  # 5 DDIM steps
    assert gif.stat().st_size < 2e6


def test_report_line_is_what_the_benchmark_parses(tmp_path, capsys):
    m.main(["--steps", "2", "--img-size", "8", "--batch-size", "4", "--samples", "6",
            "--sample-steps", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "precision" in line)
    found = dict(re.findall(r"(precision|recall|label match) ([0-9.]+)", line))
    assert set(found) == {"precision", "recall", "label match"}, line
    assert f"wrote {tmp_path}/image_ddpm.png, {tmp_path}/image_ddpm_samples.npy" in out


def make_folder(root):
    """Two class folders (one nested deeper), a corrupt file and a text file; a stray file
    beside the class folders, which ImageFolder ignores."""
    (root / "cats" / "deep").mkdir(parents=True), (root / "dogs").mkdir()
    stripes = np.zeros((10, 30, 3), np.uint8)  # red | green | blue, 10 px each
    stripes[:, :10, 0] = stripes[:, 10:20, 1] = stripes[:, 20:, 2] = 255
    iio.imwrite(root / "dogs" / "stripes.png", stripes)
    iio.imwrite(root / "cats" / "photo.jpg", np.full((20, 16, 3), 200, np.uint8))
    iio.imwrite(root / "cats" / "deep" / "gray.png", np.full((12, 12), 0, np.uint8))
    iio.imwrite(root / "dogs" / "rgba.png", np.full((9, 9, 4), 255, np.uint8))
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "cats" / "notes.txt").write_text("not an image")
    iio.imwrite(root / "stray.png", np.full((5, 5, 3), 128, np.uint8))


def test_folder_classes_are_its_subfolders(tmp_path, capsys):
    make_folder(tmp_path)
    x, labels, classes = m.load_folder(str(tmp_path), 8)
    assert classes == ["cats", "dogs"] and labels.tolist() == [0, 0, 1, 1]
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0] and "loading" in err, err
    stripes = x[3]  # dogs: rgba.png, stripes.png (sorted)
    centre = stripes[:, 2:6, 2:6].mean((1, 2))  # the centre crop keeps the green stripe
    assert centre[1] > 0.9 and centre[0] < -0.9 and centre[2] < -0.9
    x, labels, classes = m.load_folder(str(tmp_path / "dogs"), 8)  # no subfolders: one class
    assert classes == ["dogs"] and labels.tolist() == [0, 0]


@pytest.mark.parametrize("case", ["missing", "empty", "no images"])
def test_bad_data_folder_is_argparse_usage_and_exit_2(case, tmp_path, capsys):
    folder = tmp_path / "data"
    if case != "missing":
        folder.mkdir()
    if case == "no images":
        (folder / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit) as e:
        m.main(["--data", str(folder), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "usage:" in err and "error: --data" in err.splitlines()[-1], err  # (after tqdm's bar)


def test_odd_img_size_trains_and_samples(tmp_path):  # the up path resizes to the skip's size
    m.main(["--img-size", "7", "--steps", "2", "--batch-size", "2", "--samples", "3",
            "--sample-steps", "2", "--out", str(tmp_path)])
    assert np.load(tmp_path / "image_ddpm_samples.npy").shape == (3, 7, 7, 3)


def test_img_size_the_unet_cannot_halve_is_argparse_error(tmp_path, capsys):
    too_small = 2 ** (len(m.CHANNELS) - 1) - 1
    with pytest.raises(SystemExit) as e:
        m.main(["--img-size", str(too_small), "--out", str(tmp_path)])
    assert e.value.code == 2 and "--img-size >= " in capsys.readouterr().err.splitlines()[-1]


def bad_checkpoint(path, case):
    if case == "corrupt":
        path.write_bytes(b"not a checkpoint at all")
    elif case == "foreign":  # a valid torch file of another program
        torch.save({"weights": torch.zeros(3)}, path)
    elif case == "truncated":
        m.train(1, img_size=8, batch=2, out=str(path.parent))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "foreign"])
@pytest.mark.parametrize("how", ["--resume", "--sample-only", "video"])
def test_bad_checkpoint_is_one_line_and_exit_2(case, how, tmp_path, capsys):
    bad_checkpoint(tmp_path / "image_ddpm.pt", case)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        if how == "video":
            video.main(["--out", str(tmp_path)])
        else:
            m.main([how, "--img-size", "8", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "image_ddpm.pt" in err and "error" in err, err
    assert "run codes/image_ddpm.py first" in err


@pytest.mark.parametrize("flags", [["--img-size", "16"], ["--data", "{folder}"]])
def test_resume_with_another_size_or_data_set_is_one_line_and_exit_2(flags, tmp_path, capsys):
    make_folder(tmp_path / "data")
    m.train(1, img_size=8, batch=2, out=str(tmp_path))
    capsys.readouterr()
    argv = [f.format(folder=tmp_path / "data") for f in flags]
    with pytest.raises(SystemExit) as e:
        m.main(["--resume", "--img-size", "8", *argv, "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1, err
    assert "image_ddpm.pt is for [classes, --img-size, channels]" in err[-1], err


def test_long_training_saves_its_checkpoint_every_save_every_steps(tmp_path, monkeypatch):
    saved, replace = [], m.os.replace

    def spy(src, dst):  # the step of each checkpoint as it is renamed into place
        saved.append(torch.load(src, weights_only=True)["step"])
        replace(src, dst)

    monkeypatch.setattr(m, "SAVE_EVERY", 2)
    monkeypatch.setattr(m.os, "replace", spy)
    m.train(5, img_size=8, batch=2, out=str(tmp_path))
    assert saved == [2, 4, 5]  # so a hard kill loses at most SAVE_EVERY steps


def test_video_with_read_only_out_folder_is_argparse_error_before_sampling(tmp_path, capsys,
                                                                           monkeypatch):
    m.train(1, img_size=8, batch=2, out=str(tmp_path))  # a usable checkpoint in --out
    monkeypatch.setattr(video.os, "access", lambda path, mode: path != str(tmp_path))
    monkeypatch.setattr(video.ddpm, "sample", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(SystemExit) as e:
        video.main(["--out", str(tmp_path)])
    assert e.value.code == 2 and "--out writable" in capsys.readouterr().err.splitlines()[-1]

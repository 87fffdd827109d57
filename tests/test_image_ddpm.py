"""Checks of image_ddpm.py: the sampler updates against their formulas, the exact denoiser
of Gaussian pixels, resume = uninterrupted run, Ctrl-C, --data loading, and bad input."""
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import load

m = load("image_ddpm.py")
video = load("image_ddpm_video.py")
# the schedule, recomputed here from the paper's numbers: linear 1e-4..0.02 at T = 1000
BETA = torch.linspace(1e-4 * 1000 / m.T, 0.02 * 1000 / m.T, m.T, dtype=torch.float64)
AB = torch.cumprod(1 - BETA, 0)  # alpha_bar_t at index t - 1


def dummy(x, t):
    """Any fixed function of (x_t, t) will do for checking an update."""
    return 0.3 * x + 0.001 * t.reshape(-1, 1, 1, 1)


def test_schedule_ends_in_pure_noise():
    beta, alpha_bar = m.schedule()
    assert beta[0] == 0 and alpha_bar[0] == 1
    assert torch.allclose(beta[1:].double(), BETA) and torch.allclose(alpha_bar[1:].double(), AB)
    assert alpha_bar[-1] < 1e-4  # x_T holds < 1% of the image


def test_ddpm_update_matches_algorithm_2():
    n, s = 2, 4
    traj = m.sample(dummy, n, seed=5, img_size=s).double()
    assert traj.shape == (m.T + 1, n, 3, s, s)
    g = torch.Generator().manual_seed(5)
    x_T = torch.randn(n, 3, s, s, generator=g).double()
    z = torch.randn(n, 3, s, s, generator=g).double()
    assert torch.equal(traj[0], x_T)
    b, ab, ab_prev = BETA[-1], AB[-1], AB[-2]
    sigma = (b * (1 - ab_prev) / (1 - ab)).sqrt()
    expect = (x_T - b / (1 - ab).sqrt() * dummy(x_T, torch.tensor(m.T))) / (1 - b).sqrt() + sigma * z
    assert torch.allclose(traj[1], expect, atol=1e-5)
    x1 = traj[-2]  # the last step, t = 1, adds no noise
    expect = (x1 - BETA[0] / (1 - AB[0]).sqrt() * dummy(x1, torch.tensor(1))) / (1 - BETA[0]).sqrt()
    assert torch.allclose(traj[-1], expect, atol=1e-4)


def test_ddim_update_matches_song_eq_12():
    n, s, k = 2, 4, 3
    traj = m.sample(dummy, n, seed=5, img_size=s, sample_steps=k).double()
    assert traj.shape == (k + 1, n, 3, s, s)
    ts = [300, 200, 100, 0]
    ab = torch.cat([torch.ones(1, dtype=torch.float64), AB])  # index t
    for i, (t, s_) in enumerate(zip(ts[:-1], ts[1:])):
        x = traj[i]
        eps = dummy(x, torch.tensor(t))
        x0 = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        expect = ab[s_].sqrt() * x0 + (1 - ab[s_]).sqrt() * eps
        assert torch.allclose(traj[i + 1], expect, atol=1e-5), (t, s_)


def gaussian_eps(mu, s):
    """Exact E[eps | x_t] for pixels x_0 ~ N(mu, s^2): k_t (x_t - sqrt(ab_t) mu), with
    k_t = sqrt(1 - ab_t) / (ab_t s^2 + 1 - ab_t). Returns (k, eps function)."""
    ab = torch.cat([torch.ones(1, dtype=torch.float64), AB])
    k = (1 - ab).sqrt() / (ab * s**2 + 1 - ab)
    return k, lambda x, t: (k[t].reshape(-1, 1, 1, 1) * (x - ab[t].sqrt().reshape(-1, 1, 1, 1) * mu)).float()


def sampler_law(ts, mu, s, ddpm):
    """Each step is x_u = slope x_t + offset (+ sigma z for DDPM) when eps is exact, so x_0
    is Gaussian: its exact mean and std, carried step by step from x_T ~ N(0, 1)."""
    ab = torch.cat([torch.ones(1, dtype=torch.float64), AB])
    k = gaussian_eps(mu, s)[0]
    mean, var = 0.0, 1.0
    for t, u in zip(ts[:-1], ts[1:]):
        a, b, kt = ab[t], ab[u], k[t]
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


def test_shapes_are_images_in_range_and_seeded():
    x = m.shapes(64, 16, torch.Generator().manual_seed(0))
    assert x.shape == (64, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, m.shapes(64, 16, torch.Generator().manual_seed(0)))
    fg = (x - x[:, :, :1, :1]).abs().sum(1) > 0.3  # pixels that differ from the background
    assert (fg.float().mean((1, 2)) > 0.05).all()  # every image holds a visible shape


def equal_states(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path):
    kw = dict(seed=3, img_size=8, batch=4)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m.train(6, out=str(tmp_path / "a"), **kw)
    m.train(3, out=str(tmp_path / "b"), **kw)
    half = torch.load(tmp_path / "b" / "image_ddpm.pt", weights_only=True)
    assert half["step"] == 3
    m.train(6, out=str(tmp_path / "b"), state=half, **kw)
    full, resumed = (torch.load(tmp_path / d / "image_ddpm.pt", weights_only=True) for d in "ab")
    assert resumed["step"] == 6 and len(resumed["losses"]) == 6
    assert resumed["losses"] == full["losses"]
    assert equal_states(resumed["model"], full["model"]) and equal_states(resumed["ema"], full["ema"])
    assert resumed["config"]["img_size"] == 8 and resumed["opt"]["state"]


def test_ctrl_c_saves_a_checkpoint(tmp_path, monkeypatch):
    shapes, calls = m.shapes, []

    def interrupted(*args):  # Ctrl-C while drawing the third batch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return shapes(*args)

    monkeypatch.setattr(m, "shapes", interrupted)
    with pytest.raises(SystemExit) as e:
        m.train(10, img_size=8, batch=4, out=str(tmp_path))
    assert e.value.code == 130
    state = torch.load(tmp_path / "image_ddpm.pt", weights_only=True)
    assert state["step"] == 2 and len(state["losses"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["image_ddpm.pt"]  # no .tmp left


def test_cli_resume_sample_only_and_video(tmp_path):
    common = ["--img-size", "8", "--batch-size", "4", "--samples", "4", "--out", str(tmp_path)]
    m.main(["--steps", "2", "--sample-steps", "2", *common])
    m.main(["--steps", "4", "--resume", "--sample-steps", "2", *common])
    assert torch.load(tmp_path / "image_ddpm.pt", weights_only=True)["step"] == 4
    r = m.main(["--steps", "1", "--sample-only", "--sample-steps", "2", *common])
    samples = np.load(tmp_path / "image_ddpm_samples.npy")
    assert samples.shape == (4, 8, 8, 3) and samples.dtype == np.uint8 and "std" in r
    video.main(["--samples", "4", "--out", str(tmp_path)])
    gif = tmp_path / "image_ddpm.gif"
    assert len(iio.imread(gif, index=None)) >= 24 and iio.immeta(gif)["loop"] == 0
    assert gif.stat().st_size < 2e6


def make_folder(root):
    """Five images (two in a subfolder), one corrupt file and one text file."""
    sub = root / "sub"
    sub.mkdir(parents=True)
    stripes = np.zeros((10, 30, 3), np.uint8)  # red | green | blue, 10 px each
    stripes[:, :10, 0] = stripes[:, 10:20, 1] = stripes[:, 20:, 2] = 255
    iio.imwrite(root / "stripes.png", stripes)
    iio.imwrite(root / "photo.jpg", np.full((20, 16, 3), 200, np.uint8))
    iio.imwrite(sub / "gray.png", np.full((12, 12), 0, np.uint8))
    iio.imwrite(sub / "rgba.png", np.full((9, 9, 4), 255, np.uint8))
    iio.imwrite(sub / "small.bmp", np.full((5, 5, 3), 128, np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("not an image")


def test_data_folder_loads_every_readable_image(tmp_path, capsys):
    make_folder(tmp_path)
    x = m.load_folder(str(tmp_path), 8)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1 and x.max() == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "skipped 2 unreadable" in err
    stripes = x[1]  # files load in sorted order: photo.jpg, stripes.png, sub/...
    centre = stripes[:, 2:6, 2:6].mean((1, 2))  # the centre crop keeps the green stripe
    assert centre[1] > 0.9 and centre[0] < -0.9 and centre[2] < -0.9


@pytest.mark.parametrize("case", ["missing", "empty", "no images"])
def test_bad_data_folder_is_one_line_and_exit_2(case, tmp_path, capsys):
    folder = tmp_path / "data"
    if case != "missing":
        folder.mkdir()
    if case == "no images":
        (folder / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit) as e:
        m.main(["--data", str(folder), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and "--data" in err, err


def test_video_without_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        video.main(["--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run codes/image_ddpm.py first" in err, err

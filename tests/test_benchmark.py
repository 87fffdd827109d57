"""The benchmark's scoring: a fresh target sample scores about 1, a collapsed one worse;
its --set runs a toy with a constant changed."""
import numpy as np
import pytest
from benchmark import RING, SPIKES, TARGETS, empty_share, figures, fidelity, run


@pytest.mark.parametrize("script", sorted(TARGETS))
def test_fresh_target_scores_about_one_and_halved_spread_scores_worse(script):
    target, kind = TARGETS[script]
    x = target(2000, np.random.default_rng(7))
    fresh = fidelity(x, target)
    assert 0.5 < fresh < 1.6
    nearest_ring = RING[((x[:, None] - RING) ** 2).sum(-1).argmin(1)]
    centre = {"spikes": np.round(x), "two_modes": np.sign(x) * 4,
              "ring": nearest_ring}.get(kind, x.mean(0))
    halved = centre + (x - centre) / 2  # half the spread inside each mode
    if kind in ("spikes", "ring"):
        # W1 between spike mixtures is ruled by the spikes' counts, not their width: the
        # spread figure is what sees the collapse
        assert fidelity(halved, target) > fresh
        assert figures(halved, target, kind)["spread err %"] > 40
    else:
        assert fidelity(halved, target) > 2.5


def test_figures_of_a_fresh_sample_are_small_and_of_a_bad_one_large():
    rng = np.random.default_rng(3)
    gauss = TARGETS["simple_2Diffusion"][0]
    g = figures(gauss(2000, rng), gauss, "gaussian")
    assert g["mean err"] < 0.001 and g["std err %"] < 5
    assert figures(gauss(2000, rng) + 0.003, gauss, "gaussian")["mean err"] > 0.002
    s = figures(TARGETS["simple_multimodal"][0](2000, rng), None, "spikes")
    assert s["share err"] < 0.03 and s["spread err %"] < 10 and s["max dist"] < 0.06
    lopsided = SPIKES[np.repeat([0, 1, 2, 3], [800, 400, 400, 400])]
    assert figures(lopsided + 0.01 * rng.standard_normal((2000, 2)), None, "spikes")[
        "share err"] == pytest.approx(0.15)
    m = figures(TARGETS["elbo_diffusion"][0](2000, rng), None, "two_modes")
    assert m["share>0 err"] < 0.04 and m["mean err"] < 0.15 and m["std err %"] < 10


def test_ring_figures_see_a_missing_mode():
    rng = np.random.default_rng(4)
    ring = TARGETS["flow_matching"][0]
    fresh = figures(ring(2000, rng), ring, "ring")
    assert fresh["share err"] < 0.03 and fresh["spread err %"] < 10
    x = ring(2000, rng)
    x = x[((x[:, None] - RING) ** 2).sum(-1).argmin(1) != 0]  # mode 0 emptied
    assert figures(x, ring, "ring")["share err"] == pytest.approx(1 / 8)
    assert fidelity(x, ring) > 1.3


def test_curve_distance_sees_a_blurred_roll():
    roll = TARGETS["swiss_roll_DDPM"][0]
    rng = np.random.default_rng(5)
    fresh = figures(roll(2000, rng), roll, "roll")["curve dist ratio"]
    assert 0.9 < fresh < 1.1
    blurred = roll(2000, rng) + 0.15 * rng.standard_normal((2000, 2))
    assert figures(blurred, roll, "roll")["curve dist ratio"] > 1.5


def test_empty_share_sees_tiles_without_an_object_and_no_real_shape():
    import torch
    from conftest import load
    m = load("image_ddpm")
    real = m.to_uint8(m.shapes(2000, 16, torch.Generator().manual_seed(0))[0])
    assert empty_share(real) == 0  # not even the smallest triangle
    tiles = real[:100].copy()
    tiles[:20] = tiles[:20, :1, :1]  # 20 tiles of one colour each
    tiles[20:30] = tiles[20:30, :1, :1] + np.random.default_rng(0).integers(0, 20, (16, 16, 3))
    tiles[20:30, 5:7, 5:7] = 255  # faint noise and a 2 x 2 dot: empty still
    assert empty_share(tiles) == pytest.approx(0.3)


def test_set_changes_a_constant_as_the_flag_would():
    _, by_set, _ = run("single_DDPM", 1, ["--samples", "50"], settings=["STEPS = 5"])
    _, by_flag, _ = run("single_DDPM", 1, ["--samples", "50", "--steps", "5"])
    _, other, _ = run("single_DDPM", 1, ["--samples", "50", "--steps", "6"])
    assert np.array_equal(by_set, by_flag) and not np.array_equal(by_set, other)
    with pytest.raises(SystemExit, match="no such constant"):
        run("single_DDPM", 1, ["--samples", "50"], settings=["STPES=5"])


def test_every_row_divides_by_the_one_floor_the_table_prints(monkeypatch):
    """Toys and image recipes alike: x floor = time / the printed floor, the median of all the
    run's floors (here 1, 2 and 9 s for the toy, 5 s for the image recipe)."""
    import benchmark
    floors = iter([1.0, 2.0, 9.0, 5.0])
    monkeypatch.setattr(benchmark, "timed", lambda argv: (next(floors), ""))
    monkeypatch.setattr(benchmark, "bench_toy", lambda script, seed, settings: (7.0, 1.0, {}))

    def bench_image(floors):
        floors.append(benchmark.timed([])[0])
        return [("shapes", "--steps 1", 70.0, "precision 1")]

    monkeypatch.setattr(benchmark, "bench_image", bench_image)
    md = benchmark.table(3, True, ["single_DDPM"])
    assert "| single_DDPM | 7.0 | 2.00 |" in md and "| 70.0 | 20.0 |" in md
    assert "floor: 3.50 s, the median of 4 runs" in md

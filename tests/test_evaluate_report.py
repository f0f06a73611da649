"""A tiny end-to-end evaluate + report run on an in-memory catalog, and the CLIP embedder plumbing."""

import time

import polars as pl
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ledi_kedro.core.embedders import ClipEmbedder, ClipWeightsUnavailable, InceptionEmbedder, InceptionWeightsUnavailable
from ledi_kedro.pipelines import evaluate, report, select
from tests.conftest import built_once, deep_merge
from tests.test_preprocess_pipeline import KeptDataset
from tests.test_training_pipelines import image_split, run_chain, tiny_params

TINY_EVAL = {
    "bootstrap": {"resamples": 20}, "sampling_seeds": 2, "latent_sweep": {"steps": [1, 2], "solvers": ["rk4"]},
    "n_samples": 12, "n_reference": 12, "batch_size": 6, "nfe_grid": [1, 2, 4], "solvers": ["euler", "midpoint", "dopri5"],
    "adaptive_rtols": [0.1], "reference_nfe": 4, "straightness_samples": 4, "straightness_steps": 4,
    "grid_images": 3, "interpolation_points": 3, "inpaint_examples": 2,
}


TESTED_OUTPUTS = ("sweep_results", "evaluation_metrics", "speedup_table", "straightness", "latent_sampler_sweep",
                  "report_markdown", "report_html", "validation.evaluation_metrics", "validation.sweep_results")


def evaluate_tiny_chain(tmp) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    trained = run_chain(tmp)
    params = deep_merge(tiny_params(tmp), {"evaluate": TINY_EVAL,
                                           "report": {"title": "tiny", "hash_paths": [str(tmp / "h.bin"), str(tmp / "nope")]}})
    (tmp / "h.bin").write_bytes(b"abc")
    catalog = DataCatalog({"parameters": MemoryDataset(params)})
    for key, value in params.items():
        catalog[f"params:{key}"] = MemoryDataset(value)
    for ns in ("ledi", "gaussian"):  # the training-quality plot reads both variants
        catalog[f"params:{ns}.variant"] = MemoryDataset(params[ns]["variant"])
    catalog["train_image_tensors"] = MemoryDataset(image_split(32, 0), copy_mode="assign")
    catalog["test_image_tensors"] = MemoryDataset(image_split(16, 1), copy_mode="assign")
    catalog["validation_image_tensors"] = MemoryDataset(image_split(16, 2), copy_mode="assign")
    for name, value in trained.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")
    pipe = evaluate.create_pipeline() + report.create_pipeline() + select.create_pipeline()
    for name in pipe.outputs() | set(TESTED_OUTPUTS):
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    return {name: catalog.load(name) for name in TESTED_OUTPUTS}


@pytest.fixture(scope="session")
def evaluated(request, tmp_path_factory) -> dict:
    """The tiny chain trained, evaluated and reported on an in-memory catalog: what evaluate and report output."""
    return built_once(request, tmp_path_factory, "evaluated", evaluate_tiny_chain)


def test_sweep_table(evaluated):
    table = evaluated["sweep_results"]
    assert isinstance(table, pl.DataFrame)
    euler = table.filter((pl.col("model") == "ledi") & (pl.col("solver") == "euler"))
    assert euler["nfe"].to_list() == [1.0, 2.0, 4.0]
    mid = table.filter((pl.col("model") == "gaussian") & (pl.col("solver") == "midpoint"))
    assert mid["nfe"].to_list()[:2] == [2.0, 4.0]  # NFE 1 cannot be spent by a 2-stage solver
    on_grid = dict(zip(mid["nfe"].to_list()[:2], mid["fd"].to_list()[:2]))
    # one more point at twice the grid's edge exactly when the baseline's best sat at the edge
    assert (mid.height == 3 and mid["nfe"][2] == 8.0) == (min(on_grid, key=on_grid.get) == 4.0)
    assert table.filter(pl.col("solver") == "dopri5").height == 2
    assert set(table.filter(pl.col("solver") == "none")["model"]) == {"real_train", "prior_x0", "gaussian_noise"}
    ledi_rows = table.filter(pl.col("model") == "ledi")
    assert (ledi_rows["latent_nfe"] == 8).all()  # the shipped latent sampler: 2 rk4 steps
    assert (table["n_samples"].filter(table["solver"] != "none") == 12).all() and (table["n_reference"] == 12).all()
    assert (table.filter(pl.col("solver") != "none")["seconds_per_image"] > 0).all()


def test_every_point_has_an_interval_around_its_value(evaluated):
    table = evaluated["sweep_results"]
    # the grid's points, the baseline's extensions beyond the grid (at most one per fixed solver) and the sanity
    # rows; the replicates are kept for the first sampling seed's rows only
    extended = table.filter((pl.col("model") == "gaussian") & (pl.col("nfe_requested") == 8)).height
    assert extended <= 2 and table.height == 2 * (3 + 2 + 1) + extended + 3
    assert (table["fd_low"] <= table["fd"]).all() and (table["fd"] <= table["fd_high"]).all()
    assert (table["fd_high"] > table["fd_low"]).all()
    assert table["fd_replicates"].list.len().unique().to_list() == [20]
    generated = table.filter(pl.col("solver") != "none")
    on_grid = generated.filter(pl.col("nfe_requested") <= 4)  # an extension runs for the seeds that call for it
    assert (on_grid["fd_seeds"] == 2).all() and on_grid["fd_seed_std"].is_not_null().all()
    assert ((generated["fd_seed_min"] <= generated["fd"]) & (generated["fd"] <= generated["fd_seed_max"])).all()


def test_metrics_and_speedups(evaluated):
    m = evaluated["evaluation_metrics"]
    assert m["primary_metric"] == "fd" and m["n_samples"] == 12 and m["n_reference"] == 12
    assert isinstance(m["evaluation_reliable"], bool) and isinstance(m["evaluation_warnings"], list)
    # the tiny judge (4 steps) is far below min_judge_accuracy, so the run must say it is unreliable
    assert not m["evaluation_reliable"] and any("accuracy" in w for w in m["evaluation_warnings"])
    assert set(m["solvers"]) == {"euler", "midpoint"}  # the fixed-step solvers; dopri5 has no NFE grid
    for solver, c in m["solvers"].items():
        assert c["speedup"]["at_reference_nfe"]["text"].startswith("unreliable evaluation")
        assert c["speedup"]["at_reference_nfe"]["value"] is None
        # an unreliable evaluation says which model is better nowhere, and publishes no matched-quality ratio
        assert set(c["better"]) <= {"1", "2", "4"} and set(c["better"].values()) == {"unreliable"}
        assert "cheapest_beats_best" not in c
        levels = c["matched_quality"]
        assert levels and all(e["nfe_ratio"] is None and e["status"] == "unreliable" for e in levels)
        base = evaluated["sweep_results"].filter((pl.col("model") == "gaussian") & (pl.col("solver") == solver))
        fd = base.sort("nfe")["fd"].to_list()
        running = sorted({min(fd[: i + 1]) for i in range(len(fd))}, reverse=True)  # the running best, once each
        assert [e["level"] for e in levels] == pytest.approx(running, abs=1e-5)
        for model in ("ledi", "gaussian"):
            nfes = c["quality"][model]
            assert set(c["interval"][model]) == set(nfes)
            assert all(c["interval"][model][n][0] <= v <= c["interval"][model][n][1] for n, v in nfes.items())
    floor = m["sanity"]["real_train"]
    assert floor["interval"][0] <= floor["quality"] <= floor["interval"][1]
    assert set(m["sanity"]) == {"real_train", "prior_x0", "gaussian_noise"}
    assert m["subset_coverage"]["reference"] == {"n": 12, "n_classes": 3}
    assert set(evaluated["straightness"]) == {"ledi", "gaussian"}
    sp = evaluated["speedup_table"]
    assert set(sp["reference"]) == {"at_reference_nfe", "vs_best_baseline"}
    assert set(sp["status"]) == {"unreliable"}
    assert set(sp["wallclock_text"]) == {"unreliable evaluation: see evaluation_warnings"}  # no speedup, in seconds either
    assert m["training"]["gaussian"]["stop_reason"] == "step_cap" and m["baseline_converged"] is False
    table = evaluated["sweep_results"].filter(pl.col("solver").is_in(["euler", "midpoint"]))
    assert m["sampling_seeds"] == 2 and m["max_seed_std"] == pytest.approx(table["fd_seed_std"].max(), abs=1e-5)
    wall = m["wallclock"]  # timings are kept apart from the figures that must repeat exactly
    assert wall["latent_sampler_recommended"].startswith("rk4 x ")
    assert m["latent_sampler"]["configured"] == "rk4 x 2" and m["latent_sampler"]["image_nfe"] == 2
    low, high = m["latent_sampler"]["configured_minus_best"]
    assert low <= high and m["latent_sampler"]["configured_within_noise_of_best"] == (low <= 0)
    assert {"train_codes_quality", "held_out_codes_quality", "held_out_codes_interval"} <= set(m["latent_sampler"])
    assert set(wall["solvers"]["midpoint"]) == {"speedup", "ms_per_image", "ledi_x0_ms_per_image",
                                                "matched_quality_seconds_ratio"}
    assert not any("ms" in k for c in m["solvers"].values() for k in c)
    # the memorisation check: every model's worst point, and the training images themselves as the positive control
    # in the judge's features and in pixels, each against its calibrated limit
    assert set(m["memorisation"]) == {"ledi", "gaussian", "real_vs_real_nn_train_median"}
    assert m["memorisation"]["real_vs_real_nn_train_median"] == 0
    sweep = evaluated["sweep_results"]
    for space, column in (("judge", "nn_close_fraction"), ("pixels", "nn_pixels_close_fraction")):
        entry = m["memorisation"]["ledi"][space]
        ledi_rows = sweep.filter(pl.col("model") == "ledi")
        assert entry["close_fraction"] == pytest.approx(ledi_rows[column].max(), abs=1e-4)
        assert entry["points"] == ledi_rows.height and entry["copies"] == (entry["close_fraction"] > entry["limit"])


def test_latent_sampler_sweep(evaluated):
    sweep = evaluated["latent_sampler_sweep"]
    # columns: euler @ 1, midpoint @ 2 and @ 4; rows: rk4 x 1 and x 2, and the encoder codes of training images
    # and of the 4 held-out images outside the reference set
    assert sweep["image_nfe"].to_list() == [1] * 4 + [2] * 4 + [4] * 4
    assert sweep["image_solver"].to_list() == ["euler"] * 4 + ["midpoint"] * 8
    assert sweep["sample_solver"].to_list() == ["rk4", "rk4", "codes:train", "codes:held_out"] * 3
    assert sweep["n_samples"].to_list() == [12, 12, 12, 4] * 3
    assert sweep["latent_nfe"].to_list() == [4.0, 8.0, 0.0, 0.0] * 3
    assert sweep["configured"].to_list() == [False, True, False, False] * 3
    assert ((sweep["fd_low"] <= sweep["fd"]) & (sweep["fd"] <= sweep["fd_high"])).all()
    latent = sweep.filter(pl.col("latent_nfe") > 0)
    assert (latent["x0_fraction"] > 0).all() and (latent["x0_fraction"] < 1).all()
    # the shipped setting's row is the sweep's LeDiFlow point itself: same sampler, seeds and images
    shipped = sweep.filter(pl.col("configured") & (pl.col("image_nfe") == 2)).row(0, named=True)
    point = evaluated["sweep_results"].filter(
        (pl.col("model") == "ledi") & (pl.col("solver") == "midpoint") & (pl.col("nfe") == 2)).row(0, named=True)
    assert shipped["fd"] == point["fd"]


def test_report_opens_with_the_verdict_links_its_images_and_the_html_is_self_contained(evaluated):
    md, html = evaluated["report_markdown"], evaluated["report_html"]
    for text in (md, html):
        assert "tiny" in text and "Quality against NFE" in text and "Provenance" in text
        assert "EVALUATION UNRELIABLE" in text and "accuracy 0." in text and "(on the validation split) is below" in text
        assert "git commit" in text and "torch" in text and "started from encoder codes of training and of held-out" in text
        assert "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" in text  # sha256("abc")
        assert "missing" in text
    assert md.index("## At a glance") < md.index("## Summary") < md.index("## Quality against NFE")
    glance = md[md.index("## At a glance"): md.index("## Summary")]
    assert "euler:" in glance and "midpoint:" in glance and "Training: ledi stopped at step" in glance
    assert "![fd against NFE (lower is better)](quality_vs_nfe.png)" in glance and "(sample_grid.png)" in glance
    assert "data:image/png;base64," not in md and len(md.encode()) < 100_000  # images are the files beside it
    assert "(prior_loss.png)" in md and "(fm_gaussian_loss.png)" in md and "(training_quality.png)" in md
    assert html.startswith("<!doctype html>") and "<table>" in html
    assert html.count("data:image/png;base64,") == md.count("](") - md.count("](http")  # every image, inline


def test_clip_plumbing_with_a_random_tiny_model():
    emb = ClipEmbedder("ViT-S-32", "random", image_size=32)
    feats = emb(torch.rand(5, 1, 16, 16) * 2 - 1)
    assert feats.shape == (5, 384)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(5))


def test_clip_without_weights_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ClipWeightsUnavailable, match="not available offline.*clip_weights"):
        ClipEmbedder("ViT-L-14-336", "openai")
    assert time.perf_counter() - start < 10


def test_inception_plumbing_with_random_weights():
    emb = InceptionEmbedder("random")
    feats = emb(torch.rand(2, 1, 16, 16) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_inception_without_weights_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(InceptionWeightsUnavailable, match="pt_inception-2015-12-05-6726825d.pth.*inception_weights"):
        InceptionEmbedder("default")
    with pytest.raises(InceptionWeightsUnavailable, match="nothing at the file /no/such.pth"):
        InceptionEmbedder("/no/such.pth")
    assert time.perf_counter() - start < 10


def test_inception_weights_from_a_local_file(tmp_path):
    import torchvision

    path = tmp_path / "fid_inception.pth"
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    torch.save(net.state_dict(), path)
    emb = InceptionEmbedder(str(path))
    first = emb.model.blocks[0][0].conv.weight
    torch.testing.assert_close(first, net.Conv2d_1a_3x3.conv.weight)
    assert emb(torch.zeros(1, 3, 8, 8)).shape == (1, 2048)


def test_select_scores_the_same_models_on_the_validation_split(evaluated):
    """The selection pipeline is the evaluation's scoring on other images: the same points, other figures."""
    on_grid = pl.col("nfe_requested") <= 4  # the baseline's extension beyond the grid depends on the figures
    test, val = (evaluated[k].filter(on_grid) for k in ("sweep_results", "validation.sweep_results"))
    key = ["model", "solver", "nfe_requested"]
    assert test.select(key).sort(key).equals(val.select(key).sort(key))
    assert not test.sort(key)["fd"].to_list() == val.sort(key)["fd"].to_list()
    metrics = evaluated["validation.evaluation_metrics"]
    assert metrics["n_reference"] == 12 and set(metrics["solvers"]) == {"euler", "midpoint"}

"""LeDiFlow vs the Gaussian-prior baseline, end to end on the core library (no Kedro, no polars).

    python benchmarks/quality_benchmark.py --data DIR            # GPU: ~12 min on one H100
    python benchmarks/quality_benchmark.py --smoke               # seconds on a CPU, tiny everything

DIR holds the Fashion-MNIST IDX .gz files and/or cifar10-jpg.tar.gz. For each setting
(Fashion-MNIST 32 px pixel space, CIFAR-10 32 px pixel space, CIFAR-10 in the latent space of a
KL autoencoder trained here) it trains prior -> latent sampler -> both flow models with the same
backbone, schedule and budget, sweeps NFE with the midpoint and Euler solvers, and prints one
table: FD (domain classifier features) at each NFE, the matched-quality speedup at the reference
NFE and against the baseline's best, and the mean baseline/LeDiFlow FD ratio over NFE 4-16.
Speedups at the grid's floor are printed as ">= x" (a lower bound), never as a number.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from ledi_kedro.core.data.images import ImageSpec  # noqa: E402
from ledi_kedro.core.data.ingest import ingest_fashion_mnist, ingest_image_folder  # noqa: E402
from ledi_kedro.core.embedders import DomainEmbedder  # noqa: E402
from ledi_kedro.core.evaluation import QualitySpec, SweepConfig, sweep  # noqa: E402
from ledi_kedro.core.metrics import median_heuristic_sigma  # noqa: E402
from ledi_kedro.core.models import (  # noqa: E402
    AutoencoderConfig, ClassifierConfig, DiT, DiTConfig, DomainClassifier, KLAutoencoder, LatentFlow,
    LatentFlowConfig, PriorConfig, PriorModel,
)
from ledi_kedro.core.sampling import GaussianSampler, LeDiFlowSampler  # noqa: E402
from ledi_kedro.core.speedup import matched_quality_speedup, reference_from_curve  # noqa: E402
from ledi_kedro.core.tasks import (  # noqa: E402
    as_float, autoencoder_loss, encode_latents, encode_moments, fit_latent_scale, fm_gaussian_prior_loss,
    fm_learned_prior_loss, latent_flow_loss, prior_loss,
)
from ledi_kedro.core.trainer import TrainConfig, Trainer  # noqa: E402

log = logging.getLogger("quality_benchmark")


@dataclass(frozen=True)
class Budget:
    ae_steps: int
    prior_steps: int
    latent_steps: int
    fm_steps: int
    classifier_steps: int
    batch: int
    dit_size: str
    n_samples: int
    nfe_grid: tuple[int, ...]
    reference_nfe: int


GPU = Budget(ae_steps=3000, prior_steps=3000, latent_steps=3000, fm_steps=6000, classifier_steps=1500, batch=256,
             dit_size="S", n_samples=5000, nfe_grid=(1, 2, 4, 8, 16, 32, 64), reference_nfe=64)
SMOKE = Budget(ae_steps=3, prior_steps=3, latent_steps=3, fm_steps=3, classifier_steps=3, batch=8, dit_size="T",
               n_samples=16, nfe_grid=(1, 2, 4), reference_nfe=4)


def train(model, loss, data, steps, batch, device, lr=3e-4, seed=0, ema=0.999):
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=min(200, steps // 10), ema_decay=ema,
                      log_every=max(1, steps // 4), checkpoint_every=10**9, seed=seed, device=str(device),
                      compile=False)
    return Trainer(model, loss, data, cfg).fit().ema.eval()


def classifier_loss(model, batch, g):
    return torch.nn.functional.cross_entropy(model(batch["images"]).float(), batch["labels"])


def run_setting(name: str, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, latent: bool,
                b: Budget, device: torch.device) -> dict:
    start = time.perf_counter()
    c, res = int(train_x.shape[1]), int(train_x.shape[-1])
    torch.manual_seed(0)
    clf_cfg = ClassifierConfig(in_channels=c, resolution=res, num_classes=int(train_y.max()) + 1)
    clf = train(DomainClassifier(clf_cfg), classifier_loss, {"images": train_x, "labels": train_y.long()},
                b.classifier_steps, b.batch, device, lr=2e-3)
    embed = DomainEmbedder(clf, "classifier", device)
    ref = embed(as_float(test_x[: max(b.n_samples, 2)]))
    decode, model_x = None, train_x
    if latent:
        ae_cfg = AutoencoderConfig(in_channels=c, latent_channels=4, base_channels=64, levels=2)
        ae = train(KLAutoencoder(ae_cfg), autoencoder_loss(1e-6), {"images": train_x}, b.ae_steps, b.batch, device)
        ae.scale.fill_(fit_latent_scale(ae, train_x, device))
        model_x, decode = encode_latents(ae, train_x, device), ae.decode_scaled
    mc, mres = int(model_x.shape[1]), int(model_x.shape[-1])
    prior = train(PriorModel(PriorConfig(in_channels=mc, resolution=mres, z_dim=128, base_channels=64)),
                  prior_loss("vgl", 1e-3), {"images": model_x}, b.prior_steps, b.batch, device, lr=5e-4)
    mu, lv = encode_moments(prior, model_x, device)
    lat = train(LatentFlow(LatentFlowConfig(z_dim=128, hidden=512, depth=4)), latent_flow_loss(),
                {"mu_z": mu, "logvar_z": lv}, b.latent_steps, 4 * b.batch, device, lr=1e-3)
    dit_cfg = DiTConfig(in_channels=mc, resolution=mres, patch_size=2 if mres >= 16 else 1, size=b.dit_size)
    torch.manual_seed(1)
    fm_ledi = train(DiT(dit_cfg), fm_learned_prior_loss(prior.to(device), 1.0, "logit_normal"),
                    {"images": model_x, "mu_z": mu, "logvar_z": lv}, b.fm_steps, b.batch, device, seed=1)
    torch.manual_seed(1)
    fm_gauss = train(DiT(dit_cfg), fm_gaussian_prior_loss("logit_normal"), {"images": model_x}, b.fm_steps, b.batch,
                     device, seed=1)
    shape = (mc, mres, mres)
    samplers = {"ledi": LeDiFlowSampler(fm_ledi, prior, lat, shape, decode=decode, device=device, precision="bf16"),
                "gaussian": GaussianSampler(fm_gauss, shape, decode=decode, device=device, precision="bf16")}
    spec = QualitySpec(sigma=median_heuristic_sigma(ref), kid_subset=min(1000, b.n_samples), kid_subsets=10)
    result = sweep(samplers, embed, ref, spec, SweepConfig(b.nfe_grid, ("midpoint", "euler"), (), b.n_samples,
                                                             min(500, b.n_samples)))
    out = {"name": name, "minutes": (time.perf_counter() - start) / 60, "rows": result.rows}
    for solver in ("midpoint", "euler"):
        curve = {m: sorted((r["nfe"], r["fd"]) for r in result.rows if r["model"] == m and r["solver"] == solver)
                 for m in samplers}
        base_n, base_q = zip(*curve["gaussian"])
        ledi_n, ledi_q = zip(*curve["ledi"])
        at_ref = matched_quality_speedup(ledi_n, ledi_q, reference_from_curve(base_n, base_q, b.reference_nfe)[1],
                                         b.reference_nfe)
        n_best, q_best = reference_from_curve(base_n, base_q, None)
        vs_best = matched_quality_speedup(ledi_n, ledi_q, q_best, n_best)
        ledi_at = dict(curve["ledi"])
        ratios = [bq / ledi_at[n] for n, bq in curve["gaussian"] if 4 <= n <= 16 and ledi_at.get(n, 0) > 0]
        out[solver] = {"curve": curve, "at_ref": at_ref.text(), "vs_best": vs_best.text(),
                       "ratio_4_16": sum(ratios) / len(ratios) if ratios else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("bench_data"), help="folder with the data sets")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path")
    ap.add_argument("--only", default="fmnist,cifar10,cifar10_latent", help="comma-separated settings to run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("ledi_kedro").setLevel(logging.WARNING)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    b = SMOKE if args.smoke else GPU
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    settings = []
    wanted = args.only.split(",")
    if "fmnist" in wanted:
        if args.smoke:
            g = torch.Generator().manual_seed(0)
            x = (torch.rand(64, 1, 16, 16, generator=g) * 255).to(torch.uint8)
            settings.append(("synthetic (smoke)", x, torch.arange(64) % 4, x[:32], False))
        else:
            res = ingest_fashion_mnist(args.data, ImageSpec(resolution=32, channels=1))
            settings.append(("Fashion-MNIST 32px pixel", *_split(res), False))
    if not args.smoke and ({"cifar10", "cifar10_latent"} & set(wanted)):
        res = ingest_image_folder(args.data / "cifar10-jpg.tar.gz", ImageSpec(resolution=32, channels=3))
        split = _split(res)
        if "cifar10" in wanted:
            settings.append(("CIFAR-10 32px pixel", *split, False))
        if "cifar10_latent" in wanted:
            settings.append(("CIFAR-10 latent (own KL-AE)", *split, True))
    if args.smoke:
        b = replace(b, n_samples=16)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; DiT-{b.dit_size}; FM steps {b.fm_steps} x batch {b.batch} "
          f"per model; {b.n_samples} samples per point; quality = FD on domain-classifier features (lower is better)")
    for s in settings:
        r = run_setting(s[0], s[1], s[2], s[3], s[4], b, device)
        print(f"\n== {r['name']} ({r['minutes']:.1f} min)")
        header = "solver    model     " + " ".join(f"NFE{n:<5d}" for n in b.nfe_grid)
        print(header)
        for solver in ("midpoint", "euler"):
            for model in ("ledi", "gaussian"):
                curve = dict(r[solver]["curve"][model])
                print(f"{solver:<9} {model:<9} " + " ".join(f"{curve.get(float(n), float('nan')):<8.3f}"
                                                         for n in b.nfe_grid))
            print(f"{solver:<9} speedup at NFE {b.reference_nfe}: {r[solver]['at_ref']}; vs baseline's best: "
                  f"{r[solver]['vs_best']}; mean FD ratio gaussian/ledi over NFE 4-16: {r[solver]['ratio_4_16']:.2f}")


def _split(res):
    train = [i for i, r in enumerate(res.records) if r.split == "train"]
    test = [i for i, r in enumerate(res.records) if r.split != "train"]
    labels = torch.tensor([res.class_names.index(r.class_name) for r in res.records])
    images = torch.from_numpy(res.images)
    return images[train], labels[train], images[test]


if __name__ == "__main__":
    main()

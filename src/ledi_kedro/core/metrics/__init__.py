"""Every figure the project computes about quality, in one place.

* :mod:`.distances`      FD (FID's formula), KID, RBF-MMD (CMMD with CLIP features), median bandwidth.
* :mod:`.intervals`      paired half-sample error bars for FD, KID and MMD.
* :mod:`.speedup`        matched-quality speedup read off two quality-vs-NFE curves, with its interval.
* :mod:`.comparison`     LeDiFlow against the baseline: speedups in NFE and seconds, which differences
                         are noise, and whether an evaluation can be trusted at all.
* :mod:`.memorisation`   nearest-training-image distances of samples against those of held-out images.
* :mod:`.model_quality`  held-out figures of single trained parts: prior loss and KL, autoencoder PSNR,
                         classifier accuracy, straightness of a flow's paths.
"""

from .distances import frechet_distance, gaussian_frechet_distance, kid, median_heuristic_sigma, mmd_rbf
from .intervals import Interval, QualityBootstrap, percentile_interval
from .speedup import Speedup, SpeedupEstimate, matched_quality_speedup, reference_from_curve, speedup_with_interval

__all__ = [
    "frechet_distance", "gaussian_frechet_distance", "kid", "median_heuristic_sigma", "mmd_rbf", "Interval",
    "QualityBootstrap", "percentile_interval", "Speedup", "SpeedupEstimate", "matched_quality_speedup",
    "reference_from_curve", "speedup_with_interval",
]

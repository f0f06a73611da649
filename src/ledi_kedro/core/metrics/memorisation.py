"""Does a generator copy its training set? Nearest-neighbour distances in the judge's feature space.

For every generated image, the distance to its nearest training image; the same for held-out real images
(which no model saw), as the yardstick. A model that reproduces training images has many generated images
far closer to a training image than held-out images ever are: ``close_fraction``, the share of generated
images nearer to the training set than the ``quantile``-quantile of the held-out distances, is about
``quantile`` for a model that does not copy (less for blurrier samples) and approaches 1 for one that does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .distances import sq_dists


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Euclidean distance from each row of ``queries`` (n, d) to its nearest row of ``bank`` (m, d), in
    float32 (a ranking, not a sum: float32 is exact enough) and ``chunk`` queries at a time (memory
    ``chunk * m``)."""
    bank = bank.detach().float()
    out = [sq_dists(q.detach().float(), bank).min(dim=1).values.sqrt() for q in queries.split(chunk)]
    return torch.cat(out) if out else torch.empty(0)


@dataclass(frozen=True)
class Memorisation:
    generated_median: float  # median distance of a generated image to its nearest training image
    held_out_median: float  # the same for held-out real images
    close_fraction: float  # share of generated images nearer than the held-out distances' `quantile`-quantile
    quantile: float
    n_generated: int
    n_held_out: int
    n_training: int

    @property
    def ratio(self) -> float:
        """generated / held-out median: below 1, samples sit closer to training images than new real ones do."""
        return self.generated_median / self.held_out_median if self.held_out_median > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self) | {"ratio": self.ratio}


def memorisation(generated_nn: torch.Tensor, held_out_nn: torch.Tensor, n_training: int,
                 quantile: float = 0.05) -> Memorisation:
    """Summary of nearest-training-image distances of generated images against those of held-out images."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if generated_nn.numel() == 0 or held_out_nn.numel() == 0:
        raise ValueError("the memorisation check needs generated and held-out distances")
    threshold = torch.quantile(held_out_nn.to(torch.float64), quantile)
    return Memorisation(float(generated_nn.median()), float(held_out_nn.median()),
                        float((generated_nn < threshold).to(torch.float64).mean()), quantile,
                        int(generated_nn.numel()), int(held_out_nn.numel()), n_training)

"""ledi_kedro: LeDiFlow image generators (flow matching from a learned prior) as Kedro pipelines.

The core library lives in :mod:`ledi_kedro.core` and imports neither Kedro nor polars;
:func:`load_generator` gives you a trained generator in your own code (``load_sampler``: its earlier name).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_generator", "load_sampler", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import ledi_kedro` (e.g. by data worker processes) does not import torch.
    if name in ("load_generator", "load_sampler"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ledi_kedro' has no attribute {name!r}")

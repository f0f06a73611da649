"""ledi_kedro: LeDiFlow image generators (flow matching from a learned prior) as Kedro pipelines.

The core library lives in :mod:`ledi_kedro.core` and imports neither Kedro nor polars.
"""

__version__ = "0.1.0"

"""Project pipelines: one folder each under ``pipelines/``; the folder name is the pipeline name."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Opt-in pipelines that ``kedro run`` (the __default__ pipeline) leaves out: tuning and the selection scoring.
NOT_IN_DEFAULT = frozenset({"tune", "select"})


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines.

    Kedro 1.7 imports only the requested pipeline modules for ``--pipelines=NAME``; then
    ``find_pipelines`` returns just those and no ``__default__``, so the default is only
    assembled when everything was loaded.
    """
    pipelines = find_pipelines(raise_errors=True)
    if "__default__" in pipelines:
        pipelines["__default__"] = sum(
            (p for name, p in pipelines.items() if name != "__default__" and name not in NOT_IN_DEFAULT),
            Pipeline([]),
        )
    return pipelines

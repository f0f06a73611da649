"""The scoring nodes that ``evaluate`` (on the test split) and ``select`` (on the validation split) share: the
reference set, the NFE sweep with its error bars, the latent-sampler sweep, straightness and the summary. Written
once: ``select`` is this pipeline under the namespace ``validation`` with the held-out split's inputs renamed.
Inputs are wired by name (``{argument: dataset}``); each model is one generator artifact."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs

GENERATORS = {"ledi_generator": "ledi.generator", "gaussian_generator": "gaussian.generator"}
EV = {"evaluate": "params:evaluate", "run": "params:run"}
# The held-out split the scoring reads, in the images' space and in the models' space.
HELD_OUT = ("test_image_tensors", "test_model_input")


def _named(*names: str) -> dict[str, str]:
    return {name: name for name in names}


def scoring_pipeline() -> Pipeline:
    """The scoring nodes on the test split's datasets (``HELD_OUT``)."""
    # imported here: the evaluate package imports this module, and `kedro run --pipelines=select` imports this
    # module first
    from ledi_kedro.pipelines.evaluate.nodes import (
        embed_reference, error_bars, measure_straightness, summarize, sweep_latent_sampler, sweep_quality,
    )

    ledi = {"ledi_generator": GENERATORS["ledi_generator"]}
    with reading_namespaced_outputs():
        return Pipeline([
            Node(embed_reference, _named("quality_embedder", "train_image_tensors", "test_image_tensors",
                                         "test_model_input") | ledi | EV, "reference_features", name="embed_reference"),
            Node(sweep_quality, GENERATORS | _named("quality_embedder") | {"reference_features": "reference_features"}
                 | EV, ["sweep_points", "sweep_examples"], name="sweep_quality"),
            Node(error_bars, _named("sweep_points", "reference_features") | EV, "sweep_results", name="error_bars"),
            Node(measure_straightness, GENERATORS | EV, "straightness", name="measure_straightness"),
            Node(sweep_latent_sampler, ledi | _named("quality_embedder", "train_model_input", "test_model_input",
                                                     "reference_features") | EV,
                 "latent_sampler_sweep", name="sweep_latent_sampler"),
            Node(summarize, {"sweep_results": "sweep_results", "straightness_values": "straightness",
                             "embedder_metrics": "embedder_metrics", "reference_features": "reference_features",
                             "ledi_fm_metrics": "ledi.fm_metrics", "gaussian_fm_metrics": "gaussian.fm_metrics",
                             "latent_sampler_sweep": "latent_sampler_sweep"} | EV,
                 ["evaluation_metrics", "speedup_table"], name="summarize_evaluation"),
        ])


def on_split(namespace: str, images: str, model_input: str) -> Pipeline:
    """:func:`scoring_pipeline` on another held-out split (``images``, ``model_input``), its outputs under
    ``namespace``; every other input keeps its name."""
    template = scoring_pipeline()
    renamed = dict(zip(HELD_OUT, (images, model_input)))
    inputs = {name: renamed.get(name, name) for name in template.inputs() if not name.startswith("params:")}
    with reading_namespaced_outputs():
        return Pipeline(template, namespace=namespace, inputs=inputs,
                        parameters={p for p in template.inputs() if p.startswith("params:")})

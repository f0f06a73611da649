"""The scoring nodes that ``evaluate`` (on the test split) and ``select`` (on the validation split) share: the
reference set, the NFE sweep with its error bars, the latent-sampler sweep, straightness and the summary. Written
once: ``select`` is this pipeline under the namespace ``validation`` with the held-out split's inputs renamed."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs

TRAINED = ["ledi.fm_model", "gaussian.fm_model", "prior_model", "latent_flow_model", "autoencoder_model"]
# The held-out split the scoring reads, in the images' space and in the models' space.
HELD_OUT = ("test_image_tensors", "test_model_input")


def scoring_pipeline() -> Pipeline:
    """The scoring nodes on the test split's datasets (``HELD_OUT``)."""
    # imported here: the evaluate package imports this module, and `kedro run --pipelines=select` imports this
    # module first
    from ledi_kedro.pipelines.evaluate.nodes import (
        embed_reference, error_bars, measure_straightness, summarize, sweep_latent_sampler, sweep_quality,
    )

    with reading_namespaced_outputs():
        return Pipeline([
            Node(embed_reference, ["quality_embedder", "train_image_tensors", "test_image_tensors",
                                   "autoencoder_model", "test_model_input", "params:evaluate", "params:run"],
                 "reference_features", name="embed_reference"),
            Node(sweep_quality, [*TRAINED, "quality_embedder", "reference_features", "params:evaluate", "params:run"],
                 ["sweep_points", "sweep_examples"], name="sweep_quality"),
            Node(error_bars, ["sweep_points", "reference_features", "params:evaluate", "params:run"], "sweep_results",
                 name="error_bars"),
            Node(measure_straightness, [*TRAINED, "params:evaluate", "params:run"], "straightness",
                 name="measure_straightness"),
            Node(sweep_latent_sampler, ["ledi.fm_model", "prior_model", "latent_flow_model", "autoencoder_model",
                                        "quality_embedder", "train_model_input", "test_model_input",
                                        "reference_features", "params:evaluate", "params:run"],
                 "latent_sampler_sweep", name="sweep_latent_sampler"),
            Node(summarize, ["sweep_results", "straightness", "embedder_metrics", "reference_features",
                             "ledi.fm_metrics", "gaussian.fm_metrics", "latent_sampler_sweep", "params:evaluate",
                             "params:run"],
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

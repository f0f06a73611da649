from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs

from .nodes import (
    embed_reference, encode_test_split, error_bars, measure_straightness, plot_applications, plot_quality_vs_nfe, plot_sample_grids,
    plot_training_quality, summarize, sweep_latent_sampler, sweep_quality,
)

TRAINED = ["ledi.fm_model", "gaussian.fm_model", "prior_model", "latent_flow_model", "autoencoder_model"]


def create_pipeline(**kwargs) -> Pipeline:
    with reading_namespaced_outputs():
        return _create_pipeline()


def _create_pipeline() -> Pipeline:
    return Pipeline([
        Node(encode_test_split, ["autoencoder_model", "test_image_tensors", "params:run"], "test_model_input",
             name="encode_test_split"),
        Node(embed_reference, ["quality_embedder", "train_image_tensors", "test_image_tensors", "autoencoder_model",
                               "test_model_input", "params:evaluate", "params:run"], "reference_features",
             name="embed_reference"),
        Node(sweep_quality, [*TRAINED, "quality_embedder", "reference_features", "params:evaluate", "params:run"],
             ["sweep_points", "sweep_examples"], name="sweep_quality"),
        Node(error_bars, ["sweep_points", "reference_features", "params:evaluate", "params:run"], "sweep_results",
             name="error_bars"),
        Node(measure_straightness, [*TRAINED, "params:evaluate", "params:run"], "straightness",
             name="measure_straightness"),
        Node(sweep_latent_sampler, ["ledi.fm_model", "prior_model", "latent_flow_model", "autoencoder_model",
                                    "quality_embedder", "train_model_input", "test_model_input", "reference_features",
                                    "params:evaluate", "params:run"],
             "latent_sampler_sweep", name="sweep_latent_sampler"),
        Node(summarize, ["sweep_results", "straightness", "embedder_metrics", "reference_features", "ledi.fm_metrics",
                         "gaussian.fm_metrics", "latent_sampler_sweep", "params:evaluate", "params:run"],
             ["evaluation_metrics", "speedup_table"], name="summarize_evaluation"),
        Node(plot_quality_vs_nfe, ["sweep_results", "params:evaluate"], "quality_vs_nfe_plot",
             name="plot_quality_vs_nfe"),
        Node(plot_sample_grids, ["sweep_examples", "params:evaluate"], "sample_grid_plot", name="plot_sample_grids"),
        Node(plot_training_quality, ["ledi.fm_quality_history", "gaussian.fm_quality_history", "params:ledi.variant",
                                     "params:gaussian.variant"], "training_quality_plot", name="plot_training_quality"),
        Node(plot_applications, [*TRAINED, "test_model_input", "params:evaluate", "params:run"],
             ["prior_samples_plot", "interpolation_plot", "inpainting_plot"], name="plot_applications"),
    ])

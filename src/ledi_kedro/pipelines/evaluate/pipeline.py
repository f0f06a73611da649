from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs
from ledi_kedro.pipelines.scoring import EV, GENERATORS, scoring_pipeline

from .nodes import (
    encode_test_split, plot_applications, plot_quality_vs_nfe, plot_sample_grids, plot_training_quality,
)


def create_pipeline(**kwargs) -> Pipeline:
    """The final evaluation, the test split's only reader: the scoring nodes (:mod:`ledi_kedro.pipelines.scoring`)
    on the test split, and the figures. Each model comes in as one generator artifact."""
    with reading_namespaced_outputs():
        return Pipeline([
            Node(encode_test_split, {"ledi_generator": GENERATORS["ledi_generator"],
                                     "test_image_tensors": "test_image_tensors", "run": "params:run"},
                 "test_model_input", name="encode_test_split"),
        ]) + scoring_pipeline() + Pipeline([
            Node(plot_quality_vs_nfe, ["sweep_results", "params:evaluate"], "quality_vs_nfe_plot",
                 name="plot_quality_vs_nfe"),
            Node(plot_sample_grids, ["sweep_examples", "params:evaluate"], "sample_grid_plot",
                 name="plot_sample_grids"),
            Node(plot_training_quality, ["ledi.fm_quality_history", "gaussian.fm_quality_history",
                                         "params:ledi.variant", "params:gaussian.variant"], "training_quality_plot",
                 name="plot_training_quality"),
            Node(plot_applications, GENERATORS | {"test_model_input": "test_model_input"} | EV,
                 ["prior_samples_plot", "interpolation_plot", "inpainting_plot"], name="plot_applications"),
        ])

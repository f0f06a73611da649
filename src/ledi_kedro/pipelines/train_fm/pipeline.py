from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs

from ledi_kedro.training import train_fm_model

from .nodes import plot_fm_loss, plot_training_quality, summarize_fm

SHARED_INPUTS = {"train_model_input", "prior_model", "prior_codes", "latent_flow_model", "autoencoder_model",
                 "quality_embedder", "test_image_tensors"}
SHARED_PARAMS = {"params:fm", "params:run"}


def create_template() -> Pipeline:
    """One definition; ``create_pipeline`` instantiates it as namespaces ``ledi`` and ``gaussian``."""
    return Pipeline([
        Node(train_fm_model, ["train_model_input", "prior_model", "prior_codes", "latent_flow_model",
                              "autoencoder_model", "quality_embedder", "test_image_tensors", "params:fm",
                              "params:variant", "params:run"],
             ["fm_model", "fm_loss_history", "fm_quality_history"], name="train_fm_model"),
        Node(summarize_fm, ["fm_loss_history", "fm_quality_history", "params:fm", "params:variant"], "fm_metrics",
             name="summarize_fm"),
        Node(plot_fm_loss, ["fm_loss_history", "params:variant"], "fm_loss_plot", name="plot_fm_loss"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    template = create_template()
    both = sum(
        (Pipeline(template, namespace=ns, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS) for ns in ("ledi", "gaussian")),
        Pipeline([]),
    )
    with reading_namespaced_outputs():
        both += Pipeline([Node(plot_training_quality, ["ledi.fm_quality_history", "gaussian.fm_quality_history",
                                                       "params:ledi.variant", "params:gaussian.variant"],
                               "training_quality_plot", name="plot_training_quality")])
    return both

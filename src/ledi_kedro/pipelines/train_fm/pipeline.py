from kedro.pipeline import Node, Pipeline

from ledi_kedro.training import train_baseline_model, train_fm_model

from .nodes import plot_fm_loss, summarize_fm

# What each instance reads besides its own parameters (`ledi.variant`, `gaussian.variant`): LeDiFlow needs the
# prior, its codes and the latent sampler; the baseline does not, so a change to them leaves it alone (each
# namespace is a DVC stage of its own: `kedro run --pipelines=train_fm --namespaces=ledi`).
COMMON_INPUTS = ["train_model_input", "autoencoder_model", "quality_embedder", "validation_image_tensors"]

PRIOR_INPUTS = ["prior_model", "prior_codes", "latent_flow_model"]
SHARED_PARAMS = {"params:fm", "params:run"}


def _instance(namespace: str, train_node: Node) -> Pipeline:
    template = Pipeline([
        train_node,
        Node(summarize_fm, ["fm_model", "fm_loss_history", "fm_quality_history", "params:fm", "params:variant"],
             "fm_metrics", name="summarize_fm"),
        Node(plot_fm_loss, ["fm_loss_history", "params:variant"], "fm_loss_plot", name="plot_fm_loss"),
    ])
    inputs = set(COMMON_INPUTS) | (set(PRIOR_INPUTS) if namespace == "ledi" else set())
    return Pipeline(template, namespace=namespace, inputs=inputs, parameters=SHARED_PARAMS)


def create_pipeline(**kwargs) -> Pipeline:
    """The image flow model twice, as namespaces: ``ledi`` (from the learned prior) and ``gaussian`` (the
    baseline), with the same backbone, schedule, budget and seed."""
    outputs = ["fm_model", "fm_loss_history", "fm_quality_history"]
    ledi = Node(train_fm_model, [COMMON_INPUTS[0], *PRIOR_INPUTS, *COMMON_INPUTS[1:], "params:fm", "params:variant",
                                 "params:run"], outputs, name="train_fm_model")
    gaussian = Node(train_baseline_model, [*COMMON_INPUTS, "params:fm", "params:variant", "params:run"], outputs,
                    name="train_fm_model")
    return _instance("ledi", ledi) + _instance("gaussian", gaussian)

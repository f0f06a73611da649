from kedro.pipeline import Node, Pipeline

from ledi_kedro.training_nodes import train_baseline_model, train_fm_model

from .nodes import assemble_generator, plot_fm_loss, summarize_fm

# What each instance reads besides its own parameters (`ledi.variant`, `gaussian.variant`): LeDiFlow needs the
# prior, its codes and the latent sampler; the baseline does not, so a change to them leaves it alone (each
# namespace is a DVC stage of its own: `kedro run --pipelines=train_fm --namespaces=ledi`).
COMMON_INPUTS = {"train_model_input", "autoencoder_model", "quality_embedder", "validation_image_tensors"}
PRIOR_INPUTS = {"prior_model", "prior_codes", "latent_flow_model"}
SHARED_PARAMS = {"params:fm", "params:run"}
OUTPUTS = ["fm_model", "fm_loss_history", "fm_quality_history"]


def _by_name(names: set[str]) -> dict[str, str]:
    return {name: name for name in names}


def _instance(namespace: str, train_node: Node, learned: bool) -> Pipeline:
    parts = {"fm_model", "autoencoder_model"} | ({"prior_model", "latent_flow_model"} if learned else set())
    template = Pipeline([
        train_node,
        Node(assemble_generator, _by_name(parts), "generator", name="assemble_generator"),
        Node(summarize_fm, ["fm_model", "fm_loss_history", "fm_quality_history", "params:fm", "params:variant"],
             "fm_metrics", name="summarize_fm"),
        Node(plot_fm_loss, ["fm_loss_history", "params:variant"], "fm_loss_plot", name="plot_fm_loss"),
    ])
    inputs = COMMON_INPUTS | (PRIOR_INPUTS if learned else set())
    return Pipeline(template, namespace=namespace, inputs=inputs, parameters=SHARED_PARAMS)


def create_pipeline(**kwargs) -> Pipeline:
    """The image flow model twice, as namespaces: ``ledi`` (from the learned prior) and ``gaussian`` (the
    baseline), with the same backbone, schedule, budget and seed; each assembled into one generator artifact
    (``<namespace>.generator``: the flow, its source's parts, its decoder and warmth table)."""
    params = {"fm": "params:fm", "variant": "params:variant", "run": "params:run"}
    ledi = Node(train_fm_model, _by_name(COMMON_INPUTS | PRIOR_INPUTS) | params, OUTPUTS, name="train_fm_model")
    gaussian = Node(train_baseline_model, _by_name(COMMON_INPUTS) | params, OUTPUTS, name="train_fm_model")
    return _instance("ledi", ledi, learned=True) + _instance("gaussian", gaussian, learned=False)

from kedro.pipeline import Node, Pipeline

from .nodes import plot_fm_loss, summarize_fm, train_fm_model

SHARED_INPUTS = {"train_model_input", "prior_model", "prior_codes"}
SHARED_PARAMS = {"params:fm", "params:run"}


def create_template() -> Pipeline:
    """One definition; ``create_pipeline`` instantiates it as namespaces ``ledi`` and ``gaussian``."""
    return Pipeline([
        Node(train_fm_model, ["train_model_input", "prior_model", "prior_codes", "params:fm", "params:variant", "params:run"],
             ["fm_model", "fm_loss_history"], name="train_fm_model"),
        Node(summarize_fm, ["fm_loss_history", "params:variant"], "fm_metrics", name="summarize_fm"),
        Node(plot_fm_loss, ["fm_loss_history", "params:variant"], "fm_loss_plot", name="plot_fm_loss"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    template = create_template()
    return sum(
        (Pipeline(template, namespace=ns, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS) for ns in ("ledi", "gaussian")),
        Pipeline([]),
    )

from kedro.pipeline import Node, Pipeline

from ledi_kedro.training_nodes import encode_prior_codes, train_prior_model

from .nodes import evaluate_prior, plot_prior_loss


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_prior_model, ["train_model_input", "validation_model_input", "params:prior", "params:run"],
             ["prior_model", "prior_loss_history"], name="train_prior_model"),
        Node(encode_prior_codes, ["prior_model", "train_model_input", "params:run"], "prior_codes",
             name="encode_prior_codes"),
        Node(evaluate_prior, ["prior_model", "validation_model_input", "prior_loss_history", "params:prior",
                              "params:run"], "prior_metrics", name="evaluate_prior"),
        Node(plot_prior_loss, "prior_loss_history", "prior_loss_plot", name="plot_prior_loss"),
    ])

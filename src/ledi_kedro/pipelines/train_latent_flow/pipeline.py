from kedro.pipeline import Node, Pipeline

from ledi_kedro.training_nodes import train_latent_flow_model

from .nodes import evaluate_latent_flow, plot_latent_flow_loss


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_latent_flow_model, ["prior_codes", "prior_model", "autoencoder_model", "quality_embedder",
                                       "validation_model_input", "params:latent_flow", "params:run"],
             ["latent_flow_model", "latent_flow_loss_history", "latent_flow_quality_history"],
             name="train_latent_flow_model"),
        Node(evaluate_latent_flow, ["latent_flow_model", "prior_codes", "latent_flow_loss_history",
                                    "params:latent_flow", "params:run"], "latent_flow_metrics",
             name="evaluate_latent_flow"),
        Node(plot_latent_flow_loss, "latent_flow_loss_history", "latent_flow_loss_plot", name="plot_latent_flow_loss"),
    ])

from kedro.pipeline import Node, Pipeline

from .nodes import cache_latents, plot_autoencoder_loss, train_autoencoder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_autoencoder, ["train_image_tensors", "params:autoencoder", "params:run"],
             ["autoencoder_model", "autoencoder_loss_history"], name="train_autoencoder"),
        Node(cache_latents, ["autoencoder_model", "train_image_tensors", "validation_image_tensors", "params:run"],
             ["train_model_input", "validation_model_input", "autoencoder_metrics"], name="cache_latents"),
        Node(plot_autoencoder_loss, "autoencoder_loss_history", "autoencoder_loss_plot",
             name="plot_autoencoder_loss"),
    ])

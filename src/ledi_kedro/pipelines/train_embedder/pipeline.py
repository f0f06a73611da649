from kedro.pipeline import Node, Pipeline

from .nodes import plot_embedder_loss, train_quality_embedder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_quality_embedder, ["train_image_tensors", "validation_image_tensors", "params:embedder",
                                      "params:run"],
             ["quality_embedder", "embedder_metrics", "embedder_loss_history"], name="train_quality_embedder"),
        Node(plot_embedder_loss, "embedder_loss_history", "embedder_loss_plot", name="plot_embedder_loss"),
    ])

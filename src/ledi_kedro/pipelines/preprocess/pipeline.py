from kedro.pipeline import Node, Pipeline

from .nodes import build_manifest, build_report, build_split_tensors, ingest_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(ingest_images, ["params:data_source", "params:preprocess"], "ingested_images", name="ingest_images"),
            Node(build_manifest, ["ingested_images", "params:preprocess"], "image_manifest",
                 name="build_manifest"),
            Node(build_split_tensors, ["ingested_images", "image_manifest"],
                 ["train_image_tensors", "validation_image_tensors", "test_image_tensors"],
                 name="build_split_tensors"),
            Node(build_report, ["ingested_images", "image_manifest", "params:data_source"],
                 ["preprocess_report", "preprocess_metrics"], name="build_preprocess_report"),
        ]
    )

from kedro.pipeline import Pipeline

from ledi_kedro.pipelines.scoring import on_split


def create_pipeline(**kwargs) -> Pipeline:
    """The evaluation's scoring (:mod:`ledi_kedro.pipelines.scoring`) on the validation split, its outputs under
    ``validation.`` (``data/08_reporting/validation_metrics.json``, ...): what the ablation, the baseline's
    selection and every other choice of settings read, so that the test split stays the final evaluation's alone.
    Not part of the default run (``kedro run --pipelines=select``; DVC: ``tuning/dvc.yaml``)."""
    return on_split("validation", "validation_image_tensors", "validation_model_input")

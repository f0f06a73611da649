from kedro.pipeline import Node, Pipeline

from .nodes import best_params_for_kedro, run_study


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(run_study, ["train_model_input", "validation_model_input", "quality_embedder", "parameters",
                         "params:tune"],
             ["tune_best", "tune_trials", "tune_history_plot", "tune_importance_plot", "tune_parallel_plot"],
             name="run_study"),
        Node(best_params_for_kedro, "tune_best", ["tune_best_parameters", "tune_best_run_config"],
             name="write_best_parameters"),
    ])

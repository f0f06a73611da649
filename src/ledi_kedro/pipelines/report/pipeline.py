from kedro.pipeline import Node, Pipeline

from ledi_kedro.pipelines.namespaces import reading_namespaced_outputs

from .nodes import build_report

TRAINING_METRICS = {"prior": "prior_metrics", "latent_flow": "latent_flow_metrics",
                    "autoencoder": "autoencoder_metrics", "fm_ledi": "ledi.fm_metrics",
                    "fm_gaussian": "gaussian.fm_metrics"}
FIGURES = {"quality_vs_nfe": "quality_vs_nfe_plot", "sample_grid": "sample_grid_plot",
           "training_quality": "training_quality_plot",
           "prior_samples": "prior_samples_plot", "interpolation": "interpolation_plot",
           "inpainting": "inpainting_plot", "prior_loss": "prior_loss_plot", "embedder_loss": "embedder_loss_plot",
           "latent_flow_loss": "latent_flow_loss_plot", "fm_ledi_loss": "ledi.fm_loss_plot",
           "fm_gaussian_loss": "gaussian.fm_loss_plot"}


def assemble_report(evaluation_metrics, sweep_results, speedup_table, latent_sampler_sweep, straightness,
                    embedder_metrics, parameters, report, *named):
    n = len(TRAINING_METRICS)
    training = dict(zip(TRAINING_METRICS, named[:n]))
    figures = dict(zip(FIGURES, named[n:]))
    return build_report(evaluation_metrics, sweep_results, speedup_table, straightness, embedder_metrics, training,
                        figures, parameters, report, latent_sampler_sweep)


def create_pipeline(**kwargs) -> Pipeline:
    with reading_namespaced_outputs():
        return _create_pipeline()


def _create_pipeline() -> Pipeline:
    return Pipeline([
        Node(assemble_report, ["evaluation_metrics", "sweep_results", "speedup_table", "latent_sampler_sweep",
                               "straightness", "embedder_metrics", "parameters", "params:report",
                               *TRAINING_METRICS.values(), *FIGURES.values()],
             ["report_markdown", "report_html"], name="build_report"),
    ])

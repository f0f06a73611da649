"""The chain's steps as plain functions: typed parameters (``ledi_kedro.params``) and tensors in, trained
models and plain results out. No Kedro, polars or matplotlib, so that they run anywhere the core library
does (the GPU check runs them on a machine without Kedro).

The pipelines' nodes are thin wrappers over these functions (they parse the YAML sections, call the step
and turn its result into tables and plots), and the benchmarks call the same functions with settings read
from the same YAML files (:mod:`ledi_kedro.conf_files`): a figure describes the code users run.

* :mod:`.data`: the images of a data source as seeded, shuffled train and test tensors;
* :mod:`.training`: each trained part (judge, autoencoder, prior, latent sampler, flow models) under the
  project's checkpoint policy;
* :mod:`.evaluation`: the reference set, the NFE sweep with its sanity and diagnostic rows, error bars,
  the latent-sampler sweep, the memorisation check and the comparison of both models.
"""

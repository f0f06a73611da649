"""The LeDiFlow core library: plain PyTorch, no Kedro or polars imports.

Where things are (sub-modules are imported on demand, so data workers start without torch):

* a network or its config:            ``models/`` (``dit.py``, ``prior.py``, ``latent_flow.py``,
                                       ``autoencoder.py``, ``classifier.py``; shared blocks in ``conv.py``)
* the prior's loss (VGL, NLL, KL):     ``losses.py``
* what each part is trained on:        ``objectives.py`` (one factory per trained part; ``fm_objective`` for
                                       every flow model, whatever its source)
* the flow-matching path and times:    ``flow.py``
* an ODE solver:                       ``solvers.py`` (``integrate``, ``check_solver``, ``steps_for_nfe``)
* drawing x0 and sampling images:      ``generation.py`` (``Source``: ``GaussianSource``, ``LearnedPriorSource``;
                                       ``generate``, ``interpolate``, ``inpaint``; ``Generator``, ``WarmthTable``)
* the training loop:                   ``trainer.py`` (with ``checkpoint.py`` and ``code_version.py``)
* a trained model on disk:             ``artifacts.py`` (``load_trained``, ``make_generator``)
* encoding data with a trained part:   ``encoding.py``
* a metric, an interval, a speedup:    ``metrics/`` (``distances``, ``intervals``, ``speedup``,
                                       ``comparison``, ``model_quality``)
* the judges (embeddings):             ``embedders.py``
* an NFE sweep or in-training quality: ``sweeps.py`` (and the warmth's choice)
* images in and out:                   ``data/`` (ingest, IDX files, splits; ``tensors.py`` for torch)
* seeded subsets, threads, devices:    ``subsets.py``, ``threads.py``, ``distributed.py``
* typed configs from dicts, atomic IO: ``config.py``, ``io.py``
"""

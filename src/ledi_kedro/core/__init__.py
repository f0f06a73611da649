"""The LeDiFlow core library: plain PyTorch, no Kedro or polars imports.

Sub-modules are imported on demand so that data workers start without loading torch.
"""

"""Kedro settings: hooks and the configuration loader."""

from ledi_kedro.core.threads import passive_waiting
from ledi_kedro.hooks import DistributedHooks, SeedHooks, ThreadHooks, ValidationHooks

# Before torch (and its OpenMP runtime) is imported by any pipeline: idle threads sleep rather than spin,
# so that runs sharing a machine do not stall each other (core/threads.py; README "Several runs").
passive_waiting()

HOOKS = (ThreadHooks(), SeedHooks(), ValidationHooks(), DistributedHooks())

# Telemetry is off for this project (see also .telemetry); its hooks are not registered.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (conf/local, conf/<env>) override single keys of conf/base, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}

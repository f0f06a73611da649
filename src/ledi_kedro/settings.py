"""Kedro settings: hooks and the configuration loader."""

from ledi_kedro.hooks import DistributedHooks, SeedHooks, ValidationHooks

HOOKS = (SeedHooks(), ValidationHooks(), DistributedHooks())

# Telemetry is off for this project (see also .telemetry); its hooks are not registered.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (conf/local, conf/<env>) override single keys of conf/base, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}

"""The Kedro pipelines, one package each: thin nodes over ledi_kedro.steps and ledi_kedro.core."""

"""Data ingestion and tensor conversion (numpy + PIL; torch only in ``tensors``)."""

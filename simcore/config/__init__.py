"""Workload configuration: schema, units, YAML loading with line numbers."""

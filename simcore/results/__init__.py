"""Metrics, the results folder, the text summary and charts."""

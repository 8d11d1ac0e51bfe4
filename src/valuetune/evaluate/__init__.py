"""Measuring alignment: the persona-fit benchmark, capability retention, method comparison."""

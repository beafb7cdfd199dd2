"""A Django app that exists only in the benchmark: task types that measure the framework."""

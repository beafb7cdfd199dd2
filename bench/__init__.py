"""The benchmark harness of the task framework (issue 4): see bench/README.md."""

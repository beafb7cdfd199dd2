"""The five workloads of issue 4, one module each; each `run(bench)` returns its figures."""

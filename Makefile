# The two entry points of the README. Both create .venv (Python >= 3.12) on first use.
.PHONY: run test reliability bench

run:
	scripts/bootstrap requirements.txt
	.venv/bin/python manage.py migrate --no-input
	.venv/bin/python manage.py runworkers

test:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/python -m pytest

# The benchmark of issue 4 (bench/README.md), against DATABASE_URL's server or the embedded one,
# in a database of its own. BENCH_ARGS="--quick", "--only drain", "--record --note before", ...
bench:
	scripts/bootstrap requirements.txt
	.venv/bin/python bench/run.py $(BENCH_ARGS)

# The fault-injection suite alone (part of `make test` too); see tests/reliability/README.md.
reliability:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/python -m pytest tests/reliability

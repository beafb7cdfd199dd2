# The entry points of the README. Each creates .venv (Python >= 3.12) on first use.
.PHONY: run test lint reliability bench

# Settings load without a database connection; these let them load without starting the
# embedded server either (the type checker's Django plugin imports them).
LINT_ENV = DATABASE_URL=postgres://lint@localhost/lint SECRET_KEY=lint

# The whole product: the API and the admin under gunicorn on 127.0.0.1:8000, and the worker pool.
run:
	scripts/bootstrap requirements.txt
	.venv/bin/python manage.py migrate --no-input
	.venv/bin/python manage.py collectstatic --no-input --verbosity 0
	.venv/bin/python manage.py serve

test:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/python -m pytest

# The code-health gates, configured in pyproject.toml: lint and format (ruff), types (mypy,
# strict on the apps), and the import contracts between the apps (import-linter).
lint:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(LINT_ENV) .venv/bin/mypy
	.venv/bin/lint-imports

# The benchmark of issue 4 (bench/README.md), against DATABASE_URL's server or the embedded one,
# in a database of its own. BENCH_ARGS="--quick", "--only drain", "--record --note before", ...
bench:
	scripts/bootstrap requirements.txt
	.venv/bin/python bench/run.py $(BENCH_ARGS)

# The fault-injection suite alone (part of `make test` too); see tests/reliability/README.md.
reliability:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/python -m pytest tests/reliability

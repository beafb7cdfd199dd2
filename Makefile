# The two entry points of the README. Both create .venv (Python >= 3.12) on first use.
.PHONY: run test

run:
	scripts/bootstrap requirements.txt
	.venv/bin/python manage.py migrate --no-input
	.venv/bin/python manage.py runworkers

test:
	scripts/bootstrap requirements-dev.txt
	.venv/bin/python -m pytest

"""Settings for the test suite: the project's own, with a throw-away secret key."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")

# The project's settings, star-imported to be extended (F403, F405), once SECRET_KEY has a
# default (E402).
from contentsources.settings import *  # noqa: E402, F403

# Serve static files from the apps (no collectstatic before the tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# The fault-injection suite's ledger table and task types (tests/reliability).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.reliability"]  # noqa: F405

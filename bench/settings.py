"""Settings of the benchmark's processes: the project's own, plus the bench-only task types.

The harness and every `runworkers` it starts use these (DJANGO_SETTINGS_MODULE=bench.settings),
so that the workers serve `bench.pickup` without the project registering a type it does not need.
"""

import os

os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")

# The project's settings, star-imported to be extended (F403), once SECRET_KEY has a default (E402).
from contentsources.settings import *  # noqa: E402, F403
from contentsources.settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "bench.benchapp"]

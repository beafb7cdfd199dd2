import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentsources.settings")
application = get_wsgi_application()
# The URLconf (the views, DRF, the serializers) loaded now, not at the first request; then all
# that is loaded, which lives as long as the process, kept out of the garbage collector's
# full collections: each of them otherwise walks the whole heap, a pause of 50 to 250 ms in
# the request that triggers it (bench/api_tasks.py's tail).
import_module(settings.ROOT_URLCONF)
gc.freeze()

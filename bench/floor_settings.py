"""Settings for the API benchmark's server: the development settings plus the floor endpoint."""

from settings.dev import *  # noqa: F403

ROOT_URLCONF = "floor_api"
DEBUG = False

"""The embedded single-process default used by ``make run``."""

from .base import *  # noqa: F403

DEBUG = True

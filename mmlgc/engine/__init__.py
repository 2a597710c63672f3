"""Training-time machinery: progress-driven schedules as mmengine hooks."""
from .hooks import *  # noqa: F401,F403

"""The trigger-word pipeline's part of the shared stages (components/tasks/__init__.py): its
data checks and split rule (data.py), search space and training (fitting.py), event-level
evaluation and registry gate (scoring.py), each adapting the audio domain code
(components/audio/) to a stage. Split three ways so that a stage's DVC deps name only the
code that decides its outputs."""
from components.tasks import lazy_hooks

__getattr__ = lazy_hooks(__name__)

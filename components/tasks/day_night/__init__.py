"""The day-night pipeline's part of the shared stages (components/tasks/__init__.py): image
checks and the stratified 80/20 split (data.py), the search space of the notes'
hyperparameters and training, torch or the from-scratch NumPy network (fitting.py), and
calibrated evaluation with the ROC-AUC gate (scoring.py), each adapting the vision domain
code (components/vision/) to a stage. Split three ways so that a stage's DVC deps name
only the code that decides its outputs."""
from components.tasks import lazy_hooks

__getattr__ = lazy_hooks(__name__)

"""The face pipeline's task (the interface: components/tasks/__init__.py). Data side: rendered
identities and aligned user photos (generate.py), photo and dataset checks, the split by
identity and the gate set of rendered identities (data.py), adapting components/face/.
The model side: the triplet-loss encoder's search space and training (fitting.py), its
evaluation beside dlib's encoder and the TAR-at-FAR gate (scoring.py)."""
from components.tasks import Task
from components.tasks.face import data, fitting, scoring


class FaceTask(Task):
    name, section = "face", "face"
    raw_dir = data.RAW_DIR

    def generate(self, p, raw_dir, out_dir, report_dir):
        from components.tasks.face import generate  # the renderer and dlib: imported only by the stage that runs them
        return generate.run(p, raw_dir, out_dir, report_dir)

    # validate, split, gate_data
    raw_tables = staticmethod(data.raw_tables)
    generated_tables = staticmethod(data.generated_tables)
    id_column, splits = data.ID_COLUMN, data.SPLITS
    assign_splits = staticmethod(data.assign_splits)
    describe_split = staticmethod(data.describe_split)
    make_gate_data = staticmethod(data.make_gate_data)
    # tune, train
    score, model_keys, train_keys = fitting.SCORE, fitting.MODEL_KEYS, fitting.TRAIN_KEYS
    trial_code = staticmethod(fitting.trial_code)
    trial_subset = staticmethod(data.identity_subset)
    search_space = staticmethod(fitting.search_space)
    study_prefix = staticmethod(fitting.study_prefix)
    trial_identity = staticmethod(fitting.trial_identity)
    fit_trial = staticmethod(fitting.fit_trial)
    fit = staticmethod(fitting.fit)
    save_model = staticmethod(fitting.save_model)
    train_summary = staticmethod(fitting.train_summary)
    # evaluate, register
    evaluated_file = scoring.EVALUATED_FILE
    evaluate = staticmethod(scoring.evaluate)
    registered_name = staticmethod(scoring.registered_name)
    load_evaluated = staticmethod(scoring.load_evaluated)
    gate_figures = staticmethod(scoring.gate_figures)
    decide = staticmethod(scoring.decide)
    log_model = staticmethod(scoring.log_model)
    version_tags = staticmethod(scoring.version_tags)


TASK = FaceTask()

"""The style-transfer pipeline's task (the interface: components/tasks/__init__.py): content and
style images (generate.py), their checks, split and gate set (data.py), the fast network's search
space and training (fitting.py), and the comparison with Gatys and the style-distance gate
(scoring.py), adapting components/style/ to the stages. One style per run (style_transfer.style)."""
from components.tasks import Task
from components.tasks.style_transfer import data, fitting, scoring


class StyleTransferTask(Task):
    name, section = "style-transfer", "style_transfer"
    raw_dir = data.RAW_DIR

    def generate(self, p, raw_dir, out_dir, report_dir):
        from components.tasks.style_transfer import generate
        return generate.run(p, raw_dir, out_dir, report_dir)

    raw_tables = staticmethod(data.raw_tables)
    generated_tables = staticmethod(data.generated_tables)
    id_column, splits = data.ID_COLUMN, data.SPLITS
    assign_splits = staticmethod(data.assign_splits)
    describe_split = staticmethod(data.describe_split)
    make_gate_data = staticmethod(data.make_gate_data)
    score, model_keys, train_keys = fitting.SCORE, fitting.MODEL_KEYS, fitting.TRAIN_KEYS
    trial_code = staticmethod(fitting.trial_code)
    search_space = staticmethod(fitting.search_space)
    study_prefix = staticmethod(fitting.study_prefix)
    trial_identity = staticmethod(fitting.trial_identity)
    fit_trial = staticmethod(fitting.fit_trial)
    fit = staticmethod(fitting.fit)
    save_model = staticmethod(fitting.save_model)
    train_summary = staticmethod(fitting.train_summary)
    evaluated_file = scoring.EVALUATED_FILE
    evaluate = staticmethod(scoring.evaluate)
    registered_name = staticmethod(scoring.registered_name)
    load_evaluated = staticmethod(scoring.load_evaluated)
    gate_figures = staticmethod(scoring.gate_figures)
    decide = staticmethod(scoring.decide)
    log_model = staticmethod(scoring.log_model)
    version_tags = staticmethod(scoring.version_tags)


TASK = StyleTransferTask()

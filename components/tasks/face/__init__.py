"""The face pipeline's task (the interface: components/tasks/__init__.py). Data side: rendered
identities and aligned user photos (generate.py), photo and dataset checks, the split by
identity and the gate set of rendered identities (data.py), adapting components/face/.
The model side (fitting.py, scoring.py: the triplet-loss encoder, its evaluation and gate)
joins this class from the face-model branch."""
from components.tasks import Task
from components.tasks.face import data


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


TASK = FaceTask()

"""Face domain code: rendered identities, real photos aligned to dlib's chip geometry, and the
facts the data checks judge. Knows nothing of MLflow, Prefect or Ray."""

"""The `lmms_eval.models` entry point.

lmms-eval loads every plugin's entry point while it builds its model registry. This module
therefore imports nothing at import time (not even lmms-eval, which would be half built at that
moment); the registry calls `manifest()` and gets the ModelManifest then."""


def manifest():
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="pixel_reasoner",
                         simple_class_path="pr_eval.lmms.adapter.PixelReasoner")

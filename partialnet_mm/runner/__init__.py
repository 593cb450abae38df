"""Config transformations the tools apply before building a Runner (``tta``: test-time
augmentation)."""

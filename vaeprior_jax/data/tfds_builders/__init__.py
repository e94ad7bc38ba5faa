"""The project's own tensorflow-datasets builders (datasets tfds does not have in the papers' form)."""

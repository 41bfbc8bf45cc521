"""The Ray layer: the only subpackage that imports ray (connection, scan actors, the Ray Train job)."""

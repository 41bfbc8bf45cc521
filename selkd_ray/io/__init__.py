"""I/O: the only subpackage that imports pyarrow (catalogue, tasks, prediction cache, results)."""

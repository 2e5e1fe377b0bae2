"""Planning the midstream from image uses and verdicts (pure). STUB: being written."""

"""Where weights come from: ``hf://``, ``s3://``, ``https://`` and ``file://`` sources."""

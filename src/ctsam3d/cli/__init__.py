"""Command-line interface: ``ctsam3d <subcommand>``."""

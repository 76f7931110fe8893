"""The seed's three pipelines: feature, training and inference.

Each is a small script with ``main(argv) -> int`` that uses only MicroFS's public API.
Installed, they are importable as ``microfs.pipelines`` (``microfs demo`` runs them).
"""

"""Tests of the cinepipe_nodes package (not loaded by ComfyUI, which imports only the package)."""

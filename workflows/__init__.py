"""Temporal workflows, activities and the worker; `workflows/playbooks/*.yaml` holds the offline playbooks.

The playbooks live here, beside the workflows that run them, but are loaded and validated by
`controller.planning` (the directory is configurable via AUTONOMY_PLAYBOOKS_DIR).
"""

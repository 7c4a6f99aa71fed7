"""Everything generated from docs/openapi.snapshot.json for people who call the API: the static
reference site (`make docs`, served at /reference) and the Python SDK's typed layer."""

"""Django app holding the model of tests/test_kv_upstream_django.py (upstream tests/models.py)."""

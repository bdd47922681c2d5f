"""python-diskcache 5.6.3's tests/models.py (Grant Jenks, Apache-2.0), unchanged: the model that
tests/test_kv_upstream_django.py caches, in the Django app ``django_testapp``."""

from django.db import models
from django.utils import timezone


def expensive_calculation():
    expensive_calculation.num_runs += 1
    return timezone.now()


class Poll(models.Model):
    question = models.CharField(max_length=200)
    answer = models.CharField(max_length=200)
    pub_date = models.DateTimeField(
        'date published', default=expensive_calculation
    )

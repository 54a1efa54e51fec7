"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Hypothesis profiles for the property tests (tests/test_properties.py). "ci" is the default:
# 200 examples per property, derandomised so that every run draws the same networks.
# HYPOTHESIS_PROFILE=dev (random, 500) or thorough (random, 5,000) searches further.
_SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=_SLOW_DRAWS)
settings.register_profile("dev", max_examples=500, deadline=None, print_blob=True, suppress_health_check=_SLOW_DRAWS)
settings.register_profile("thorough", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_DRAWS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

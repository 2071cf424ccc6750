"""Shared pytest configuration: hypothesis profiles (CI runs the "ci" profile)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("BITTILE_HYPOTHESIS_PROFILE", "ci"))

# Compiled kernels go to a cache folder of this test session, not the user's cache (the cache
# tests set their own folders).
if "BITTILE_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["BITTILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bittile-test-cache-")

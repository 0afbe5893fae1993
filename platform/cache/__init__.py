"""The patient feature cache that training, scoring and the dashboard read (written by `clinfuse ingest`)."""

from clinfuse.platform.cache.feature_cache import CACHE_FORMAT, FeatureCache

__all__ = ["CACHE_FORMAT", "FeatureCache"]

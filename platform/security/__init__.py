"""Privacy: keyed pseudonyms for patient ids and the DICOM attributes that never leave the reader."""

from clinfuse.platform.security.deid import ANNEX_E_BASIC_PROFILE_KEYWORDS, SAFE_IMAGE_KEYWORDS
from clinfuse.platform.security.pseudonym import Pseudonymiser, clinfuse_home, load_pseudonym_key

__all__ = [
    "ANNEX_E_BASIC_PROFILE_KEYWORDS",
    "SAFE_IMAGE_KEYWORDS",
    "Pseudonymiser",
    "clinfuse_home",
    "load_pseudonym_key",
]

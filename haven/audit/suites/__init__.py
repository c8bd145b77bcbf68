"""Audit prompt suites: the built-in ones shipped as data files, and imported ones from the database.

``load_suite(name, languages=None, db=None)`` returns the suite's items (built-in first, then
imported suites stored by ``haven audit suites import``). See ``loader.py`` for the file format.
"""

from haven.audit.suites.loader import (
    BUILTIN_SUITES,
    LoadedSuite,
    UnknownLanguageError,
    UnknownSuiteError,
    builtin_suite_names,
    expand_suite,
    filter_languages,
    load_builtin,
    load_suite,
)

__all__ = [
    "BUILTIN_SUITES",
    "LoadedSuite",
    "UnknownLanguageError",
    "UnknownSuiteError",
    "builtin_suite_names",
    "expand_suite",
    "filter_languages",
    "load_builtin",
    "load_suite",
]

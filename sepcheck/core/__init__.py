"""The foundation every layer may use: the one error type (:mod:`.errors`), input validation
(:mod:`.validation`), norms (:mod:`.norms`), devices (:mod:`.devices`), content hashing
(:mod:`.hashing`), progress lines (:mod:`.progress`), data paths (:mod:`.paths`), safe file
writing (:mod:`.fileio`) and torchrun process groups (:mod:`.process_group`). Imports
nothing else of sepcheck, and neither numba nor torch at import time."""

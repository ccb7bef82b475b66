"""The results store: one folder per run, keyed by its semantic config (:mod:`.records`), the
record's fields (:mod:`.fields`), the checkpoint (:mod:`.checkpoint`), the folder lock
(:mod:`.lock`) and atomic file writes (:mod:`.fileio`)."""

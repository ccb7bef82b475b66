"""The report over a results folder: the runs as a table (:mod:`.run_table`), tables
(:mod:`.tables`), the fair-comparison tables (:mod:`.comparison`), intervals (:mod:`.intervals`),
the "which settings?" tables (:mod:`.settings`, :mod:`.shapes`, :mod:`.noise_table`), figures
(:mod:`.figures`), the papers' published numbers (:mod:`.published`) and the report itself
(:mod:`.report`).

Named ``reporting`` so that ``ghmbench.report`` stays the public function."""

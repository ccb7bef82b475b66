"""Sweeps: grid expansion and validation (:mod:`.grid`), the Hydra launch and its jobs
(:mod:`.launch`), the two-stage fair protocol (:mod:`.protocol`) and the selection of a setting on
validation (:mod:`.selection`)."""

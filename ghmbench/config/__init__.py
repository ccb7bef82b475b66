"""The configuration: Hydra composition of conf/ (:mod:`.compose`), the typed schema of every section
(:mod:`.schema`) and the checks a config passes before anything runs."""

"""One run: the training loop (:mod:`.training`), its resumable state (:mod:`.state`), its progress
lines and log file (:mod:`.progress`, :mod:`.log_file`) and the optional loggers (:mod:`.loggers`)."""

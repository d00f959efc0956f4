"""Running a search as a job: results cached by content hash (:mod:`.cache`) and sharded,
resumable, SLURM-array or torchrun searches with their journals and pieces
(:mod:`.shards`)."""

"""Running a search as a job: results cached by content hash (:mod:`.cache`) and sharded,
resumable, SLURM-array or torchrun searches (:mod:`.run`) with their shard plan
(:mod:`.plan`), job and fingerprint (:mod:`.job`), journals (:mod:`.journal`), pieces
(:mod:`.pieces`) and the merge of the pieces of an array (:mod:`.merge`)."""
